//! Heatmaps: a grid of panels, each a matrix of values in [0, max] drawn as coloured
//! cells with its row and column labels: one panel for the 2-gram matrix, one per layer
//! and head for attention.

use crate::canvas::{heat_colour, Canvas, INK, MUTED};

/// One matrix to draw: `values` is rows × cols, row-major.
pub struct Panel {
    pub title: String,
    pub values: Vec<f64>,
    pub rows: Vec<String>,
    pub cols: Vec<String>,
}

/// How to lay out and label a heatmap figure.
pub struct Layout {
    /// Panels per row of the grid.
    pub columns: usize,
    /// Pixels per cell.
    pub cell: f64,
    /// Axis titles under and beside each panel.
    pub x_title: String,
    pub y_title: String,
    /// Values map to colours over [0, max].
    pub max: f64,
    /// The colour bar's label.
    pub scale_title: String,
}

/// The panels in a grid of `layout.columns`, with one shared colour bar.
pub fn heatmap_grid(title: &str, panels: &[Panel], layout: &Layout) -> String {
    let rows = panels.first().map_or(1, |p| p.rows.len()).max(1);
    let cols = panels.first().map_or(1, |p| p.cols.len()).max(1);
    let label_size = (layout.cell * 0.75).clamp(7.0, 13.0);
    let show_labels = layout.cell >= 8.0;
    let (panel_w, panel_h) = (cols as f64 * layout.cell, rows as f64 * layout.cell);
    let (gap_x, gap_top, gap_bottom) = (label_size * 2.5 + 34.0, 30.0, label_size + 40.0);
    let grid_cols = layout.columns.clamp(1, panels.len().max(1));
    let grid_rows = panels.len().div_ceil(grid_cols).max(1);
    let width = 20.0 + grid_cols as f64 * (panel_w + gap_x) + 130.0;
    let height = 50.0 + grid_rows as f64 * (panel_h + gap_top + gap_bottom);
    let mut canvas = Canvas::new(width, height, title);
    let max = if layout.max > 0.0 { layout.max } else { 1.0 };
    for (index, panel) in panels.iter().enumerate() {
        let x0 = 20.0 + gap_x + (index % grid_cols) as f64 * (panel_w + gap_x);
        let y0 = 50.0 + gap_top + (index / grid_cols) as f64 * (panel_h + gap_top + gap_bottom);
        if !panel.title.is_empty() {
            canvas.text(x0, y0 - 14.0, 13.0, "start", INK, &panel.title);
        }
        for r in 0..rows {
            for c in 0..cols {
                let v = panel.values.get(r * cols + c).copied().unwrap_or(0.0);
                if v <= 0.0 {
                    continue; // white on white: leaving it out keeps the file small
                }
                let cell = (
                    x0 + c as f64 * layout.cell,
                    y0 + r as f64 * layout.cell,
                    layout.cell + 0.3,
                    layout.cell + 0.3,
                );
                canvas.rect(cell, &heat_colour(v / max), "none");
            }
        }
        canvas.rect((x0, y0, panel_w, panel_h), "none", "#999999");
        if show_labels {
            for (r, label) in panel.rows.iter().enumerate() {
                canvas.text(x0 - 4.0, y0 + (r as f64 + 0.5) * layout.cell, label_size, "end", INK, label);
            }
            for (c, label) in panel.cols.iter().enumerate() {
                canvas.text(
                    x0 + (c as f64 + 0.5) * layout.cell,
                    y0 + panel_h + 8.0,
                    label_size,
                    "middle",
                    INK,
                    label,
                );
            }
        }
        canvas.text(
            x0 + panel_w / 2.0,
            y0 + panel_h + label_size + 20.0,
            12.0,
            "middle",
            MUTED,
            &layout.x_title,
        );
        canvas.text_rotated(
            x0 - label_size * 1.6 - 18.0,
            y0 + panel_h / 2.0,
            12.0,
            "middle",
            -90.0,
            &layout.y_title,
        );
    }
    let bar_h = (panel_h * 0.8).clamp(80.0, 260.0);
    canvas.colour_bar((width - 120.0, 50.0 + gap_top, bar_h), max, &|v| plot::ticks::format_short(v));
    canvas.text(width - 120.0, 50.0 + gap_top + bar_h + 18.0, 11.0, "start", MUTED, &layout.scale_title);
    canvas.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_and_label_is_drawn() {
        let panel = Panel {
            title: "layer 0 head 0".into(),
            values: vec![1.0, 0.0, 0.5, 0.5],
            rows: vec!["a".into(), "b".into()],
            cols: vec!["a".into(), "b".into()],
        };
        let layout = Layout {
            columns: 1,
            cell: 20.0,
            x_title: "key".into(),
            y_title: "query".into(),
            max: 1.0,
            scale_title: "weight".into(),
        };
        let svg = heatmap_grid("Attention", &[panel], &layout);
        assert!(svg.contains("#08306b"), "the weight 1 is darkest");
        assert_eq!(svg.matches(">a</text>").count(), 2);
        assert!(svg.contains("layer 0 head 0") && svg.contains(">query</text>"));
    }
}
