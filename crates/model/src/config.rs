//! `GptConfig`: the shape of a GPT (vocabulary, context, depth, width, heads, dropout,
//! biases, and the architecture options of [`Arch`]), its validation, and the sizes derived from it (parameter count, FLOPs, the
//! activation memory of a training step); their overflow-checked forms are in `budget.rs`.

use serde::{Deserialize, Serialize};

use crate::init::param_specs;
use crate::ModelError;

/// The hyperparameters that fix a GPT's shape. `bias = false` drops every bias, in the
/// linear layers and in the layer norms, as nanoGPT does. `arch` picks the variations of
/// the architecture; its default is GPT-2's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub dropout: f32,
    pub bias: bool,
    /// Left out (a config written before the options existed): GPT-2's.
    #[serde(default)]
    pub arch: Arch,
}

/// The options of the one GPT that depart from GPT-2 (each the default's alternative that
/// the small-GPT speedruns measured to learn faster). The train config's `[model]` section
/// names them `model.norm`, `model.activation`, `model.position`, `model.qk_norm`,
/// `model.tie_head`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arch {
    /// The normalisation of every block's two norms and the final one.
    pub norm: Norm,
    /// The MLP's nonlinearity.
    pub activation: Activation,
    /// How positions enter: a learned table added to the token embedding, or rotations of
    /// q and k inside attention.
    pub position: Position,
    /// RMS-normalise each head's q and k (no gain) before their dot product.
    pub qk_norm: bool,
    /// The output head is the token embedding (GPT-2), or a weight of its own
    /// (`lm_head.weight`) when false.
    pub tie_head: bool,
}

impl Arch {
    /// GPT-2's architecture: layer norm, GELU, learned positions, no QK-norm, tied head.
    pub const GPT2: Arch = Arch {
        norm: Norm::LayerNorm,
        activation: Activation::Gelu,
        position: Position::Learned,
        qk_norm: false,
        tie_head: true,
    };

    /// Every option on: RMSNorm, ReLU², rotary positions, QK-norm, an untied head.
    pub const ALL: Arch = Arch {
        norm: Norm::RmsNorm,
        activation: Activation::Relu2,
        position: Position::Rope,
        qk_norm: true,
        tie_head: false,
    };

    /// Whether this is GPT-2's architecture (what Hugging Face's GPT-2 format can hold).
    pub fn is_gpt2(&self) -> bool {
        *self == Arch::GPT2
    }

    /// The options that differ from GPT-2's, as `model.<name> = value` (empty for GPT-2).
    pub fn departures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.norm != Norm::LayerNorm {
            out.push(format!("model.norm = \"{}\"", self.norm.name()));
        }
        if self.activation != Activation::Gelu {
            out.push(format!("model.activation = \"{}\"", self.activation.name()));
        }
        if self.position != Position::Learned {
            out.push(format!("model.position = \"{}\"", self.position.name()));
        }
        if self.qk_norm {
            out.push("model.qk_norm = true".into());
        }
        if !self.tie_head {
            out.push("model.tie_head = false".into());
        }
        out
    }
}

impl Default for Arch {
    fn default() -> Arch {
        Arch::GPT2
    }
}

/// The normalisation layers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// (x − mean) / std · gain + shift (the shift only when the model has biases).
    #[default]
    LayerNorm,
    /// x / rms · gain: no mean, no shift (Zhang & Sennrich 2019).
    RmsNorm,
}

impl Norm {
    /// The name in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Norm::LayerNorm => "layernorm",
            Norm::RmsNorm => "rmsnorm",
        }
    }
}

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// GPT-2's tanh approximation of GELU.
    #[default]
    Gelu,
    /// max(x, 0)² (So et al. 2021, "Primer").
    Relu2,
}

impl Activation {
    /// The name in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::Relu2 => "relu2",
        }
    }
}

/// How the model knows positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// A learned table `transformer.wpe.weight` (block_size, C) added to the embeddings.
    #[default]
    Learned,
    /// Rotary embeddings of q and k (base 10000), no table.
    Rope,
}

impl Position {
    /// The name in a config file.
    pub fn name(self) -> &'static str {
        match self {
            Position::Learned => "learned",
            Position::Rope => "rope",
        }
    }
}

