//! Quill's data crate: tokenizers (char-level, our own byte-level BPE, GPT-2's BPE),
//! the token-file format, `prepare` (text in, tokenizer and token files out), and the
//! memory-mapped corpus with its seeded batch sampler.
//!
//! Each piece lives in its own module and is re-exported here, so users write
//! `data::TokenFile`, `data::BatchSampler`, `data::prepare`, ...

mod fxhash;
mod prepare;
mod sampler;
mod shard;
mod text;
mod tokenizer;

use std::path::PathBuf;

pub use prepare::{prepare, prepare_with, PrepareOptions, PrepareSummary, DEFAULT_GPT2_DIR};
pub use sampler::{read_windows, sequential_batch_count, sequential_batches, BatchSampler, SamplerState};
pub use shard::{
    write_atomically, write_token_file, TokenFile, TokenWriter, TOKEN_FILE_HEADER_LEN, TOKEN_FILE_VERSION,
};
pub use tokenizer::bpe::{BpeTokenizer, MIN_BPE_VOCAB};
pub use tokenizer::char::CharTokenizer;
pub use tokenizer::gpt2::{Gpt2Tokenizer, END_OF_TEXT};
pub use tokenizer::pretokenize::pretokenize;
pub use tokenizer::{load_tokenizer, save_tokenizer, tokenizer_from_bytes};

/// Everything that can go wrong with files and text from the outside world. Each message
/// names the file, what was expected, what was found, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A complete, user-facing sentence.
    #[error("{0}")]
    Message(String),
    /// An operating-system error on a file.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

impl DataError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> DataError {
        DataError::Io { path: path.to_path_buf(), error: source }
    }
}

/// Text ⇄ token ids. Implemented by the char-level, BPE and GPT-2 tokenizers.
pub trait Tokenizer: Send + Sync {
    /// "char", "bpe" or "gpt2".
    fn kind(&self) -> &'static str;
    fn vocab_size(&self) -> usize;
    /// Fails (naming the characters) when the text holds something the vocabulary cannot
    /// express; byte-level tokenizers never fail.
    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError>;
    /// The bytes of one token (a token of a byte-level tokenizer may be part of a
    /// multi-byte character, so streaming output concatenates bytes before decoding).
    fn token_bytes(&self, id: u32) -> Vec<u8>;
    /// Decodes ids to text, replacing incomplete UTF-8 with U+FFFD.
    fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.token_bytes(id)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    /// A self-describing serialisation (kind tag included), read back by [`tokenizer_from_bytes`].
    fn to_bytes(&self) -> Vec<u8>;
    /// GPT-2's tokenizer as itself (to write its files back out); `None` for the others.
    fn as_gpt2(&self) -> Option<&Gpt2Tokenizer> {
        None
    }
}
