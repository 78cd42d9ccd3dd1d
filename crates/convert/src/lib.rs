//! GPT-2 weights in and out: a Hugging Face GPT-2 folder (`config.json`,
//! `model.safetensors`, the tokenizer files) becomes a Quill [`Checkpoint`], and a Quill
//! checkpoint becomes a folder that `transformers.GPT2LMHeadModel.from_pretrained` loads.
//!
//! Quill's parameter names are GPT-2's, with the `transformer.` prefix that
//! `GPT2LMHeadModel` writes (see `model::init`), so the mapping is one to one. Three
//! things differ: the four `Conv1D` weights (`attn.c_attn`, `attn.c_proj`, `mlp.c_fc`,
//! `mlp.c_proj`) are stored (in, out) by Hugging Face and (out, in) by Quill, so they are
//! transposed both ways; the causal-mask buffers (`attn.bias`, `attn.masked_bias`) of
//! older files are skipped; and `lm_head.weight` is `wte` (tied), never a tensor of its own.
//!
//! Files: `hf_config.rs` (config.json: what Quill can represent, and writing one),
//! `import.rs` (folder → checkpoint), `export.rs` (checkpoint → folder).
//!
//! [`Checkpoint`]: model::checkpoint::Checkpoint

mod export;
mod hf_config;
mod import;

use std::path::PathBuf;

use model::checkpoint::CheckpointError;

pub use export::{to_hf, write_hf, QUILL_TOKENIZER_FILE};
pub use hf_config::HfConfig;
pub use import::{from_hf, is_hf_folder};

/// The four weights Hugging Face's GPT-2 keeps as `Conv1D`, stored (in, out).
pub const CONV1D_WEIGHTS: [&str; 4] =
    ["attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"];

/// Whether the Quill parameter `name` is one of the [`CONV1D_WEIGHTS`].
pub fn is_conv1d(name: &str) -> bool {
    CONV1D_WEIGHTS.iter().any(|suffix| name.ends_with(suffix))
}

/// Why a folder cannot be imported or a checkpoint exported. Each message is one sentence
/// naming the file (and the tensor or field) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a GPT-2 config.json ({detail}); pass the folder that save_pretrained wrote")]
    Config { path: PathBuf, detail: String },
    #[error(
        "{path}: activation_function is {found:?}, but Quill's GPT computes only GELU's tanh form \
         (\"gelu_new\"); this model cannot be imported"
    )]
    Activation { path: PathBuf, found: String },
    #[error(
        "{path}: layer_norm_epsilon is {found:e}, but Quill's layer norm uses GPT-2's {expected:e}; \
         only models with that epsilon can be imported"
    )]
    LayerNormEpsilon { path: PathBuf, found: f64, expected: f32 },
    #[error(
        "{path}: {detail}, but Quill's GPT ties the output head to transformer.wte.weight; only \
         models with a tied head can be imported"
    )]
    UntiedHead { path: PathBuf, detail: String },
    /// A model with architecture options GPT-2 does not have (`model.norm`, ...).
    #[error(
        "the model has {options}, which Hugging Face's GPT-2 format cannot hold; only a model with \
         GPT-2's architecture (those options left at their defaults) can be exported"
    )]
    NotGpt2Architecture { options: String },
    #[error("{path}: {field} is {found}, which Quill's GPT cannot represent ({why})")]
    Unsupported { path: PathBuf, field: &'static str, found: String, why: &'static str },
    #[error(
        "{path}: tensor {name} is missing; the file is incomplete or not of a GPT-2 model, save it \
         again with save_pretrained"
    )]
    MissingTensor { path: PathBuf, name: String },
    #[error(
        "{path}: tensor {name} has shape {found:?}, but config.json makes it {expected:?}; the \
         weights and config.json belong to different models"
    )]
    ShapeMismatch { path: PathBuf, name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error(
        "{path}: tensor {name} is {found}, but only F32 is read; save the model in float32 \
         (model.float().save_pretrained(DIR))"
    )]
    Dtype { path: PathBuf, name: String, found: String },
    #[error("{path}: tensor {name} is not part of a GPT-2 model, so Quill's GPT has nowhere to put it")]
    UnexpectedTensor { path: PathBuf, name: String },
    #[error(
        "{path}: not a readable safetensors file ({detail}); save the model again with \
         save_pretrained(DIR, safe_serialization=True)"
    )]
    Safetensors { path: PathBuf, detail: String },
    #[error(
        "{dir}: no tokenizer (vocab.json + merges.txt, encoder.json + vocab.bpe, or \
         quill_tokenizer.bin); copy the model's tokenizer files into the folder"
    )]
    NoTokenizer { dir: PathBuf },
    #[error("{path}: {detail}")]
    Tokenizer { path: PathBuf, detail: String },
    #[error(
        "{path}: the tokenizer has {tokenizer} tokens but config.json's vocab_size is {model}; the \
         tokenizer files belong to another model"
    )]
    VocabMismatch { path: PathBuf, tokenizer: usize, model: usize },
    #[error("{path}: cannot write ({detail}); check that the folder is writable and has space")]
    Write { path: PathBuf, detail: String },
    /// A file to write (`output`) that is the input it is converted from (`input`, under
    /// that name or another: a link).
    #[error("{output}: is the input {input}, so convert will not write it (not even with --force); choose another --out")]
    OutputIsInput { output: PathBuf, input: PathBuf },
    #[error("{path} already exists; pass --force to replace it")]
    OutputExists { path: PathBuf },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

impl ConvertError {
    fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ConvertError + '_ {
        move |error| ConvertError::Io { path: path.to_path_buf(), error }
    }
}
