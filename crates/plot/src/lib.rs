//! Watching loss curves: the `metrics.jsonl` row that the trainer writes and a tolerant
//! reader for it, a compact terminal chart, SVG plots of one or several runs, and
//! TensorBoard event files.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{0}")]
    Message(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// One row of `runs/NAME/metrics.jsonl`: written at every log interval; evaluation rows
/// also carry the val_* and eval_train_loss fields.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    pub step: u64,
    /// Tokens trained on so far.
    pub tokens: u64,
    /// Loss of this step's batch (mean over micro-batches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_loss: Option<f64>,
    /// Mean loss over eval_iters batches of the training split (evaluation rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_train_loss: Option<f64>,
    /// Mean loss over eval_iters batches of the validation split (evaluation rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_bpb: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_ppl: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tok_per_s: Option<f64>,
    /// Seconds since the run started (continuing across resumes).
    pub elapsed_s: f64,
}

/// Reads a metrics file, tolerating a half-written last line (a run killed mid-write or
/// still in progress). Other malformed lines are an error naming the file and line.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>, PlotError> {
    todo!("{path:?}")
}

/// One labelled line of (x, y) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// A compact chart of the series in Unicode braille, `width` × `height` characters plus
/// axis labels and a legend, for the console.
pub fn terminal_chart(series: &[Series], width: usize, height: usize) -> String {
    todo!("{} {width} {height}", series.len())
}

/// Re-draws `run_dir/loss.svg` from `run_dir/metrics.jsonl` (written atomically).
pub fn refresh_loss_svg(run_dir: &Path) -> Result<(), PlotError> {
    todo!("{run_dir:?}")
}

/// TensorBoard event files (`events.out.tfevents.*`) beside metrics.jsonl, so
/// `tensorboard --logdir runs/` shows Quill's runs.
pub mod tensorboard {
    use std::path::Path;

    use crate::PlotError;

    /// Appends scalar summaries to one event file in a run folder.
    pub struct EventWriter {}

    impl EventWriter {
        /// Creates a new event file in `dir` (a new file per process, as TensorBoard expects).
        pub fn create(dir: &Path) -> Result<EventWriter, PlotError> {
            todo!("{dir:?}")
        }

        pub fn add_scalar(&mut self, tag: &str, step: u64, value: f64) -> Result<(), PlotError> {
            todo!("{tag} {step} {value}")
        }

        pub fn flush(&mut self) -> Result<(), PlotError> {
            todo!()
        }
    }
}
