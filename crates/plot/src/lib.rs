//! Watching loss curves: the `metrics.jsonl` row that the trainer writes and a tolerant
//! reader for it, a compact terminal chart, SVG plots of one or several runs, and
//! TensorBoard event files.
//!
//! The trainer uses [`read_metrics`] or its own rows, [`loss_series`] + [`terminal_chart`]
//! at each evaluation, [`refresh_loss_svg`] to keep `runs/NAME/loss.svg` current, and
//! [`tensorboard::EventWriter`] for TensorBoard. The `plot` binary draws [`render_svg`].

use std::path::PathBuf;

mod metrics;
mod svg;
pub mod tensorboard;
mod term;
pub mod ticks;

pub use metrics::{loss_series, merge_history, read_metrics, smooth, MetricRow, Run, XAxis};
pub use svg::{
    check_replaceable, escape, refresh_loss_svg, render_svg, write_atomic, SvgOptions, FONT, PALETTE,
};
pub use term::{color_enabled, terminal_chart, terminal_chart_with, ChartOptions};

/// What can go wrong reading metrics or writing pictures and event files. Messages name
/// the file and, for a bad metrics line, the line number.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{0}")]
    Message(String),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
}

/// One labelled line of (x, y) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}
