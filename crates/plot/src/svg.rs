//! SVG loss plots: one or several runs overlaid, one colour per run. Train loss is drawn
//! as a thin translucent raw line under a smoothed line, val loss bold with markers; axes
//! carry "nice" ticks (1, 2, 5 × 10^k) and titles, x is step, tokens or time, y linear or
//! log. Also `refresh_loss_svg`, which the trainer calls at each evaluation.

use std::fmt::Write as _;
use std::path::Path;

use crate::metrics::{merge_history, smooth, Run, XAxis};
use crate::ticks::{decimals_for, format_count, format_fixed, format_short, log_ticks, nice_ticks};
use crate::PlotError;

/// One colour per run (Tableau 10), in order.
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf",
];
/// The font-family list of every picture.
pub const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
/// Space around the plot area for the title, tick labels and axis titles, in pixels.
const MARGIN_LEFT: f64 = 74.0;
const MARGIN_RIGHT: f64 = 28.0;
const MARGIN_TOP: f64 = 52.0;
const MARGIN_BOTTOM: f64 = 60.0;
/// Train curves with fewer points than this are drawn as they are, without smoothing.
const SMOOTH_MIN_POINTS: usize = 30;
/// Val curves with more points than this are drawn without markers.
const MAX_MARKERS: usize = 80;

/// How to draw an SVG plot.
#[derive(Clone, Debug, PartialEq)]
pub struct SvgOptions {
    /// Picture size in pixels.
    pub width: u32,
    pub height: u32,
    /// What the horizontal axis measures.
    pub x: XAxis,
    /// A logarithmic loss axis.
    pub log_y: bool,
    /// The title; `None` names the runs.
    pub title: Option<String>,
    /// When set, a browser showing the file reloads it every this many seconds (a small
    /// script that image viewers ignore), so a tab on a live run's loss.svg keeps up.
    pub auto_reload_s: Option<u32>,
}

impl Default for SvgOptions {
    fn default() -> SvgOptions {
        SvgOptions { width: 860, height: 520, x: XAxis::Step, log_y: false, title: None, auto_reload_s: None }
    }
}

/// Re-draws `run_dir/loss.svg` from `run_dir/metrics.jsonl` (written atomically).
///
/// The picture uses the default [`SvgOptions`] and reloads itself in a browser every 15 s.
/// A metrics file with no rows yet gives an empty frame, not an error.
pub fn refresh_loss_svg(run_dir: &Path) -> Result<(), PlotError> {
    let run = Run::load(run_dir)?;
    let options = SvgOptions { auto_reload_s: Some(15), ..SvgOptions::default() };
    write_atomic(&run_dir.join("loss.svg"), render_svg(&[run], &options).as_bytes())
}

/// Writes `bytes` to `path` atomically (`fsio`'s temporary file, sync, rename), so a reader
/// never sees a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PlotError> {
    fsio::write_atomic(path, bytes).map_err(|source| PlotError::Io { path: path.to_owned(), error: source })
}

/// Refuses an output path that names anything but a new file or an SVG image (a picture
/// written earlier): a checkpoint, a metrics file, a text or any other file is never
/// replaced by a picture. `plot` and `draw` ask this before writing.
pub fn check_replaceable(out: &Path) -> Result<(), PlotError> {
    let Ok(meta) = std::fs::metadata(out) else {
        return Ok(());
    };
    let mut head = Vec::new();
    if meta.is_file() {
        use std::io::Read;
        let io = |error| PlotError::Io { path: out.to_owned(), error };
        let file = std::fs::File::open(out).map_err(io)?;
        file.take(1024).read_to_end(&mut head).map_err(io)?;
    }
    if !String::from_utf8_lossy(&head).contains("<svg") {
        return Err(PlotError::Message(format!(
            "{}: exists and is not an SVG image, so --out will not replace it; give a new file name",
            out.display()
        )));
    }
    Ok(())
}

