//! Charts with axes: a bar chart (letter frequencies), probability by rank on log-log axes
//! (the next-token distribution), and a labelled scatter of 2-D points with optional
//! paths (embeddings and the hidden-state trajectory). Ticks come from `plot::ticks`.

use plot::ticks::{decimals_for, format_fixed, format_short, log_ticks, nice_ticks};
use plot::PALETTE;

use crate::canvas::{Canvas, FRAME, GRID, INK, MUTED};

/// The plot area of a chart, in pixels.
struct Area {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Area {
    fn of(canvas: &Canvas, left: f64, bottom_margin: f64) -> Area {
        Area { left, right: canvas.width - 28.0, top: 56.0, bottom: canvas.height - bottom_margin }
    }

    fn frame(&self, canvas: &mut Canvas) {
        canvas.line((self.left, self.top), (self.left, self.bottom), FRAME, 1.0);
        canvas.line((self.left, self.bottom), (self.right, self.bottom), FRAME, 1.0);
    }

    /// A horizontal grid line and its label at pixel height `py`.
    fn y_tick(&self, canvas: &mut Canvas, py: f64, label: &str) {
        canvas.line((self.left, py), (self.right, py), GRID, 1.0);
        canvas.text(self.left - 8.0, py, 12.0, "end", MUTED, label);
    }

