//! Quill's model crate: [`GptConfig`], the [`Gpt`] (GPT-2's learned token and position
//! embeddings, pre-LN blocks and tied output head, with the options of [`Arch`]: RMSNorm,
//! ReLU², rotary positions, QK-norm, an untied head), GPT-2 initialisation and parameter names,
//! the training forward (recorded on the tape), an inference path with a KV cache, and
//! the [`checkpoint`] file that the trainer writes and the sampler reads.
//!
//! Files: `config.rs` (the config and sizes), `init.rs` (parameter names, shapes, layout
//! and initialisation), `gpt.rs` (the model and its training forward), `kv_cache.rs`
//! (incremental inference without the tape, with `tensor::kernels`), `inspect.rs`
//! (attention weights and hidden states for a prompt, for pictures), `budget.rs` (the
//! memory a model and a run need, overflow-checked), `checkpoint.rs` (the file format),
//! `testing.rs` (helpers for tests, here and in the
//! crates that use the model).

pub mod budget;
pub mod checkpoint;
mod config;
mod gpt;
pub mod init;
mod inspect;
mod kv_cache;
pub mod sampling;
#[doc(hidden)]
pub mod testing;

pub use config::{Activation, Arch, GptConfig, Norm, Position};
pub use gpt::{ForwardOutput, Gpt};
pub use inspect::Trace;
pub use kv_cache::{Dtype, KvCache};

/// A model configuration that cannot be built; the message names the field and the rule.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A size (`vocab_size`, `block_size`, `n_layer`, `n_head`, `n_embd`) that is 0.
    #[error("model.{field} = 0; it must be at least 1")]
    ZeroSize { field: &'static str },
    /// Attention heads that do not split the width evenly.
    #[error(
        "model.n_embd = {n_embd} is not divisible by model.n_head = {n_head}; pick n_embd as a multiple of n_head"
    )]
    HeadsDoNotDivideWidth { n_embd: usize, n_head: usize },
    /// A dropout probability outside [0, 1).
    #[error("model.dropout = {dropout} is outside [0, 1); use 0.0 for none, 0.1-0.2 for small data")]
    DropoutOutOfRange { dropout: f32 },
    /// Rotary embeddings rotate pairs of channels, so each head needs an even width.
    #[error(
        "model.position = \"rope\" needs an even head size, but model.n_embd = {n_embd} / model.n_head = {n_head} is odd; change n_embd or n_head"
    )]
    OddHeadSizeForRope { n_embd: usize, n_head: usize },
    /// A size whose memory does not fit in 64 bits; `field` is the dotted name
    /// (`model.n_embd`, `train.batch_size`).
    #[error("{field} = {value} makes the memory it needs overflow 64 bits; use a smaller value")]
    TooLarge { field: &'static str, value: u64 },
    /// A memory limit (`QUILL_MAX_MEMORY`, `--max-memory`) that is not a number of GB.
    #[error("QUILL_MAX_MEMORY={text} is not a memory size; give a number of GB > 0, e.g. 64 or 0.5")]
    BadMemoryLimit { text: String },
}
