//! The trainer: config, AdamW, learning-rate schedule, the training loop, evaluation,
//! checkpoints and exact resume.
//!
//! The `train` binary is a thin shell over [`run`] (and [`evaluate_run`] for
//! `train --evaluate`), so tests drive whole runs in-process:
//!
//! ```text
//! config.toml ─▶ Config::load ─▶ run(RunOptions) ─▶ runs/NAME/{config.toml, metrics.jsonl,
//!                                                      latest.ckpt, best.ckpt, loss.svg, events.*}
//! ```

pub mod config;
pub mod console;
pub mod corpus;
pub mod eval;
pub mod optim;
pub mod rundir;
pub mod schedule;
pub mod seeds;
pub mod start;
pub mod trainer;

use std::path::PathBuf;

pub use config::Config;
pub use console::Verbosity;
pub use eval::{evaluate_run, SplitReport, Splits};
pub use optim::{AdamW, AdamWConfig};
pub use start::{fresh_start, Start, TrainState};
pub use trainer::{accumulate_gradients, run, stop_requested, RunOptions, RunSummary};

/// Everything that stops a run, each with one sentence naming the file, field or step.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A bad config file, field or override.
    #[error("{0}")]
    Config(String),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] model::checkpoint::CheckpointError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
    /// A NaN or infinity in the loss or the gradients.
    #[error("{0}")]
    NonFinite(String),
    /// Anything else, already one sentence.
    #[error("{0}")]
    Message(String),
}
