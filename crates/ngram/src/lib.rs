//! Counted language models: the n-gram models that the essay "What is ChatGPT doing, and
//! why does it work?" starts from, before any network.
//!
//! ```text
//! text file or datasets/NAME ─▶ Corpus (char, word or token level; train and val splits)
//!                            ─▶ NgramCounts (n = 1..N, counted from the train split)
//!                            ─▶ generate · top table · Kneser-Ney score of the val split
//! ```
//!
//! [`Corpus`] streams the text and turns it into token ids at one [`Level`]; [`NgramCounts`]
//! counts every n-gram of the train split for n = 1..N; [`NgramCounts::kn_prob`] is the
//! interpolated, modified Kneser-Ney probability that [`score`] uses for bits per byte;
//! [`generate`] and [`next_table`] read the raw counts (the essay's maximum-likelihood
//! probabilities); [`checkpoint_score`] and [`format_ladder`] put the n-gram scores beside
//! trained checkpoints.

mod corpus;
mod counts;
mod ladder;
mod use_counts;

pub use corpus::{split_words, Corpus, Level, Source, Split, Vocab};
pub use counts::{ContextStats, Discounts, NgramCounts, MAX_ORDER};
pub use ladder::{checkpoint_score, format_ladder, LadderRow};
pub use use_counts::{followers, format_next_table, generate, next_table, score, Score};

use std::path::PathBuf;

/// Everything that stops an n-gram command, each a sentence naming the file or the text.
#[derive(Debug, thiserror::Error)]
pub enum NgramError {
    /// A bad argument or input, already one sentence.
    #[error("{0}")]
    Message(String),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] model::checkpoint::CheckpointError),
    #[error(transparent)]
    Train(#[from] train::TrainError),
}
