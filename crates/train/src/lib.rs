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
pub mod init_from;
pub mod muon;
pub mod optim;
pub mod parallel;
pub mod rundir;
pub mod schedule;
pub mod seeds;
pub mod start;
pub mod trainer;
pub mod world;

use std::path::PathBuf;

pub use config::Config;
pub use console::Verbosity;
pub use eval::{evaluate_run, SplitReport, Splits};
pub use muon::{Muon, MuonConfig};
pub use optim::{AdamW, AdamWConfig, LearningRates, Optimizer};
pub use start::{fresh_start, Start, TrainState};
pub use trainer::{accumulate_gradients, run, run_with, stop_requested, RunOptions, RunSummary};
pub use world::World;

/// Everything that stops a run, each with one sentence naming the file, field or step.
/// The kinds a program may want to tell apart are variants with fields; the sentence is
/// the one a user reads.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config field that does not exist; `at` names the file and line, or the override.
    #[error("{at}: unknown field `{field}` in [{section}]; expected {expected}")]
    UnknownField { at: String, section: String, field: String, expected: String },
    /// A config section that does not exist; `at` names the file and line, or the override.
    #[error("{at}: unknown section [{section}]; expected {expected}")]
    UnknownSection { at: String, section: String, expected: String },
    /// A `--set` override that is not `section.key=value`.
    #[error("--set {item}: {problem}; expected section.key=value, e.g. --set train.max_iters=50")]
    OverrideSyntax { item: String, problem: &'static str },
    /// A config value that breaks a rule: `value` is the value as TOML (empty when unset),
    /// `rule` says what was expected and what was found.
    #[error("{origin}: {field}: {rule}")]
    InvalidValue { origin: String, field: String, value: String, rule: String },
    /// Any other bad config file, field or override (bad TOML, a wrong type, a duplicate
    /// key, a dataset the config does not describe), already one sentence.
    #[error("{0}")]
    Config(String),
    /// A `--set` other than `train.max_iters` when resuming.
    #[error(
        "--set {item}: only train.max_iters can change when resuming (to extend the run); start a new run to change anything else"
    )]
    ResumeOverride { item: String },
    /// A folder given to `flag` (--resume, --evaluate) that holds no config.toml.
    #[error(
        "{path}: not a run folder (it has no config.toml); {flag} takes a folder that train wrote, runs/NAME"
    )]
    NotARunFolder { path: PathBuf, flag: &'static str },
    /// `--resume` of a run that saved no latest.ckpt (`path`) yet.
    #[error("{path}: not found; the run saved no checkpoint yet, so there is nothing to resume")]
    NothingToResume { path: PathBuf },
    /// A run folder's `config` whose data.dataset no longer holds a prepared dataset;
    /// `relative_to` is the current folder when that path is relative.
    #[error(
        "{config}: data.dataset: {dataset} does not hold the prepared dataset this run trained on{}; set data.dataset in {config} to where the dataset is now",
        moved_hint(.relative_to)
    )]
    DatasetMoved { config: PathBuf, dataset: PathBuf, relative_to: Option<PathBuf> },
    /// A checkpoint name that is a symbolic link to `target`, which does not exist.
    #[error("{path}: a link to {target}, which does not exist; point it at a checkpoint or remove it")]
    BrokenLink { path: PathBuf, target: PathBuf },
    /// `--resume` of a run already at its `train.max_iters`.
    #[error(
        "{run_dir} is already at step {step} of train.max_iters = {max_iters}; to train on, extend it: --resume {run_dir} --set train.max_iters=N with N > {step}"
    )]
    RunComplete { run_dir: PathBuf, step: u64, max_iters: u64 },
    /// A corrupted latest.ckpt beside an intact best.ckpt, which could continue the run.
    #[error(
        "{error}; best.ckpt (step {best_step}) is intact: to continue from it, copy it over latest.ckpt"
    )]
    LatestCorrupted { error: model::checkpoint::CheckpointError, best_step: u64 },
    /// `--evaluate` of a run that saved no checkpoint.
    #[error("{run_dir}: holds neither best.ckpt nor latest.ckpt; the run saved no checkpoint to evaluate")]
    NothingToEvaluate { run_dir: PathBuf },
    /// A checkpoint of another model than the config describes; `detail` names the fields
    /// that differ.
    #[error(
        "{path}: the checkpoint is of another model ({detail}); use the run folder's own config.toml and dataset"
    )]
    ModelMismatch { path: PathBuf, detail: String },
    /// A checkpoint whose tokenizer is not the one of the config's dataset.
    #[error("{path}: the tokenizer of {dataset} differs from the checkpoint's; use the dataset the run started with")]
    TokenizerMismatch { path: PathBuf, dataset: PathBuf },
    /// A checkpoint that cannot continue a run: no optimizer state, or one of another
    /// model, or an unreadable trainer state.
    #[error("{path}: {detail}")]
    NotResumable { path: PathBuf, detail: String },
    /// A run (or an evaluation) that needs more memory than the limit: the machine's
    /// available memory, or what `--max-memory` / `QUILL_MAX_MEMORY` allows. `detail`
    /// names the fields and the figures.
    #[error("{detail} (use smaller values, or raise the limit with --max-memory GB)")]
    OutOfMemory { detail: String },
    /// A parameter without a gradient at the first step.
    #[error("step 0: {detail}; a layer is probably not connected to the loss")]
    Disconnected { detail: String },
    /// A NaN or infinity in the loss or the gradient norm at `step`; `parameter` is the
    /// first with a non-finite gradient. Nothing was saved.
    #[error(
        "step {step}: loss {loss}, gradient norm {grad_norm}; {}. Stopped without saving: the last good checkpoint in {run_dir} is untouched. Try a lower optim.learning_rate or a grad_clip",
        culprit(.parameter)
    )]
    NonFinite { step: u64, loss: f64, grad_norm: f64, parameter: Option<String>, run_dir: PathBuf },
    /// `model.init_from` names nothing that exists, or a run folder with no checkpoint.
    #[error("{origin}: model.init_from: {path} {problem}")]
    InitFromMissing { origin: String, path: PathBuf, problem: String },
    /// A `[model]` field the config sets to another value than the weights of `init_from`
    /// have (`block_size` may only be lowered).
    #[error(
        "{origin}: model.{field} = {config}, but the weights of {path} have {field} = {weights}; {}",
        mismatch_fix(field)
    )]
    InitFromMismatch { origin: String, path: PathBuf, field: &'static str, config: String, weights: String },
    /// A dataset prepared with another tokenizer than the weights of `init_from` were
    /// trained with; `dataset_tokenizer` and `weights_tokenizer` describe both.
    #[error(
        "{origin}: data.dataset {dataset} uses the {dataset_tokenizer} tokenizer, but the weights of {path} use the \
         {weights_tokenizer} tokenizer; prepare the text with the weights' tokenizer into another data.dataset folder \
         (data.tokenizer = \"gpt2\" for GPT-2)"
    )]
    InitFromTokenizer {
        origin: String,
        path: PathBuf,
        dataset: PathBuf,
        dataset_tokenizer: String,
        weights_tokenizer: String,
    },
    /// A run on `ranks` processes whose `accum` micro-batches per step do not divide
    /// among them.
    #[error(
        "{origin}: train.gradient_accumulation_steps = {accum} does not divide among {ranks} ranks (they share each step's micro-batches); make it a multiple of {ranks}, or start {accum} ranks or a divisor of {accum}"
    )]
    RanksDontDivide { origin: String, accum: usize, ranks: usize },
    /// The error the tests make one rank of a job raise (`QUILL_FAIL_RANK_AT_STEP`).
    #[error("rank {rank}: stopped before step {step} by QUILL_FAIL_RANK_AT_STEP (a test of a failing rank)")]
    FaultInjected { rank: usize, step: u64 },
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error(transparent)]
    Convert(#[from] convert::ConvertError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] model::checkpoint::CheckpointError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}

/// The part of [`TrainError::DatasetMoved`]'s sentence that says why.
fn moved_hint(relative_to: &Option<PathBuf>) -> String {
    match relative_to {
        Some(dir) => format!(
            " (a relative path, read from the current folder {}: run train from the folder the run started in, or make the path absolute)",
            dir.display()
        ),
        None => " (it has moved or was deleted)".to_string(),
    }
}

/// How to fix a [`TrainError::InitFromMismatch`] of `field`.
fn mismatch_fix(field: &str) -> &'static str {
    if field == "block_size" {
        "block_size may only be lowered (the position table is cropped); leave it out to take the weights' value"
    } else {
        "leave it out of [model] to take the weights' value"
    }
}

/// The part of [`TrainError::NonFinite`]'s sentence that names the parameter.
fn culprit(parameter: &Option<String>) -> String {
    match parameter {
        Some(name) => format!("the first parameter with a non-finite gradient is {name}"),
        None => "every gradient is finite".into(),
    }
}
