//! The `metrics.jsonl` row the trainer writes, a reader that tolerates a run in progress or
//! killed mid-write, and the step that turns rows into the loss series that charts draw.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{PlotError, Series};

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
    /// Milliseconds of this step spent summing the gradient across ranks (and sharing
    /// the weights, with a sharded optimizer); only in runs on several ranks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_ms: Option<f64>,
    /// Seconds since the run started (continuing across resumes).
    pub elapsed_s: f64,
}

/// Reads a metrics file, tolerating a half-written last line (a run killed mid-write or
/// still in progress). Other malformed lines are an error naming the file and line.
///
/// Blank lines are skipped and unknown fields ignored, so newer trainers stay readable.
/// The last line is "half-written" when it fails to parse and either has no newline after
/// it or stops mid-value; a bad line followed by good ones is never ignored.
pub fn read_metrics(path: &Path) -> Result<Vec<MetricRow>, PlotError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| PlotError::Io { path: path.to_owned(), error: source })?;
    let lines: Vec<&str> = text.lines().collect();
    let last_nonblank = lines.iter().rposition(|line| !line.trim().is_empty());
    let mut rows = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<MetricRow>(line) {
            Ok(row) => rows.push(row),
            Err(err) => {
                let is_last = Some(index) == last_nonblank;
                if is_last && (!text.ends_with('\n') || err.is_eof()) {
                    break;
                }
                return Err(PlotError::Message(format!(
                    "{}:{}: not a metrics row ({err}); found `{}`. Each line must be one JSON \
                     object with step, tokens and elapsed_s; delete or fix this line",
                    path.display(),
                    index + 1,
                    excerpt(line),
                )));
            }
        }
    }
    Ok(rows)
}

/// The first 60 characters of a line, for error messages.
fn excerpt(line: &str) -> String {
    let mut out: String = line.chars().take(60).collect();
    if line.chars().count() > 60 {
        out.push('…');
    }
    out
}

/// Rows as one clean history: rows of the same step are merged (a log row and an
/// evaluation row written separately), and when the step goes backwards (a run resumed
/// from an earlier checkpoint re-logs steps) the rows it replaces are dropped.
pub fn merge_history(rows: &[MetricRow]) -> Vec<MetricRow> {
    let mut out: Vec<MetricRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match out.last_mut() {
            Some(last) if last.step == row.step => merge_into(last, row),
            Some(last) if last.step > row.step => {
                out.retain(|kept| kept.step < row.step);
                out.push(row.clone());
            }
            _ => out.push(row.clone()),
        }
    }
    out
}

/// Fills `into` with the fields `from` carries; the later row wins where both do.
fn merge_into(into: &mut MetricRow, from: &MetricRow) {
    fn take(into: &mut Option<f64>, from: Option<f64>) {
        if from.is_some() {
            *into = from;
        }
    }
    into.tokens = into.tokens.max(from.tokens);
    into.elapsed_s = into.elapsed_s.max(from.elapsed_s);
    take(&mut into.train_loss, from.train_loss);
    take(&mut into.eval_train_loss, from.eval_train_loss);
    take(&mut into.val_loss, from.val_loss);
    take(&mut into.val_bpb, from.val_bpb);
    take(&mut into.val_ppl, from.val_ppl);
    take(&mut into.lr, from.lr);
    take(&mut into.grad_norm, from.grad_norm);
    take(&mut into.tok_per_s, from.tok_per_s);
}

/// What the horizontal axis measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XAxis {
    /// Optimizer steps.
    #[default]
    Step,
    /// Tokens trained on.
    Tokens,
    /// Wall-clock seconds since the run started (`elapsed_s`).
    Time,
}

impl XAxis {
    /// The row's position on this axis.
    pub fn value(self, row: &MetricRow) -> f64 {
        match self {
            XAxis::Step => row.step as f64,
            XAxis::Tokens => row.tokens as f64,
            XAxis::Time => row.elapsed_s,
        }
    }

    /// The axis name as the `--x` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Tokens => "tokens",
            XAxis::Time => "time",
        }
    }
}

impl FromStr for XAxis {
    type Err = String;

    fn from_str(text: &str) -> Result<XAxis, String> {
        match text {
            "step" | "steps" => Ok(XAxis::Step),
            "tokens" | "token" => Ok(XAxis::Tokens),
            "time" | "elapsed" | "elapsed_s" => Ok(XAxis::Time),
            other => Err(format!("unknown x axis `{other}`; expected step, tokens or time")),
        }
    }
}

/// The train-loss and val-loss series of a run (labels "train loss" and "val loss"), over
/// the merged history; ready for [`crate::terminal_chart`].
pub fn loss_series(rows: &[MetricRow], x: XAxis) -> Vec<Series> {
    let history = merge_history(rows);
    let pick = |field: fn(&MetricRow) -> Option<f64>| -> Vec<(f64, f64)> {
        history.iter().filter_map(|row| field(row).map(|y| (x.value(row), y))).collect()
    };
    vec![
        Series { label: "train loss".to_owned(), points: pick(|row| row.train_loss) },
        Series { label: "val loss".to_owned(), points: pick(|row| row.val_loss) },
    ]
}

