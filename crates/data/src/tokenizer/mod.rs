//! The three tokenizers and their shared file format. A serialised tokenizer starts with
//! the magic `QUILLTKN`, a format version (u32, little-endian) and a kind tag (one byte),
//! then the kind's payload in bincode: the characters for char-level, the full merge table
//! (token bytes, byte tokens, merges, special tokens) for BPE and GPT-2, so a checkpoint
//! that embeds it needs no other file to sample.

pub mod bpe;
pub mod char;
pub mod gpt2;
mod letters;
pub(crate) mod merges;
pub mod pretokenize;

use std::path::Path;

use crate::{DataError, Tokenizer};

const MAGIC: &[u8; 8] = b"QUILLTKN";
/// The tokenizer format version this build writes and reads.
const VERSION: u32 = 1;
const HEADER_LEN: usize = 13;

pub(crate) const KIND_CHAR: u8 = 1;
pub(crate) const KIND_BPE: u8 = 2;
pub(crate) const KIND_GPT2: u8 = 3;

/// The header every serialised tokenizer starts with.
pub(crate) fn tokenizer_header(kind: u8) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend(VERSION.to_le_bytes());
    out.push(kind);
    out
}

/// Reads a tokenizer written by [`Tokenizer::to_bytes`] (as embedded in a checkpoint).
pub fn tokenizer_from_bytes(bytes: &[u8]) -> Result<Box<dyn Tokenizer>, DataError> {
    parse(bytes).map_err(|detail| DataError::BadTokenizer { path: None, detail })
}

/// [`tokenizer_from_bytes`], the error being what is wrong and what to do.
fn parse(bytes: &[u8]) -> Result<Box<dyn Tokenizer>, String> {
    let fail = |detail: String| Err(detail);
    if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
        return fail(
            "not a Quill tokenizer (bad magic); run prepare again: prepare --input ... --out ...".into(),
        );
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return fail(format!(
            "tokenizer format version {version}, but this build reads version {VERSION}; {}",
            if version > VERSION {
                "update Quill"
            } else {
                "run prepare again: prepare --input ... --out ..."
            }
        ));
    }
    let payload = &bytes[HEADER_LEN..];
    let damaged = |kind: &str, e: String| {
        format!(
            "the {kind} tokenizer data is damaged ({e}); run prepare again: prepare --input ... --out ..."
        )
    };
    Ok(match bytes[12] {
        KIND_CHAR => Box::new(char::CharTokenizer::from_payload(payload).map_err(|e| damaged("char", e))?),
        KIND_BPE => Box::new(bpe::BpeTokenizer::from_payload(payload).map_err(|e| damaged("bpe", e))?),
        KIND_GPT2 => Box::new(gpt2::Gpt2Tokenizer::from_payload(payload).map_err(|e| damaged("gpt2", e))?),
        other => return fail(format!("unknown tokenizer kind tag {other}; update Quill")),
    })
}

/// Reads the tokenizer file that `prepare` writes beside the corpus (`tokenizer.bin`).
pub fn load_tokenizer(path: &Path) -> Result<Box<dyn Tokenizer>, DataError> {
    let bytes = std::fs::read(path)
        .map_err(|error| DataError::MissingTokenizer { path: path.to_path_buf(), error })?;
    parse(&bytes).map_err(|detail| DataError::BadTokenizer { path: Some(path.to_path_buf()), detail })
}

/// Writes `tokenizer.to_bytes()` to `path` atomically (`fsio`'s temporary file, sync, rename).
pub fn save_tokenizer(tokenizer: &dyn Tokenizer, path: &Path) -> Result<(), DataError> {
    fsio::write_atomic(path, &tokenizer.to_bytes()).map_err(|e| DataError::io(path, e))
}
