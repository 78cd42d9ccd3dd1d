//! Quill's data crate: tokenizers (char-level, our own byte-level BPE, GPT-2's BPE),
//! the token-file format, the dataset folder ([`Dataset`]: tokenizer and splits),
//! `prepare` (text in, dataset folder out), and the seeded batch sampler.
//!
//! Each piece lives in its own module and is re-exported here, so users write
//! `data::TokenFile`, `data::BatchSampler`, `data::prepare`, ...

mod dataset;
mod fxhash;
mod prepare;
mod sampler;
mod shard;
mod text;
mod tokenizer;

use std::path::PathBuf;

pub use dataset::{Dataset, DatasetState, DATASET_FILES, TOKENIZER_FILE, TRAIN_FILE, VAL_FILE};
pub use prepare::{prepare, prepare_with, PrepareOptions, PrepareSummary, DEFAULT_GPT2_DIR};
pub use sampler::{read_windows, sequential_batch_count, sequential_batches, BatchSampler, SamplerState};
pub use shard::{write_token_file, TokenFile, TokenWriter, TOKEN_FILE_HEADER_LEN, TOKEN_FILE_VERSION};
pub use tokenizer::bpe::{BpeTokenizer, MIN_BPE_VOCAB};
pub use tokenizer::char::CharTokenizer;
pub use tokenizer::gpt2::{Gpt2Tokenizer, END_OF_TEXT};
pub use tokenizer::pretokenize::pretokenize;
pub use tokenizer::{load_tokenizer, save_tokenizer, tokenizer_from_bytes};

/// The fix for a damaged or mismatched dataset file.
pub(crate) const PREPARE_HINT: &str = "run prepare again: prepare --input ... --out ...";

/// Everything that can go wrong with files and text from the outside world. Each message
/// names the file, what was expected, what was found, and how to fix it. The kinds a
/// program may act on have their own variants; the rest are one sentence.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A complete, user-facing sentence.
    #[error("{0}")]
    Message(String),
    /// An operating-system error on a file.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// An input text file cannot be read.
    #[error("{path}: cannot read the input ({error}); check the path given to --input")]
    UnreadableInput { path: PathBuf, error: std::io::Error },
    /// An input text file is not UTF-8 at byte `offset`.
    #[error(
        "{path}: invalid UTF-8 at byte {offset}; convert the file to UTF-8, or pass --lossy to replace bad bytes with U+FFFD"
    )]
    InvalidUtf8 { path: PathBuf, offset: u64 },
    /// `prepare` would overwrite `path`, a file of the dataset in `out_dir`.
    #[error(
        "{path}: already exists; pass --force to overwrite the prepared corpus in {out_dir}, or choose another --out"
    )]
    AlreadyPrepared { path: PathBuf, out_dir: PathBuf },
    /// A file prepare would write (`output`) that is one of its inputs (`input`, under
    /// that name or another: a link), so writing it would destroy the text.
    #[error(
        "{output}: is the input {input}, so prepare will not write it (not even with --force); move the text out of the output folder or choose another --out"
    )]
    OutputIsInput { output: PathBuf, input: PathBuf },
    /// Text with characters a char-level tokenizer does not know (`chars`, in order of
    /// appearance); it knows `known` characters.
    #[error(
        "the text has characters the tokenizer does not know: {} (this char-level tokenizer knows only the {known} characters of its training text)",
        char_list(chars)
    )]
    UnknownCharacters { chars: Vec<char>, known: usize },
    /// A tokenizer file that cannot be opened (most often: not prepared yet).
    #[error(
        "{}: cannot read the tokenizer ({error}); run prepare first: prepare --input ... --out {}",
        path.display(),
        path.parent().map_or(".".into(), |p| p.display().to_string())
    )]
    MissingTokenizer { path: PathBuf, error: std::io::Error },
    /// Tokenizer bytes (of a file at `path`, or embedded in a checkpoint) that are not a
    /// tokenizer this build reads; `detail` says why and what to do.
    #[error("{}{detail}", path.as_ref().map_or(String::new(), |p| format!("{}: ", p.display())))]
    BadTokenizer { path: Option<PathBuf>, detail: String },
    /// A token file that cannot be opened (most often: not prepared yet).
    #[error(
        "{path}: cannot open the token file ({error}); run prepare first: prepare --input ... --out ..."
    )]
    MissingTokenFile { path: PathBuf, error: std::io::Error },
    /// A token file whose header or length is wrong; `detail` says how.
    #[error("{path}: {detail}")]
    BadTokenFile { path: PathBuf, detail: String },
    /// A token file made for another vocabulary than its tokenizer's.
    #[error(
        "{path}: made for a vocabulary of {file_vocab} tokens, but the tokenizer has {tokenizer_vocab}; the corpus and tokenizer do not belong together; {PREPARE_HINT}"
    )]
    VocabMismatch { path: PathBuf, file_vocab: usize, tokenizer_vocab: usize },
    /// A token id at or past the vocabulary its file's header declares; `index` is the
    /// first such token's position (in tokens from the start of the data).
    #[error(
        "{path}: token {index} is id {id}, outside the file's vocabulary of {vocab_size} tokens; the file is damaged or was not written by prepare; {PREPARE_HINT}"
    )]
    TokenOutOfVocab { path: PathBuf, index: u64, id: u32, vocab_size: usize },
    /// A split too short for one window of `need` = block_size + 1 tokens.
    #[error("{path}: {tokens} tokens, need at least block_size + 1 = {need}; lower block_size or add text")]
    TooFewTokens { path: PathBuf, tokens: usize, need: usize },
}

/// Up to ten characters, quoted and escaped, then how many more.
fn char_list(chars: &[char]) -> String {
    const SHOWN: usize = 10;
    let mut list: Vec<String> = chars.iter().take(SHOWN).map(|c| format!("'{}'", c.escape_debug())).collect();
    if chars.len() > SHOWN {
        list.push(format!("and {} more", chars.len() - SHOWN));
    }
    list.join(", ")
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
