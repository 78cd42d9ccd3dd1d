//! Sampling: temperature, top-k and top-p filtering, greedy decoding, next-token
//! probability tables and scoring, over a model's KV-cache inference path.
//!
//! The choosing and generating itself lives in `model::sampling` (the trainer shows
//! samples too); this crate holds what the `sample` binary adds around it: finding and
//! loading a checkpoint with its own tokenizer, encoding the prompt, streaming bytes as
//! text, the next-token table and scoring a text.

use std::path::{Path, PathBuf};

use data::{DataError, Tokenizer};
use model::budget::{format_bytes, MemoryLimit};
use model::checkpoint::{Checkpoint, CheckpointError};
use model::sampling::{log_prob, Decoder};
use model::Gpt;

/// What can go wrong before sampling starts; each message is one sentence naming the
/// path or the text and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
}

/// The checkpoint file behind `path`: the file itself, or in a run folder `best.ckpt`,
/// else `latest.ckpt`.
pub fn resolve_checkpoint(path: &Path) -> Result<PathBuf, SampleError> {
    if !path.is_dir() {
        // A missing file is reported by Checkpoint::load, which names it.
        return Ok(path.to_path_buf());
    }
    for name in ["best.ckpt", "latest.ckpt"] {
        let file = path.join(name);
        if file.is_file() {
            return Ok(file);
        }
    }
    Err(SampleError::Message(format!(
        "{}: this run folder has no best.ckpt or latest.ckpt yet; train until the first \
         checkpoint is written, or pass a .ckpt file to --checkpoint",
        path.display()
    )))
}

/// A model ready to sample from, with the tokenizer it was trained with.
pub struct Loaded {
    /// The checkpoint file actually read.
    pub path: PathBuf,
    /// Optimizer steps the checkpoint had completed.
    pub step: u64,
    pub gpt: Gpt,
    pub tokenizer: Box<dyn Tokenizer>,
}

/// Resolves `path` (file, run folder, or a Hugging Face GPT-2 folder, imported on the
/// fly), reads and verifies the checkpoint, and builds its model and tokenizer.
pub fn load(path: &Path) -> Result<Loaded, SampleError> {
    if convert::is_hf_folder(path) {
        let ckpt = convert::from_hf(path)?;
        return from_checkpoint(path.to_path_buf(), ckpt);
    }
    let path = resolve_checkpoint(path)?;
    if !path.exists() {
        return Err(SampleError::Message(format!(
            "{}: no such checkpoint file; pass a .ckpt file or a run folder that holds best.ckpt or latest.ckpt",
            path.display()
        )));
    }
    let ckpt = Checkpoint::load(&path)?;
    from_checkpoint(path, ckpt)
}

/// The model and tokenizer of `ckpt`, read from `path`. A tokenizer larger than the model's
/// vocabulary is refused; a smaller one (a model whose vocabulary was padded, as some GPT-2
/// exports are) is accepted, and the ids past it, which have no text, are never sampled.
/// The model and its KV cache must fit in memory ([`MemoryLimit`]), checked before either
/// is allocated.
fn from_checkpoint(path: PathBuf, ckpt: Checkpoint) -> Result<Loaded, SampleError> {
    let tokenizer = data::tokenizer_from_bytes(&ckpt.tokenizer).map_err(|e| {
        SampleError::Message(format!("{}: the embedded tokenizer cannot be read: {e}", path.display()))
    })?;
    if tokenizer.vocab_size() > ckpt.model.vocab_size {
        return Err(SampleError::Message(format!(
            "{}: the tokenizer has {} tokens but the model only {}; this checkpoint was not \
             written by one training run, train it again",
            path.display(),
            tokenizer.vocab_size(),
            ckpt.model.vocab_size
        )));
    }
    let in_path = |e: &dyn std::fmt::Display| SampleError::Message(format!("{}: {e}", path.display()));
    let needed = ckpt.model.checked_inference_bytes().map_err(|e| in_path(&e))?;
    if let Some(limit) = MemoryLimit::exceeded_by(needed).map_err(|e| in_path(&e))? {
        let c = &ckpt.model;
        return Err(SampleError::Message(format!(
            "{}: sampling needs {} for the weights and a KV cache of block_size {} × n_layer {} × n_embd {}; {} (raise the limit with QUILL_MAX_MEMORY=GB)",
            path.display(),
            format_bytes(needed),
            c.block_size,
            c.n_layer,
            c.n_embd,
            limit.describe()
        )));
    }
    let step = ckpt.step;
    let gpt = ckpt.into_model().map_err(|e| in_path(&e))?;
    Ok(Loaded { path, step, gpt, tokenizer })
}

/// The token an empty prompt starts from: a newline when the vocabulary encodes "\n" as
/// one token (text usually follows one), else token 0.
pub fn start_token(tokenizer: &dyn Tokenizer) -> u32 {
    match tokenizer.encode("\n") {
        Ok(ids) if ids.len() == 1 => ids[0],
        _ => 0,
    }
}

/// The bytes of `id`, or U+FFFD for an id past the tokenizer's vocabulary (a model whose
/// vocabulary was padded beyond the tokenizer's can, in principle, pick one).
pub fn token_bytes(tokenizer: &dyn Tokenizer, id: u32) -> Vec<u8> {
    if (id as usize) < tokenizer.vocab_size() {
        tokenizer.token_bytes(id)
    } else {
        "\u{fffd}".as_bytes().to_vec()
    }
}

