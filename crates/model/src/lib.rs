//! Quill's model crate: [`GptConfig`], the [`Gpt`] (learned token and position
//! embeddings, pre-LN blocks, tied output head), GPT-2 initialisation and parameter names,
//! the training forward (recorded on the tape), an inference path with a KV cache, and
//! the [`checkpoint`] file that the trainer writes and the sampler reads.
//!
//! Files: `config.rs` (the config and sizes), `init.rs` (parameter names, shapes, layout
//! and initialisation), `gpt.rs` (the model and its training forward), `kv_cache.rs`
//! (incremental inference without the tape, with `tensor::kernels`),
//! `checkpoint.rs` (the file format), `testing.rs` (helpers for tests, here and in the
//! crates that use the model).

pub mod checkpoint;
mod config;
mod gpt;
pub mod init;
mod kv_cache;
pub mod sampling;
#[doc(hidden)]
pub mod testing;

pub use config::GptConfig;
pub use gpt::{ForwardOutput, Gpt};
pub use kv_cache::KvCache;

/// A model configuration that cannot be built; the message names the field and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
}
