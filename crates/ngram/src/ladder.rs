//! The ladder: bits per byte on the val split of the 1..N-gram models and of trained
//! checkpoints, one row each, so a reader sees what the network buys over counting.
//!
//! A checkpoint is scored as `train --evaluate` scores it: the mean loss over every
//! block_size-token window of the val split (`train::eval::split_loss`), in batches of the
//! run's `train.batch_size`, turned into bits per byte with the split's bytes per token.

use std::path::Path;

use model::budget::{format_bytes, MemoryLimit};
use model::checkpoint::Checkpoint;

use crate::corpus::{Corpus, Split};
use crate::use_counts::Score;
use crate::NgramError;

/// One line of the ladder.
#[derive(Clone, Debug, PartialEq)]
pub struct LadderRow {
    /// "3-gram (Kneser-Ney)" or the checkpoint's path.
    pub model: String,
    pub bits_per_byte: f64,
    /// Per token of the model's own level.
    pub perplexity: f64,
    /// Tokens predicted.
    pub tokens: u64,
}

impl From<&Score> for LadderRow {
    fn from(score: &Score) -> LadderRow {
        LadderRow {
            model: format!("{}-gram (Kneser-Ney)", score.n),
            bits_per_byte: score.bits_per_byte(),
            perplexity: score.perplexity(),
            tokens: score.tokens,
        }
    }
}

/// Scores the checkpoint at `path` on the val split of `corpus`, which must be the prepared
/// dataset it was trained on (the same tokenizer).
pub fn checkpoint_score(path: &Path, corpus: &Corpus) -> Result<LadderRow, NgramError> {
    let Some(tokenizer) = corpus.tokenizer() else {
        return Err(NgramError::Message(format!(
            "{}: a checkpoint is scored on a prepared dataset; pass --dataset DIR (the one it was trained on)",
            path.display()
        )));
    };
    let ckpt = Checkpoint::load(path)?;
    if ckpt.tokenizer != tokenizer.to_bytes() {
        return Err(NgramError::Message(format!(
            "{}: its tokenizer is not the one of {}; name the dataset the checkpoint was trained on",
            path.display(),
            corpus.origin()
        )));
    }
    if tokenizer.vocab_size() > ckpt.model.vocab_size {
        return Err(NgramError::Message(format!(
            "{}: its tokenizer has {} tokens but the model only {}; the checkpoint was not written by train, train it again",
            path.display(),
            tokenizer.vocab_size(),
            ckpt.model.vocab_size
        )));
    }
    let val = corpus.token_file(Split::Val)?;
    let block_size = ckpt.model.block_size;
    if val.len() <= block_size {
        return Err(NgramError::Message(format!(
            "{}: {} tokens, need at least block_size + 1 = {} to score {}",
            val.path().display(),
            val.len(),
            block_size + 1,
            path.display()
        )));
    }
    let run_config = train::Config::parse(&ckpt.run_config, &path.display().to_string(), &[])?;
    let batch_size = run_config.train.batch_size;
    let memory = ckpt
        .model
        .training_memory(batch_size, 0)
        .map_err(|e| NgramError::Message(format!("{}: {e}", path.display())))?;
    let needed = memory.weights.saturating_add(memory.activations);
    if let Some(limit) = MemoryLimit::exceeded_by(needed).map_err(|e| NgramError::Message(e.to_string()))? {
        return Err(NgramError::Message(format!(
            "{}: scoring with its train.batch_size = {batch_size} needs {}; {} (raise the limit with QUILL_MAX_MEMORY=GB)",
            path.display(),
            format_bytes(needed),
            limit.describe()
        )));
    }
    let mut gpt = ckpt.into_model()?;
    let split = train::eval::split_loss(&mut gpt, &val, batch_size, block_size);
    let bytes_per_token = train::corpus::bytes_per_token(tokenizer, &val);
    Ok(LadderRow {
        model: path.display().to_string(),
        bits_per_byte: train::corpus::bits_per_byte(split.loss, bytes_per_token),
        perplexity: split.loss.exp(),
        tokens: (split.windows * block_size) as u64,
    })
}

/// The ladder as an aligned table.
pub fn format_ladder(rows: &[LadderRow]) -> String {
    let width = rows.iter().map(|r| r.model.chars().count()).max().unwrap_or(0).max(5);
    let mut out = format!("  {:<width$}  bits/byte  perplexity  tokens scored\n", "model");
    for row in rows {
        out.push_str(&format!(
            "  {:<width$}  {:>9.3}  {:>10.2}  {:>13}\n",
            row.model, row.bits_per_byte, row.perplexity, row.tokens
        ));
    }
    out
}
