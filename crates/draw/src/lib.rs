//! Pictures of the essay's experiments, as SVG files in the style of `plot`, each drawn
//! from a corpus or a checkpoint:
//!
//! ```text
//! text or dataset ─▶ letter frequencies (bars) · 2-gram probabilities (heatmap)
//! checkpoint      ─▶ next-token probability by rank (log-log) · attention (layer × head
//!                    heatmaps) · token embeddings and the hidden-state trajectory (PCA) ·
//!                    the architecture, from the config
//! ```
//!
//! `canvas.rs` is the SVG page and its primitives, `charts.rs` the charts with axes,
//! `heatmap.rs` the heatmap grids, `pca.rs` the principal components, `architecture.rs`
//! the diagram; `corpus_pictures.rs` and `model_pictures.rs` turn a corpus or a checkpoint
//! into the numbers those draw. The `draw` binary names one picture per subcommand.

pub mod architecture;
pub mod canvas;
pub mod charts;
pub mod corpus_pictures;
pub mod heatmap;
pub mod model_pictures;
pub mod pca;

/// What stops a picture; each message names the file or the text and the fix.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    /// A bad argument, already one sentence.
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Ngram(#[from] ngram::NgramError),
    #[error(transparent)]
    Sample(#[from] sample::SampleError),
    #[error(transparent)]
    Plot(#[from] plot::PlotError),
}
