//! Quill's data crate: tokenizers (char-level, our own byte-level BPE, GPT-2's BPE),
//! the token-file format, `prepare` (text in, tokenizer and token files out), and the
//! memory-mapped corpus with its seeded batch sampler.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tensor::Rng;

/// Everything that can go wrong with files and text from the outside world. Each message
/// names the file, what was expected, what was found, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{0}")]
    Message(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
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
}

/// Reads a tokenizer written by [`Tokenizer::to_bytes`] (as embedded in a checkpoint).
pub fn tokenizer_from_bytes(bytes: &[u8]) -> Result<Box<dyn Tokenizer>, DataError> {
    todo!("{}", bytes.len())
}

/// Reads the tokenizer file that `prepare` writes beside the corpus (`tokenizer.bin`).
pub fn load_tokenizer(path: &Path) -> Result<Box<dyn Tokenizer>, DataError> {
    todo!("{path:?}")
}

/// A memory-mapped token file (`train.bin` / `val.bin`): header checked, tokens read in place.
pub struct TokenFile {}

impl TokenFile {
    /// Opens and validates a token file: magic, version, width, vocab size, and the token
    /// count against the file length.
    pub fn open(path: &Path) -> Result<TokenFile, DataError> {
        todo!("{path:?}")
    }
    pub fn path(&self) -> &Path {
        todo!()
    }
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn vocab_size(&self) -> usize {
        todo!()
    }
    pub fn get(&self, i: usize) -> u32 {
        todo!("{i}")
    }
    /// Copies tokens [start, start + out.len()) into `out`.
    pub fn read_into(&self, start: usize, out: &mut [u32]) {
        todo!("{start} {}", out.len())
    }
}

/// The state of a [`BatchSampler`], saved in checkpoints for exact resume.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SamplerState {
    pub rng: Rng,
    pub batches_drawn: u64,
}

/// Draws batches of `batch_size` random windows of `block_size + 1` tokens: inputs are
/// the first `block_size`, targets the same window shifted by one.
pub struct BatchSampler {}

impl BatchSampler {
    /// Fails when the file holds fewer than `block_size + 1` tokens.
    pub fn new(
        file: &TokenFile,
        batch_size: usize,
        block_size: usize,
        seed: u64,
    ) -> Result<BatchSampler, DataError> {
        todo!("{} {batch_size} {block_size} {seed}", file.len())
    }
    /// Fills `inputs` and `targets` (each batch_size × block_size, row-major).
    pub fn next_batch(&mut self, file: &TokenFile, inputs: &mut Vec<u32>, targets: &mut Vec<u32>) {
        todo!("{} {} {}", file.len(), inputs.len(), targets.len())
    }
    pub fn state(&self) -> SamplerState {
        todo!()
    }
    pub fn restore(&mut self, state: SamplerState) {
        todo!("{state:?}")
    }
}

/// Consecutive, non-overlapping windows covering a file in order, for evaluation.
/// Yields up to `max_batches` batches (each batch_size × block_size inputs and targets);
/// the final partial batch is dropped.
pub fn sequential_batches(
    file: &TokenFile,
    batch_size: usize,
    block_size: usize,
    max_batches: usize,
) -> impl Iterator<Item = (Vec<u32>, Vec<u32>)> + '_ {
    todo!("{} {batch_size} {block_size} {max_batches}", file.len());
    #[allow(unreachable_code)]
    std::iter::empty()
}

/// What `prepare` is asked to do.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// "char", "bpe" or "gpt2".
    pub tokenizer: String,
    /// For "bpe": the vocabulary size to learn.
    pub vocab_size: Option<usize>,
    pub val_fraction: f64,
    /// Replace invalid UTF-8 with U+FFFD instead of refusing the file.
    pub lossy: bool,
    /// Show progress bars.
    pub progress: bool,
}

/// What `prepare` wrote.
#[derive(Clone, Debug)]
pub struct PrepareSummary {
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    /// Bytes of text per token over the whole input (for bits per byte).
    pub bytes_per_token: f64,
}

/// Writes `tokenizer.bin`, `train.bin` and `val.bin` into `out_dir` (each through a
/// temporary name and a rename, so a failure leaves nothing partial).
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareSummary, DataError> {
    todo!("{opts:?}")
}