/// One curve of one run, in data coordinates (x already in the axis unit).
struct Curve {
    run: usize,
    kind: CurveKind,
    points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CurveKind {
    /// Raw train loss, thin and translucent (under its smoothed line).
    TrainRaw,
    /// Train loss as the main line: smoothed, or raw when there are few points.
    Train,
    Val,
}

/// An SVG picture of the runs' train and val loss. Each drawn series is one `<path>`.
pub fn render_svg(runs: &[Run], options: &SvgOptions) -> String {
    let (x_divisor, x_title) = x_unit(runs, options.x);
    let curves = build_curves(runs, options.x, x_divisor, options.log_y);
    let frame = Frame::new(&curves, options);

    let mut svg = String::new();
    let (w, h) = (options.width, options.height);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}">"#
    );
    if let Some(seconds) = options.auto_reload_s {
        let _ = writeln!(
            svg,
            "<script type=\"text/javascript\"><![CDATA[setTimeout(function () {{ location.reload(); }}, {});]]></script>",
            u64::from(seconds) * 1000
        );
    }
    let _ = writeln!(svg, r##"<rect width="{w}" height="{h}" fill="#ffffff"/>"##);
    let title = options.title.clone().unwrap_or_else(|| default_title(runs));
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="30" font-size="17" font-weight="600" fill="#222222">{}</text>"##,
        frame.left,
        escape(&title)
    );

    frame.draw_axes(&mut svg, options, x_divisor, &x_title);
    if curves.iter().all(|c| c.points.is_empty()) {
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="14" fill="#888888" text-anchor="middle">no loss values yet</text>"##,
            (frame.left + frame.right) / 2.0,
            (frame.top + frame.bottom) / 2.0
        );
    }

    let _ = writeln!(
        svg,
        r#"<clipPath id="plot-area"><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/></clipPath>"#,
        frame.left - 6.0,
        frame.top - 6.0,
        frame.right - frame.left + 12.0,
        frame.bottom - frame.top + 12.0
    );
    let _ = writeln!(
        svg,
        r#"<g clip-path="url(#plot-area)" fill="none" stroke-linejoin="round" stroke-linecap="round">"#
    );
    for curve in &curves {
        frame.draw_curve(&mut svg, curve);
    }
    let _ = writeln!(svg, "</g>");
    draw_legend(&mut svg, runs, &curves, &frame);
    svg.push_str("</svg>\n");
    svg
}

/// The x axis divisor (seconds → minutes or hours) and title.
fn x_unit(runs: &[Run], x: XAxis) -> (f64, String) {
    match x {
        XAxis::Step => (1.0, "step".to_owned()),
        XAxis::Tokens => (1.0, "tokens".to_owned()),
        XAxis::Time => {
            let longest = runs.iter().flat_map(|r| r.rows.iter()).map(|r| r.elapsed_s).fold(0.0, f64::max);
            if longest < 180.0 {
                (1.0, "time (s)".to_owned())
            } else if longest < 3.0 * 3600.0 {
                (60.0, "time (min)".to_owned())
            } else {
                (3600.0, "time (h)".to_owned())
            }
        }
    }
}

/// The curves to draw, run by run: raw and smoothed train loss, then val loss.
fn build_curves(runs: &[Run], x: XAxis, x_divisor: f64, log_y: bool) -> Vec<Curve> {
    let usable = |y: f64| y.is_finite() && (!log_y || y > 0.0);
    let mut curves = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let history = merge_history(&run.rows);
        let train: Vec<(f64, f64)> = history
            .iter()
            .filter_map(|r| r.train_loss.filter(|y| usable(*y)).map(|y| (x.value(r) / x_divisor, y)))
            .collect();
        let val: Vec<(f64, f64)> = history
            .iter()
            .filter_map(|r| r.val_loss.filter(|y| usable(*y)).map(|y| (x.value(r) / x_divisor, y)))
            .collect();
        if train.len() >= SMOOTH_MIN_POINTS {
            let ys: Vec<f64> = train.iter().map(|p| if log_y { p.1.ln() } else { p.1 }).collect();
            let smoothed = smooth(&ys, smoothing_window(train.len()));
            let points =
                train.iter().zip(smoothed).map(|(p, s)| (p.0, if log_y { s.exp() } else { s })).collect();
            curves.push(Curve { run: index, kind: CurveKind::TrainRaw, points: train });
            curves.push(Curve { run: index, kind: CurveKind::Train, points });
        } else if !train.is_empty() {
            curves.push(Curve { run: index, kind: CurveKind::Train, points: train });
        }
        if !val.is_empty() {
            curves.push(Curve { run: index, kind: CurveKind::Val, points: val });
        }
    }
    curves
}