/// The text of `ids`, incomplete UTF-8 and ids past the vocabulary shown as U+FFFD.
pub fn decode(tokenizer: &dyn Tokenizer, ids: &[u32]) -> String {
    let bytes: Vec<u8> = ids.iter().flat_map(|&id| token_bytes(tokenizer, id)).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Encodes a text (`what` names it in the error: "prompt", "text to score"). With
/// `drop_unknown`, characters the vocabulary cannot express are removed (and returned, in
/// order of first appearance) instead of failing.
pub fn encode_text(
    tokenizer: &dyn Tokenizer,
    text: &str,
    what: &str,
    drop_unknown: bool,
) -> Result<(Vec<u32>, Vec<char>), SampleError> {
    match tokenizer.encode(text) {
        Ok(ids) => Ok((ids, Vec::new())),
        Err(e) if !drop_unknown => Err(SampleError::Message(format!(
            "the {what} cannot be encoded by this checkpoint's {} tokenizer: {e}; \
             remove those characters or pass --drop-unknown",
            tokenizer.kind()
        ))),
        Err(_) => {
            let mut dropped = Vec::new();
            let kept: String = text
                .chars()
                .filter(|&c| {
                    let known = tokenizer.encode(c.encode_utf8(&mut [0; 4])).is_ok();
                    if !known && !dropped.contains(&c) {
                        dropped.push(c);
                    }
                    known
                })
                .collect();
            let ids = tokenizer.encode(&kept)?;
            Ok((ids, dropped))
        }
    }
}

/// Turns a stream of token bytes into text: complete UTF-8 characters come out as soon
/// as their last byte arrives; an incomplete one waits for the next token; invalid bytes
/// become U+FFFD.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn new() -> Utf8Stream {
        Utf8Stream::default()
    }

    /// Adds bytes; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).expect("checked valid"));
                    match e.error_len() {
                        // The tail is the start of a character: keep it for the next push.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of the stream (an incomplete character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// A token's bytes as one visible cell: newline ⏎, tab ⇥, carriage return ␍, space ␣,
/// other control characters as `\u{..}`, bytes that are not (yet) UTF-8 as `\xNN`.
pub fn show_token(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push('⏎'),
                '\t' => out.push('⇥'),
                '\r' => out.push('␍'),
                ' ' => out.push('␣'),
                c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `text` padded with spaces to `width` characters.
fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

/// The next-token table: one row per candidate, rank, token and probability as a
/// percentage, aligned.
pub fn format_top_table(rows: &[(u32, f32)], tokenizer: &dyn Tokenizer) -> String {
    let shown: Vec<String> = rows.iter().map(|&(id, _)| show_token(&token_bytes(tokenizer, id))).collect();
    let width = shown.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(5);
    let mut out = format!("  rank  {}  probability\n", pad("token", width));
    for (i, (&(_, p), token)) in rows.iter().zip(&shown).enumerate() {
        out.push_str(&format!("  {:>4}  {}  {:>10.2}%\n", i + 1, pad(token, width), 100.0 * p));
    }
    out
}

/// The log-probability (natural log) of each of `tokens` given the tokens before it,
/// after `context` (which must not be empty), through the KV cache with the sliding
/// window of [`Decoder`].
pub fn score(gpt: &Gpt, context: &[u32], tokens: &[u32]) -> Vec<f64> {
    let mut decoder = Decoder::new(gpt, context);
    let mut log_probs = Vec::with_capacity(tokens.len());
    for (i, &token) in tokens.iter().enumerate() {
        log_probs.push(log_prob(decoder.logits(), token));
        if i + 1 < tokens.len() {
            decoder.push(token);
        }
    }
    log_probs
}

/// Perplexity and bits per byte of a scored text.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreSummary {
    pub tokens: usize,
    pub bytes: usize,
    /// Σ log p (natural log).
    pub total_log_prob: f64,
}

impl ScoreSummary {
    /// exp(−mean log p): the number of equally likely tokens the model hesitates among.
    pub fn perplexity(&self) -> f64 {
        (-self.total_log_prob / self.tokens as f64).exp()
    }

    /// −Σ log₂ p per byte of text: comparable across tokenizers.
    pub fn bits_per_byte(&self) -> f64 {
        -self.total_log_prob / std::f64::consts::LN_2 / self.bytes as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_stream_waits_for_whole_characters() {
        let mut s = Utf8Stream::new();
        let bytes = "é→a".as_bytes(); // c3 a9, e2 86 92, 61
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..3]), "é");
        assert_eq!(s.push(&bytes[3..4]), "");
        assert_eq!(s.push(&bytes[4..]), "→a");
        assert_eq!(s.finish(), "");
    }

    #[test]
    fn utf8_stream_replaces_invalid_bytes() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(s.push(&[0xe2, 0x86]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }

    #[test]
    fn show_token_makes_whitespace_visible() {
        assert_eq!(show_token(b"\n"), "⏎");
        assert_eq!(show_token(b" the"), "␣the");
        assert_eq!(show_token(b"\t\r"), "⇥␍");
        assert_eq!(show_token(&[0x07]), "\\u{7}");
        assert_eq!(show_token(&[b'a', 0xe2, 0x86]), "a\\xe2\\x86");
        assert_eq!(show_token("é".as_bytes()), "é");
    }

    #[test]
    fn score_summary_figures() {
        // Four tokens of four bytes, each with probability 1/2.
        let s = ScoreSummary { tokens: 4, bytes: 4, total_log_prob: 4.0 * 0.5f64.ln() };
        assert!((s.perplexity() - 2.0).abs() < 1e-12);
        assert!((s.bits_per_byte() - 1.0).abs() < 1e-12);
    }
}
