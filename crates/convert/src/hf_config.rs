//! `config.json` of a Hugging Face GPT-2: the fields Quill reads, the checks that refuse
//! what Quill's GPT cannot represent, and the config written on export.

use std::path::Path;

use model::GptConfig;
use serde::Deserialize;
use tensor::kernels::LAYERNORM_EPS as EPS;

use crate::ConvertError;

/// The activations Quill's GELU computes: GPT-2's tanh approximation, under its two names
/// in transformers (the same formula).
const TANH_GELU: [&str; 2] = ["gelu_new", "gelu_pytorch_tanh"];

/// The fields of a GPT-2 `config.json` that decide the model's shape and arithmetic; the
/// others (dropout rates, token ids, generation settings) do not change the weights' use.
/// Missing optional fields take `transformers.GPT2Config`'s defaults.
#[derive(Clone, Debug, Deserialize)]
pub struct HfConfig {
    pub model_type: Option<String>,
    pub n_layer: Option<usize>,
    pub n_head: Option<usize>,
    pub n_embd: Option<usize>,
    pub n_positions: Option<usize>,
    pub vocab_size: Option<usize>,
    #[serde(default = "default_activation")]
    pub activation_function: String,
    #[serde(default = "default_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "yes")]
    pub tie_word_embeddings: bool,
    pub n_inner: Option<usize>,
    #[serde(default = "yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub add_cross_attention: bool,
}

fn default_activation() -> String {
    "gelu_new".to_string()
}

fn default_epsilon() -> f64 {
    1e-5
}

fn yes() -> bool {
    true
}

impl HfConfig {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<HfConfig, ConvertError> {
        let text = std::fs::read_to_string(path).map_err(ConvertError::io(path))?;
        serde_json::from_str(&text)
            .map_err(|e| ConvertError::Config { path: path.to_path_buf(), detail: e.to_string() })
    }

    /// The Quill model of this config (biases on, as GPT-2 has them; no dropout), or the
    /// first thing Quill's GPT cannot represent. `path` names the file in errors.
    pub fn to_model_config(&self, path: &Path) -> Result<GptConfig, ConvertError> {
        let path_buf = path.to_path_buf();
        if let Some(kind) = self.model_type.as_deref().filter(|&kind| kind != "gpt2") {
            return Err(ConvertError::Unsupported {
                path: path_buf,
                field: "model_type",
                found: format!("{kind:?}"),
                why: "Quill's GPT is GPT-2's architecture, model_type \"gpt2\"",
            });
        }
        let size = |field: &str, value: Option<usize>| {
            value.ok_or_else(|| ConvertError::Config {
                path: path.to_path_buf(),
                detail: format!("it has no {field}; GPT-2's config names n_layer, n_head, n_embd, n_positions and vocab_size"),
            })
        };
        let config = GptConfig {
            vocab_size: size("vocab_size", self.vocab_size)?,
            block_size: size("n_positions", self.n_positions)?,
            n_layer: size("n_layer", self.n_layer)?,
            n_head: size("n_head", self.n_head)?,
            n_embd: size("n_embd", self.n_embd)?,
            dropout: 0.0,
            bias: true,
            arch: model::Arch::GPT2,
        };
        config
            .validate()
            .map_err(|e| ConvertError::Config { path: path_buf.clone(), detail: e.to_string() })?;
        if !TANH_GELU.contains(&self.activation_function.as_str()) {
            return Err(ConvertError::Activation { path: path_buf, found: self.activation_function.clone() });
        }
        if self.layer_norm_epsilon as f32 != EPS {
            return Err(ConvertError::LayerNormEpsilon {
                path: path_buf,
                found: self.layer_norm_epsilon,
                expected: EPS,
            });
        }
        if !self.tie_word_embeddings {
            return Err(ConvertError::UntiedHead {
                path: path_buf,
                detail: "tie_word_embeddings is false".to_string(),
            });
        }
        let unsupported = |field, found: String, why| ConvertError::Unsupported {
            path: path_buf.clone(),
            field,
            found,
            why,
        };
        if let Some(n_inner) = self.n_inner.filter(|&n| Some(n) != config.n_embd.checked_mul(4)) {
            return Err(unsupported("n_inner", n_inner.to_string(), "its MLP is 4 × n_embd wide"));
        }
        if !self.scale_attn_weights {
            return Err(unsupported(
                "scale_attn_weights",
                "false".into(),
                "its attention scales by 1/√head_size",
            ));
        }
        if self.scale_attn_by_inverse_layer_idx {
            return Err(unsupported(
                "scale_attn_by_inverse_layer_idx",
                "true".into(),
                "every layer's attention scales alike",
            ));
        }
        if self.add_cross_attention {
            return Err(unsupported("add_cross_attention", "true".into(), "it has no encoder to attend to"));
        }
        Ok(config)
    }
}

/// The `config.json` of a Quill model as transformers' `GPT2Config` reads it. `eos` is the
/// id of `<|endoftext|>` for a GPT-2-tokenizer model (GPT-2's bos and eos token).
pub(crate) fn config_json(config: &GptConfig, eos: Option<u32>) -> String {
    let value = serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_ctx": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": default_epsilon(),
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "initializer_range": 0.02,
        "scale_attn_weights": true,
        "tie_word_embeddings": true,
        "bos_token_id": eos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    serde_json::to_string_pretty(&value).expect("a JSON value serialises")
}