/// Smoothing of a noisy curve without lag: each value becomes the mean of the `window`
/// values centred on it. Near the start the window shrinks to stay centred, so the first
/// value is kept as it is and a steep early fall is not flattened; near the end it loses
/// only its right half, so the line ends on a mean of the latest values rather than on the
/// last noisy one. Non-finite values are kept as they are and left out of the means.
pub fn smooth(values: &[f64], window: f64) -> Vec<f64> {
    let half = (window.max(1.0) / 2.0).floor() as usize;
    // Prefix sums of the finite values and of how many there are.
    let mut sums = vec![0.0; values.len() + 1];
    let mut counts = vec![0usize; values.len() + 1];
    for (i, v) in values.iter().enumerate() {
        let finite = v.is_finite();
        sums[i + 1] = sums[i] + if finite { *v } else { 0.0 };
        counts[i + 1] = counts[i] + usize::from(finite);
    }
    let n = values.len();
    (0..n)
        .map(|i| {
            if !values[i].is_finite() {
                return values[i];
            }
            let left = half.min(i);
            let right = left.min(n - 1 - i);
            let (lo, hi) = (i - left, i + right + 1);
            (sums[hi] - sums[lo]) / (counts[hi] - counts[lo]) as f64
        })
        .collect()
}

/// A run to plot: its name (the run folder's name) and its metric rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub name: String,
    pub rows: Vec<MetricRow>,
}

impl Run {
    /// Loads `path/metrics.jsonl` (or `path` itself when it is a file). The run is named
    /// after its folder.
    pub fn load(path: &Path) -> Result<Run, PlotError> {
        let (dir, file): (PathBuf, PathBuf) = if path.is_file() {
            (path.parent().map(Path::to_owned).unwrap_or_default(), path.to_owned())
        } else if path.is_dir() {
            (path.to_owned(), path.join("metrics.jsonl"))
        } else {
            return Err(PlotError::Message(format!(
                "{}: no such run folder; pass a folder that `train` wrote (runs/NAME), \
                 holding metrics.jsonl",
                path.display()
            )));
        };
        if !file.is_file() {
            return Err(PlotError::Message(format!(
                "{}: not found; the run has not logged its first step yet, or {} is not a \
                 run folder",
                file.display(),
                dir.display()
            )));
        }
        let rows = read_metrics(&file)?;
        Ok(Run { name: run_name(&dir), rows })
    }
}

/// The last component of a run folder's path ("runs/small" → "small").
fn run_name(dir: &Path) -> String {
    let absolute = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    let resolved = absolute.canonicalize().unwrap_or_else(|_| absolute.to_owned());
    resolved
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| resolved.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: u64, train: Option<f64>, val: Option<f64>) -> MetricRow {
        MetricRow { step, tokens: step * 100, train_loss: train, val_loss: val, ..MetricRow::default() }
    }

    #[test]
    fn merge_history_joins_same_step_and_drops_replaced_steps() {
        let rows = vec![
            row(0, Some(4.0), None),
            row(0, None, Some(4.1)),
            row(10, Some(3.0), None),
            row(20, Some(2.9), None),
            row(10, Some(3.1), None),
            row(20, Some(2.8), None),
        ];
        let history = merge_history(&rows);
        let steps: Vec<u64> = history.iter().map(|r| r.step).collect();
        assert_eq!(steps, vec![0, 10, 20]);
        assert_eq!(history[0].train_loss, Some(4.0));
        assert_eq!(history[0].val_loss, Some(4.1));
        assert_eq!(history[1].train_loss, Some(3.1));
        assert_eq!(history[2].train_loss, Some(2.8));
    }

    #[test]
    fn smooth_keeps_constants_and_skips_nan() {
        let out = smooth(&[2.0, 2.0, f64::NAN, 2.0], 5.0);
        assert_eq!(out[0], 2.0);
        assert!(out[2].is_nan());
        assert_eq!(out[3], 2.0);
        // The start stays put, the middle is the centred mean, the end a trailing mean.
        assert_eq!(smooth(&[4.0, 3.0, 2.0, 6.0, 1.0], 3.0), vec![4.0, 3.0, 11.0 / 3.0, 3.0, 3.5]);
        let noisy: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 1.0 } else { 3.0 }).collect();
        let smoothed = smooth(&noisy, 20.0);
        assert!(smoothed[50] > 1.8 && smoothed[50] < 2.2, "{}", smoothed[50]);
    }

    #[test]
    fn x_axis_parses_its_names() {
        assert_eq!("tokens".parse::<XAxis>(), Ok(XAxis::Tokens));
        assert_eq!("time".parse::<XAxis>(), Ok(XAxis::Time));
        assert!("epoch".parse::<XAxis>().is_err());
    }
}
