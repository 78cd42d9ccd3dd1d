//! The SVG canvas every picture draws on: a white page with a title, in `plot`'s fonts
//! and colours, and a few primitives (text, rectangles, lines, circles) that escape their
//! text. Also the colour ramp of the heatmaps and its legend bar.

use std::fmt::Write as _;

use plot::escape;

/// `plot`'s font list with CJK fonts before the generic family, so Chinese characters
/// render in a matching sans-serif face wherever one is installed.
pub const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, 'Noto Sans CJK SC', \
                        'Noto Sans SC', 'Source Han Sans SC', 'PingFang SC', 'Microsoft YaHei', sans-serif";

/// Text colours: titles, axis titles, tick labels.
pub const INK: &str = "#222222";
pub const MUTED: &str = "#555555";
/// Grid lines and frames.
pub const GRID: &str = "#e8e8e8";
pub const FRAME: &str = "#666666";

/// An SVG document under construction.
pub struct Canvas {
    svg: String,
    pub width: f64,
    pub height: f64,
}

impl Canvas {
    /// A white page of `width` × `height` pixels with `title` at the top left, widened
    /// when the title would not fit.
    pub fn new(width: f64, height: f64, title: &str) -> Canvas {
        let width = width.max(40.0 + text_width(title, 17.0));
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="{FONT}">"#
        );
        let _ = writeln!(svg, r##"<rect width="{width:.0}" height="{height:.0}" fill="#ffffff"/>"##);
        let mut canvas = Canvas { svg, width, height };
        canvas.text(20.0, 30.0, 17.0, "start", INK, title);
        canvas
    }

    /// Text at (x, y), vertically centred on y; `anchor` is start, middle or end.
    pub fn text(&mut self, x: f64, y: f64, size: f64, anchor: &str, fill: &str, text: &str) {
        let weight = if size >= 17.0 { r#" font-weight="600""# } else { "" };
        let _ = writeln!(
            self.svg,
            r#"<text x="{x:.1}" y="{y:.1}" dy="0.35em" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{weight}>{}</text>"#,
            escape(text)
        );
    }

    /// Text rotated by `degrees` about its anchor point (x, y).
    pub fn text_rotated(&mut self, x: f64, y: f64, size: f64, anchor: &str, degrees: f64, text: &str) {
        let _ = writeln!(
            self.svg,
            r#"<text x="{x:.1}" y="{y:.1}" dy="0.35em" font-size="{size}" text-anchor="{anchor}" fill="{MUTED}" transform="rotate({degrees} {x:.1} {y:.1})">{}</text>"#,
            escape(text)
        );
    }

    /// A filled rectangle; `stroke` may be "none".
    pub fn rect(&mut self, (x, y, w, h): (f64, f64, f64, f64), fill: &str, stroke: &str) {
        let _ = writeln!(
            self.svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{fill}" stroke="{stroke}"/>"#
        );
    }

    /// A rounded box with a border, for diagrams.
    pub fn boxed(&mut self, (x, y, w, h): (f64, f64, f64, f64), fill: &str, stroke: &str) {
        let _ = writeln!(
            self.svg,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" rx="6" fill="{fill}" stroke="{stroke}" stroke-width="1.2"/>"#
        );
    }

    pub fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), stroke: &str, width: f64) {
        let _ = writeln!(
            self.svg,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{stroke}" stroke-width="{width}"/>"#
        );
    }

    /// A line through the points.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &str, width: f64, opacity: f64) {
        let mut d = String::new();
        for (x, y) in points {
            let _ = write!(d, "{x:.1},{y:.1} ");
        }
        let _ = writeln!(
            self.svg,
            r#"<polyline points="{}" fill="none" stroke="{stroke}" stroke-width="{width}" stroke-opacity="{opacity}" stroke-linejoin="round"/>"#,
            d.trim_end()
        );
    }

    pub fn circle(&mut self, (x, y): (f64, f64), r: f64, fill: &str, opacity: f64) {
        let _ = writeln!(
            self.svg,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}" fill-opacity="{opacity}"/>"#
        );
    }

    /// A downward arrow from (x, y1) to (x, y2), for diagrams.
    pub fn arrow_down(&mut self, x: f64, y1: f64, y2: f64) {
        self.line((x, y1), (x, y2 - 6.0), FRAME, 1.4);
        let _ = writeln!(
            self.svg,
            r#"<polygon points="{:.1},{:.1} {:.1},{:.1} {x:.1},{y2:.1}" fill="{FRAME}"/>"#,
            x - 4.5,
            y2 - 7.0,
            x + 4.5,
            y2 - 7.0
        );
    }

    /// A vertical colour bar for values 0..=`max` at (x, y), `h` tall, with three labels.
    pub fn colour_bar(&mut self, (x, y, h): (f64, f64, f64), max: f64, label: &dyn Fn(f64) -> String) {
        let steps = 40;
        for i in 0..steps {
            let v = 1.0 - (i as f64 + 0.5) / steps as f64;
            let step_h = h / steps as f64;
            self.rect((x, y + i as f64 * step_h, 14.0, step_h + 0.5), &heat_colour(v), "none");
        }
        self.rect((x, y, 14.0, h), "none", FRAME);
        for (v, py) in [(max, y), (max / 2.0, y + h / 2.0), (0.0, y + h)] {
            self.text(x + 20.0, py, 11.0, "start", MUTED, &label(v));
        }
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

/// About how wide `text` is at font size `size`: wide (CJK) characters take a full em,
/// others about 0.56 em.
pub fn text_width(text: &str, size: f64) -> f64 {
    text.chars().map(|c| if (c as u32) >= 0x2E80 { size } else { 0.56 * size }).sum()
}

/// The heatmap colour of `v` in [0, 1]: white through light blue to dark blue, so 0 is the
/// background and the eye goes to the large values.
pub fn heat_colour(v: f64) -> String {
    const STOPS: [(f64, [f64; 3]); 4] = [
        (0.0, [255.0, 255.0, 255.0]),
        (0.25, [198.0, 219.0, 239.0]),
        (0.6, [66.0, 146.0, 198.0]),
        (1.0, [8.0, 48.0, 107.0]),
    ];
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    let i = STOPS.iter().rposition(|s| s.0 <= v).unwrap_or(0).min(STOPS.len() - 2);
    let ((v0, c0), (v1, c1)) = (STOPS[i], STOPS[i + 1]);
    let f = (v - v0) / (v1 - v0);
    let mix = |k: usize| (c0[k] + f * (c1[k] - c0[k])).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_colour_runs_from_white_to_dark_blue() {
        assert_eq!(heat_colour(0.0), "#ffffff");
        assert_eq!(heat_colour(1.0), "#08306b");
        assert_eq!(heat_colour(f64::NAN), "#ffffff");
    }

    #[test]
    fn text_is_escaped() {
        let mut canvas = Canvas::new(100.0, 100.0, "a < b");
        canvas.text(0.0, 0.0, 12.0, "start", INK, "&");
        let svg = canvas.finish();
        assert!(svg.contains("a &lt; b") && svg.contains("&amp;") && svg.ends_with("</svg>\n"));
    }
}