impl GptConfig {
    /// Sizes > 0, n_embd divisible by n_head, dropout in [0, 1). The error names the field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("block_size", self.block_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
        ];
        for (field, value) in sizes {
            if value == 0 {
                return Err(ModelError::ZeroSize { field });
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err(ModelError::HeadsDoNotDivideWidth { n_embd: self.n_embd, n_head: self.n_head });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::DropoutOutOfRange { dropout: self.dropout });
        }
        if self.arch.position == Position::Rope && !self.head_size().is_multiple_of(2) {
            return Err(ModelError::OddHeadSizeForRope { n_embd: self.n_embd, n_head: self.n_head });
        }
        Ok(())
    }

    /// Number of parameters (the tied head counted once).
    pub fn num_params(&self) -> usize {
        param_specs(self).iter().map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// Parameters without the position embedding, as nanoGPT's
    /// `get_num_params(non_embedding=True)` counts them (the token embedding stays, because
    /// it doubles as the output head). With rotary positions there is no table to leave out.
    pub fn num_params_non_embedding(&self) -> usize {
        match self.arch.position {
            Position::Learned => self.num_params() - self.block_size * self.n_embd,
            Position::Rope => self.num_params(),
        }
    }

    /// Training FLOPs per token (forward + backward), as in the PaLM appendix:
    /// 6·N + 12·n_layer·n_embd·block_size, with N = [`GptConfig::num_params`].
    pub fn flops_per_token(&self) -> f64 {
        let n = self.num_params() as f64;
        let attention = 12.0 * (self.n_layer * self.n_embd * self.block_size) as f64;
        6.0 * n + attention
    }

    /// Bytes of activations a training step of `batch_size` sequences of block_size
    /// tokens keeps for backward (an estimate: about 20 values per token per layer, plus
    /// logits and probabilities), the attention probabilities saved for short contexts,
    /// and the gradient buffers backward works in: the trainer's gradient store keeps an
    /// activation's gradient only until it is used, so a few of the widest at a time
    /// (about 16·n_embd values per token) and the logits'.
    pub fn activation_bytes(&self, batch_size: usize) -> f64 {
        self.checked_activation_bytes(batch_size).map_or(f64::INFINITY, |bytes| bytes as f64)
    }

    /// Channels per attention head.
    pub fn head_size(&self) -> usize {
        self.n_embd / self.n_head
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny;

    #[test]
    fn validate_names_the_field_and_the_rule() {
        assert!(tiny().validate().is_ok());
        let err = GptConfig { n_embd: 100, n_head: 3, ..tiny() }.validate().unwrap_err().to_string();
        assert!(err.contains("model.n_embd = 100 is not divisible by model.n_head = 3"), "{err}");
        let err = GptConfig { n_layer: 0, ..tiny() }.validate().unwrap_err().to_string();
        assert!(err.contains("model.n_layer = 0"), "{err}");
        let err = GptConfig { dropout: 1.0, ..tiny() }.validate().unwrap_err().to_string();
        assert!(err.contains("model.dropout = 1"), "{err}");
    }

    #[test]
    fn num_params_matches_gpt2_small() {
        // GPT-2 124M: nanoGPT reports 124.44M total, 123.65M without wpe.
        let gpt2 = GptConfig {
            vocab_size: 50257,
            block_size: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
            dropout: 0.0,
            bias: true,
            arch: Arch::GPT2,
        };
        assert_eq!(gpt2.num_params(), 124_439_808);
        assert_eq!(gpt2.num_params_non_embedding(), 123_653_376);
        // Per layer without biases: 12·C² weights + 2·C layer-norm gains.
        let c = 32;
        let no_bias = GptConfig { bias: false, ..tiny() };
        assert_eq!(no_bias.num_params(), 64 * c + 16 * c + 2 * (12 * c * c + 2 * c) + c);
    }

    #[test]
    fn flops_per_token_is_palm_formula() {
        let cfg = tiny();
        let expected = 6.0 * cfg.num_params() as f64 + 12.0 * (2 * 32 * 16) as f64;
        assert_eq!(cfg.flops_per_token(), expected);
    }
}