    fn y_title(&self, canvas: &mut Canvas, title: &str) {
        canvas.text_rotated(20.0, (self.top + self.bottom) / 2.0, 13.0, "middle", -90.0, title);
    }
}

/// Vertical bars, one per label, heights `values` (fractions, drawn as percentages).
pub fn bar_chart(title: &str, labels: &[String], values: &[f64], y_title: &str) -> String {
    let width = (120.0 + 22.0 * labels.len() as f64).clamp(480.0, 1400.0);
    let mut canvas = Canvas::new(width, 420.0, title);
    let area = Area::of(&canvas, 70.0, 64.0);
    let max = values.iter().copied().fold(0.0f64, f64::max).max(1e-12) * 100.0;
    let (ticks, step) = nice_ticks(0.0, max * 1.05, 5);
    let top = ticks.last().copied().unwrap_or(max).max(max);
    let py = |v: f64| area.bottom - v / top * (area.bottom - area.top);
    for &t in &ticks {
        area.y_tick(&mut canvas, py(t), &format!("{}%", format_fixed(t, decimals_for(step))));
    }
    let slot = (area.right - area.left) / labels.len().max(1) as f64;
    for (i, (label, &v)) in labels.iter().zip(values).enumerate() {
        let x = area.left + slot * i as f64;
        let y = py(v * 100.0);
        canvas.rect((x + slot * 0.12, y, slot * 0.76, area.bottom - y), PALETTE[0], "none");
        canvas.text(x + slot / 2.0, area.bottom + 14.0, 13.0, "middle", INK, label);
    }
    area.frame(&mut canvas);
    area.y_title(&mut canvas, y_title);
    canvas.text(
        (area.left + area.right) / 2.0,
        area.bottom + 42.0,
        13.0,
        "middle",
        INK,
        "most frequent first",
    );
    canvas.finish()
}

/// Probability by rank on log-log axes: `probs` sorted largest first; the first
/// `labels.len()` points are highlighted and their labels listed in a box.
pub fn rank_plot(title: &str, probs: &[f64], labels: &[String]) -> String {
    let mut canvas = Canvas::new(760.0, 480.0, title);
    let area = Area::of(&canvas, 78.0, 60.0);
    let probs: Vec<f64> = probs.iter().copied().filter(|p| *p > 0.0).collect();
    let n = probs.len().max(2) as f64;
    let lowest = probs.iter().copied().fold(1.0f64, f64::min).max(1e-12);
    let (y0, y1) = ((lowest * 0.6).ln(), (1.0f64).ln());
    let (x0, x1) = (0.0f64, (n * 1.1).ln());
    let px = |rank: f64| area.left + (rank.ln() - x0) / (x1 - x0) * (area.right - area.left);
    let py = |p: f64| area.bottom - (p.ln() - y0) / (y1 - y0) * (area.bottom - area.top);
    for t in log_ticks(y0.exp(), y1.exp()) {
        area.y_tick(&mut canvas, py(t), &format_short(t));
    }
    for t in log_ticks(1.0, n * 1.1) {
        canvas.line((px(t), area.top), (px(t), area.bottom), GRID, 1.0);
        canvas.text(px(t), area.bottom + 16.0, 12.0, "middle", MUTED, &format_short(t));
    }
    area.frame(&mut canvas);
    let points: Vec<(f64, f64)> =
        probs.iter().enumerate().map(|(i, &p)| (px(i as f64 + 1.0), py(p))).collect();
    canvas.polyline(&points, PALETTE[0], 1.6, 0.9);
    // Every point as a dot while they can be told apart; the labelled ones always.
    for (i, &point) in points.iter().enumerate() {
        if i < labels.len() {
            canvas.circle(point, 3.6, PALETTE[1], 1.0);
        } else if points.len() <= 200 {
            canvas.circle(point, 2.0, PALETTE[0], 1.0);
        }
    }
    // The top tokens in a box at the bottom left (below the curve), rank by rank (labels beside the points
    // would collide where the probabilities are close).
    if !labels.is_empty() {
        let longest = labels.iter().map(|l| crate::canvas::text_width(l, 13.0)).fold(0.0, f64::max);
        let (w, h) = (longest.max(150.0) + 52.0, 26.0 + 19.0 * labels.len() as f64);
        let (x, y) = (area.left + 12.0, area.bottom - h - 12.0);
        canvas.boxed((x, y, w, h), "#ffffff", "#d0d0d0");
        canvas.text(x + 10.0, y + 12.0, 11.0, "start", MUTED, "rank  token  probability");
        for (i, label) in labels.iter().enumerate() {
            let row = y + 31.0 + 19.0 * i as f64;
            canvas.circle((x + 14.0, row), 3.6, PALETTE[1], 1.0);
            canvas.text(x + 24.0, row, 13.0, "start", INK, &format!("{}  {label}", i + 1));
        }
    }
    area.y_title(&mut canvas, "probability (log scale)");
    canvas.text(
        (area.left + area.right) / 2.0,
        area.bottom + 42.0,
        13.0,
        "middle",
        INK,
        "rank of the next token (log scale)",
    );
    canvas.finish()
}

/// A point of a scatter: where it is, and its label if it has one.
pub struct Point {
    pub at: (f64, f64),
    pub label: Option<String>,
}

/// A line through some of the points, drawn in one colour with a legend entry.
pub struct Path {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A scatter of `points` (unlabelled ones small and faint), `paths` drawn over them with
/// a legend, on axes titled `axes`.
pub fn scatter(title: &str, points: &[Point], paths: &[Path], axes: (&str, &str)) -> String {
    let mut canvas = Canvas::new(760.0, 620.0, title);
    let area = Area::of(&canvas, 70.0, 60.0);
    let all = || points.iter().map(|p| p.at).chain(paths.iter().flat_map(|p| p.points.iter().copied()));
    let (mut lo, mut hi) = ((f64::INFINITY, f64::INFINITY), (f64::NEG_INFINITY, f64::NEG_INFINITY));
    for (x, y) in all() {
        lo = (lo.0.min(x), lo.1.min(y));
        hi = (hi.0.max(x), hi.1.max(y));
    }
    if lo.0 > hi.0 {
        (lo, hi) = ((-1.0, -1.0), (1.0, 1.0));
    }
    let pad = |a: f64, b: f64| ((b - a) * 0.08).max(1e-6);
    let (xa, xb) = (lo.0 - pad(lo.0, hi.0), hi.0 + pad(lo.0, hi.0));
    let (ya, yb) = (lo.1 - pad(lo.1, hi.1), hi.1 + pad(lo.1, hi.1));
    let px = |x: f64| area.left + (x - xa) / (xb - xa) * (area.right - area.left);
    let py = |y: f64| area.bottom - (y - ya) / (yb - ya) * (area.bottom - area.top);
    let (xt, xs) = nice_ticks(xa, xb, 6);
    let (yt, ys) = nice_ticks(ya, yb, 6);
    for t in yt {
        area.y_tick(&mut canvas, py(t), &format_fixed(t, decimals_for(ys)));
    }
    for t in xt {
        canvas.line((px(t), area.top), (px(t), area.bottom), GRID, 1.0);
        canvas.text(px(t), area.bottom + 16.0, 12.0, "middle", MUTED, &format_fixed(t, decimals_for(xs)));
    }
    area.frame(&mut canvas);
    for point in points.iter().filter(|p| p.label.is_none()) {
        canvas.circle((px(point.at.0), py(point.at.1)), 2.5, "#9a9a9a", 0.6);
    }
    for (i, path) in paths.iter().enumerate() {
        let pixels: Vec<(f64, f64)> = path.points.iter().map(|&(x, y)| (px(x), py(y))).collect();
        let colour = PALETTE[(i + 1) % PALETTE.len()];
        canvas.polyline(&pixels, colour, 1.8, 0.85);
        pixels.iter().for_each(|&p| canvas.circle(p, 3.0, colour, 0.9));
    }
    for point in points.iter().filter(|p| p.label.is_some()) {
        let at = (px(point.at.0), py(point.at.1));
        canvas.circle(at, 3.4, PALETTE[0], 1.0);
        canvas.text(at.0 + 5.0, at.1 - 7.0, 13.0, "start", INK, point.label.as_deref().unwrap_or(""));
    }
    if !paths.is_empty() {
        let (x, y) = (area.right - 150.0, area.top + 10.0);
        canvas.boxed((x, y, 140.0, 8.0 + 18.0 * paths.len() as f64), "#ffffff", "#d0d0d0");
        for (i, path) in paths.iter().enumerate() {
            let row = y + 13.0 + 18.0 * i as f64;
            canvas.line((x + 10.0, row), (x + 34.0, row), PALETTE[(i + 1) % PALETTE.len()], 2.4);
            canvas.text(x + 42.0, row, 12.0, "start", INK, &path.name);
        }
    }
    canvas.text((area.left + area.right) / 2.0, area.bottom + 42.0, 13.0, "middle", INK, axes.0);
    area.y_title(&mut canvas, axes.1);
    canvas.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_has_one_bar_and_label_per_value() {
        let svg = bar_chart("Letters", &["e".into(), "t".into()], &[0.12, 0.09], "share of letters");
        assert_eq!(svg.matches(&format!("fill=\"{}\"", PALETTE[0])).count(), 2);
        assert!(svg.contains(">e</text>") && svg.contains(">t</text>") && svg.contains("Letters"));
    }

    #[test]
    fn rank_plot_labels_the_top_tokens() {
        let svg = rank_plot("Next", &[0.5, 0.3, 0.15, 0.05], &["a".into(), "b".into()]);
        assert!(svg.contains(">1  a</text>") && svg.contains(">2  b</text>"));
        assert!(svg.contains("probability (log scale)"));
    }
}