/// The smoothing window, in points, for a train curve of `n` points: n / 10 for short
/// runs, a dozen points for medium ones, growing to n / 200 (a few pixels' worth) for long
/// ones, so the line is smooth without flattening the fast early fall.
fn smoothing_window(n: usize) -> f64 {
    let n = n as f64;
    (n / 200.0).max((n / 10.0).min(12.0))
}

fn default_title(runs: &[Run]) -> String {
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    match names.len() {
        0 => "Loss".to_owned(),
        1..=3 => format!("Loss: {}", names.join(" vs ")),
        n => format!("Loss: {} runs", n),
    }
}

/// The plot area in pixels and the data range it shows.
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    x_range: (f64, f64),
    /// The y range, in ln(y) when the axis is logarithmic.
    y_range: (f64, f64),
    log_y: bool,
}

impl Frame {
    fn new(curves: &[Curve], options: &SvgOptions) -> Frame {
        let points = || curves.iter().flat_map(|c| c.points.iter());
        let (mut x0, mut x1) =
            points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
        let to_axis = |y: f64| if options.log_y { y.ln() } else { y };
        let (mut y0, mut y1) = points().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(to_axis(p.1)), hi.max(to_axis(p.1)))
        });
        if x0 > x1 {
            (x0, x1) = (0.0, 1.0);
        } else if x0 > 0.0 && x0 <= 0.05 * (x1 - x0) {
            // Runs logged from step 1 (or from a few seconds in) read better from 0.
            x0 = 0.0;
        } else if x0 == x1 {
            (x0, x1) = (x0 - 1.0, x1 + 1.0);
        }
        if y0 > y1 {
            (y0, y1) = if options.log_y { (0.0, 1.0f64.ln() + 2.0) } else { (0.0, 5.0) };
        } else if y0 == y1 {
            let pad = if options.log_y { 0.1 } else { (y0.abs() * 0.1).max(0.1) };
            (y0, y1) = (y0 - pad, y1 + pad);
        } else {
            let pad = (y1 - y0) * 0.05;
            (y0, y1) = (y0 - pad, y1 + pad);
        }
        Frame {
            left: MARGIN_LEFT,
            right: f64::from(options.width) - MARGIN_RIGHT,
            top: MARGIN_TOP,
            bottom: f64::from(options.height) - MARGIN_BOTTOM,
            x_range: (x0, x1),
            y_range: (y0, y1),
            log_y: options.log_y,
        }
    }

    fn px(&self, x: f64) -> f64 {
        self.left + (x - self.x_range.0) / (self.x_range.1 - self.x_range.0) * (self.right - self.left)
    }

    fn py(&self, y: f64) -> f64 {
        let y = if self.log_y { y.ln() } else { y };
        self.bottom - (y - self.y_range.0) / (self.y_range.1 - self.y_range.0) * (self.bottom - self.top)
    }

    /// Grid lines, axis lines, tick labels and axis titles.
    fn draw_axes(&self, svg: &mut String, options: &SvgOptions, x_divisor: f64, x_title: &str) {
        let target_x = ((self.right - self.left) / 110.0).round().max(2.0) as usize;
        let (x_ticks, x_step) = nice_ticks(self.x_range.0, self.x_range.1, target_x);
        let x_scale = self.x_range.1.abs().max(self.x_range.0.abs());
        let x_label = |x: f64| match options.x {
            XAxis::Time => format_fixed(x, decimals_for(x_step)),
            XAxis::Step | XAxis::Tokens => format_count(x, x_scale * x_divisor, x_step),
        };
        let y_ticks: Vec<(f64, String)> = if self.log_y {
            log_ticks(self.y_range.0.exp(), self.y_range.1.exp())
                .into_iter()
                .map(|y| (y, format_short(y)))
                .collect()
        } else {
            let target_y = ((self.bottom - self.top) / 70.0).round().max(2.0) as usize;
            let (ticks, step) = nice_ticks(self.y_range.0, self.y_range.1, target_y);
            ticks.into_iter().map(|y| (y, format_fixed(y, decimals_for(step)))).collect()
        };

        let _ = writeln!(svg, r##"<g stroke="#e8e8e8" stroke-width="1">"##);
        for (y, _) in &y_ticks {
            let py = self.py(*y);
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{py:.1}" y2="{py:.1}"/>"#,
                self.left, self.right
            );
        }
        for x in &x_ticks {
            let px = self.px(*x);
            let _ = writeln!(
                svg,
                r#"<line x1="{px:.1}" x2="{px:.1}" y1="{:.1}" y2="{:.1}"/>"#,
                self.top, self.bottom
            );
        }
        let _ = writeln!(svg, "</g>");
        let _ = writeln!(
            svg,
            r##"<polyline points="{l:.1},{t:.1} {l:.1},{b:.1} {r:.1},{b:.1}" fill="none" stroke="#666666" stroke-width="1" class="axis"/>"##,
            l = self.left,
            t = self.top,
            b = self.bottom,
            r = self.right
        );

        let _ = writeln!(svg, r##"<g font-size="12" fill="#555555">"##);
        for (y, label) in &y_ticks {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" dy="0.32em" text-anchor="end">{label}</text>"#,
                self.left - 8.0,
                self.py(*y)
            );
        }
        for x in &x_ticks {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                self.px(*x),
                self.bottom + 20.0,
                x_label(*x)
            );
        }
        let _ = writeln!(svg, "</g>");

        let y_title = if self.log_y { "loss (log scale)" } else { "loss" };
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="13" fill="#333333" text-anchor="middle" class="axis-title">{}</text>"##,
            (self.left + self.right) / 2.0,
            self.bottom + 44.0,
            escape(x_title)
        );
        let (cx, cy) = (20.0, (self.top + self.bottom) / 2.0);
        let _ = writeln!(
            svg,
            r##"<text x="{cx:.1}" y="{cy:.1}" font-size="13" fill="#333333" text-anchor="middle" transform="rotate(-90 {cx:.1} {cy:.1})" class="axis-title">{y_title}</text>"##
        );
    }

    /// One `<path>` for the curve (plus circle markers for val loss).
    fn draw_curve(&self, svg: &mut String, curve: &Curve) {
        let color = PALETTE[curve.run % PALETTE.len()];
        let pixels: Vec<(f64, f64)> = curve.points.iter().map(|&(x, y)| (self.px(x), self.py(y))).collect();
        let pixels = decimate(&pixels);
        let mut d = String::new();
        for (i, (x, y)) in pixels.iter().enumerate() {
            let _ = write!(d, "{}{x:.1} {y:.1}", if i == 0 { 'M' } else { 'L' });
        }
        let style = match curve.kind {
            CurveKind::TrainRaw => r#"stroke-width="1" stroke-opacity="0.28" class="train-raw""#,
            CurveKind::Train => r#"stroke-width="1.7" class="train""#,
            CurveKind::Val => r#"stroke-width="2.6" class="val""#,
        };
        let _ = writeln!(svg, r#"<path d="{d}" stroke="{color}" {style}/>"#);
        if curve.kind == CurveKind::Val && curve.points.len() <= MAX_MARKERS {
            let _ = writeln!(svg, r##"<g fill="{color}" stroke="#ffffff" stroke-width="1.2">"##);
            for (x, y) in &pixels {
                let _ = writeln!(svg, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.6"/>"#);
            }
            let _ = writeln!(svg, "</g>");
        }
    }
}

/// Thins a long pixel path to what can be seen: within each pixel column it keeps the
/// first, lowest, highest and last point, in order.
fn decimate(pixels: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if pixels.len() < 2000 {
        return pixels.to_vec();
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start < pixels.len() {
        let column = pixels[start].0.floor();
        let mut end = start;
        while end < pixels.len() && pixels[end].0.floor() == column {
            end += 1;
        }
        let bucket = &pixels[start..end];
        let by_y = |a: &&(f64, f64), b: &&(f64, f64)| a.1.total_cmp(&b.1);
        let low = bucket.iter().enumerate().min_by(|a, b| by_y(&a.1, &b.1)).map(|(i, _)| i).unwrap_or(0);
        let high = bucket.iter().enumerate().max_by(|a, b| by_y(&a.1, &b.1)).map(|(i, _)| i).unwrap_or(0);
        let mut keep = vec![0, low, high, bucket.len() - 1];
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|i| bucket[i]));
        start = end.max(start + 1);
    }
    out
}

/// A legend entry: a line sample in a run's colour and its text.
struct Entry {
    run: usize,
    kind: CurveKind,
    text: String,
}

/// The legend box, in whichever top-right or bottom-left corner the curves leave free.
fn draw_legend(svg: &mut String, runs: &[Run], curves: &[Curve], frame: &Frame) {
    let mut entries = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let prefix = if runs.len() == 1 { String::new() } else { format!("{}: ", run.name) };
        let mine = |kind: CurveKind| curves.iter().find(|c| c.run == index && c.kind == kind);
        if let Some(train) = mine(CurveKind::Train) {
            let latest = match mine(CurveKind::TrainRaw) {
                Some(raw) => {
                    // The line ends on the last raw value; the legend gives a steadier mean.
                    let k = (smoothing_window(raw.points.len()).round() as usize).clamp(1, raw.points.len());
                    let mean = raw.points[raw.points.len() - k..].iter().map(|p| p.1).sum::<f64>() / k as f64;
                    format!("mean of last {k}: {}", format_short(mean))
                }
                None => {
                    format!("latest {}", train.points.last().map(|p| format_short(p.1)).unwrap_or_default())
                }
            };
            entries.push(Entry {
                run: index,
                kind: CurveKind::Train,
                text: format!("{prefix}train loss ({latest})"),
            });
        }
        if let Some(val) = mine(CurveKind::Val) {
            let best = val.points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            entries.push(Entry {
                run: index,
                kind: CurveKind::Val,
                text: format!("{prefix}val loss (best {})", format_short(best)),
            });
        }
    }
    if entries.is_empty() {
        return;
    }
    let longest = entries.iter().map(|e| e.text.chars().count()).max().unwrap_or(0) as f64;
    let (line_height, sample) = (20.0, 28.0);
    let box_w = 12.0 + sample + 8.0 + longest * 6.6 + 12.0;
    let box_h = 10.0 + line_height * entries.len() as f64;
    let inset = 12.0;
    let corners = [
        (frame.right - inset - box_w, frame.top + inset),
        (frame.left + inset, frame.bottom - inset - box_h),
        (frame.right - inset - box_w, frame.bottom - inset - box_h),
    ];
    let covered = |(bx, by): (f64, f64)| {
        curves
            .iter()
            .flat_map(|c| c.points.iter())
            .filter(|&&(x, y)| {
                let (px, py) = (frame.px(x), frame.py(y));
                px >= bx && px <= bx + box_w && py >= by && py <= by + box_h
            })
            .count()
    };
    let (bx, by) = corners.into_iter().min_by_key(|c| covered(*c)).unwrap_or(corners[0]);

    let _ = writeln!(svg, r#"<g class="legend" font-size="12">"#);
    let _ = writeln!(
        svg,
        r##"<rect x="{bx:.1}" y="{by:.1}" width="{box_w:.1}" height="{box_h:.1}" rx="4" fill="#ffffff" fill-opacity="0.92" stroke="#d0d0d0"/>"##
    );
    for (i, entry) in entries.iter().enumerate() {
        let color = PALETTE[entry.run % PALETTE.len()];
        let y = by + 5.0 + line_height * (i as f64 + 0.5);
        let (x0, x1) = (bx + 12.0, bx + 12.0 + sample);
        match entry.kind {
            CurveKind::Val => {
                let _ = writeln!(
                    svg,
                    r##"<line x1="{x0:.1}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="2.6"/><circle cx="{:.1}" cy="{y:.1}" r="3.6" fill="{color}" stroke="#ffffff" stroke-width="1.2"/>"##,
                    (x0 + x1) / 2.0
                );
            }
            _ => {
                let _ = writeln!(
                    svg,
                    r#"<line x1="{x0:.1}" x2="{x1:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{color}" stroke-width="1.7"/>"#
                );
            }
        }
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{y:.1}" dy="0.32em" fill="#333333">{}</text>"##,
            x1 + 8.0,
            escape(&entry.text)
        );
    }
    let _ = writeln!(svg, "</g>");
}

/// Text made safe for XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
    }

    #[test]
    fn decimate_keeps_extremes_per_column() {
        let pixels: Vec<(f64, f64)> = (0..10_000).map(|i| (i as f64 / 100.0, (i % 7) as f64)).collect();
        let thin = decimate(&pixels);
        assert!(thin.len() <= 400, "{}", thin.len());
        assert!(thin.iter().any(|p| p.1 == 0.0) && thin.iter().any(|p| p.1 == 6.0));
        assert_eq!(thin.first(), pixels.first());
        assert_eq!(thin.last(), pixels.last());
    }
}
