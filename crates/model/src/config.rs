//! `GptConfig`: the shape of a GPT (vocabulary, context, depth, width, heads, dropout,
//! biases), its validation, and the sizes derived from it (parameter count, FLOPs, the
//! activation memory of a training step); their overflow-checked forms are in `budget.rs`.

use serde::{Deserialize, Serialize};

use crate::init::param_specs;
use crate::ModelError;

/// The hyperparameters that fix a GPT's shape. `bias = false` drops every bias, in the
/// linear layers and in the layer norms, as nanoGPT does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub dropout: f32,
    pub bias: bool,
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
        Ok(())
    }

    /// Number of parameters (the tied head counted once).
    pub fn num_params(&self) -> usize {
        param_specs(self).iter().map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// Parameters without the position embedding, as nanoGPT's
    /// `get_num_params(non_embedding=True)` counts them (the token embedding stays, because
    /// it doubles as the output head).
    pub fn num_params_non_embedding(&self) -> usize {
        self.num_params() - self.block_size * self.n_embd
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

    fn tiny() -> GptConfig {
        GptConfig {
            vocab_size: 64,
            block_size: 16,
            n_layer: 2,
            n_head: 4,
            n_embd: 32,
            dropout: 0.0,
            bias: true,
        }
    }

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
