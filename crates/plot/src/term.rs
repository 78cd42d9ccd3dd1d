//! The console chart: one or more series drawn with Unicode braille (each character holds
//! 2 × 4 dots), a y axis labelled at its top, middle and bottom, the first and last x values,
//! and a legend. The first series is drawn as a braille line; later series (val loss: few,
//! important points) as marker glyphs on top, so the chart reads without colour. Colour
//! (ANSI) is an option; the output is otherwise plain text.
//!
//! ```text
//!  4.19 ┤⡇
//!       │⠸⡀
//!  2.79 ┤ ⠱⣀ ●
//!       │   ⠉⠑⠒●⠤⠤⣀⣀●⣀⣀⣀
//!  1.40 ┤             ●⠉⠉
//!       └────────────────
//!        0           5000
//!        ⠒⠒ train loss  ● val loss
//! ```

use std::io::IsTerminal;

use crate::ticks::{count_unit, format_short, nice_ticks};
use crate::Series;

/// Glyphs marking the points of the second, third, ... series.
const MARKERS: [char; 5] = ['●', '×', '◆', '▲', '■'];
/// ANSI foreground colours, one per series: cyan, yellow, magenta, green, red, blue.
const COLORS: [u8; 6] = [36, 33, 35, 32, 31, 34];
/// The smallest chart drawn; smaller requests are raised to this.
const MIN_WIDTH: usize = 16;
const MIN_HEIGHT: usize = 5;

/// How to draw a terminal chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChartOptions {
    /// Columns of the whole chart, labels included (at least 16).
    pub width: usize,
    /// Lines of the whole chart, x labels and legend included (at least 5).
    pub height: usize,
    /// Colour the series with ANSI escapes (use [`color_enabled`] to decide).
    pub color: bool,
}

impl Default for ChartOptions {
    fn default() -> ChartOptions {
        ChartOptions { width: 72, height: 14, color: false }
    }
}

/// Whether standard output is a terminal that wants colour (and `NO_COLOR` is not set).
pub fn color_enabled() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// A compact chart of the series in Unicode braille, `width` × `height` characters plus
/// axis labels and a legend, for the console.
///
/// The whole chart, labels and legend included, is at most `width` columns and `height`
/// lines (both raised to 16 × 5 if smaller), plain text without colour. Non-finite points
/// are skipped; empty, single-point and constant series are drawn without panicking.
pub fn terminal_chart(series: &[Series], width: usize, height: usize) -> String {
    terminal_chart_with(series, &ChartOptions { width, height, color: false })
}

/// [`terminal_chart`] with options (colour).
pub fn terminal_chart_with(series: &[Series], options: &ChartOptions) -> String {
    let width = options.width.max(MIN_WIDTH);
    let height = options.height.max(MIN_HEIGHT);
    let rows = height - 3;
    let finite =
        || series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let bounds = finite().fold(None, |acc: Option<(f64, f64, f64, f64)>, &(x, y)| {
        Some(match acc {
            None => (x, x, y, y),
            Some((x0, x1, y0, y1)) => (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
        })
    });

    let Some((xmin, xmax, ymin, ymax)) = bounds else {
        return empty_chart(series, width, rows, options.color);
    };
    let decimals = (2 - (ymax - ymin).max(1e-12).log10().floor() as i32).clamp(0, 6) as usize;
    let y_at_row = |row: usize| {
        // The value at the centre of a row's dots; the top and bottom rows show the extremes.
        if row == 0 || ymax == ymin {
            ymax
        } else if row == rows - 1 {
            ymin
        } else {
            ymax - (4.0 * row as f64 + 1.5) / (4.0 * rows as f64 - 1.0) * (ymax - ymin)
        }
    };
    let mid_row = (rows - 1) / 2;
    let labels: Vec<Option<String>> = (0..rows)
        .map(|row| {
            let labelled = row == 0 || row == rows - 1 || (rows >= 3 && row == mid_row);
            labelled.then(|| format!("{:.*}", decimals, y_at_row(row) + 0.0))
        })
        .collect();
    let label_width = labels.iter().flatten().map(|l| l.chars().count()).max().unwrap_or(0);
    let columns = width.saturating_sub(label_width + 2).max(4);

    let mut canvas = Canvas::new(columns, rows);
    let to_dot = |x: f64, y: f64| -> (usize, usize) {
        let dot_x =
            if xmax > xmin { (x - xmin) / (xmax - xmin) * (2 * columns - 1) as f64 } else { columns as f64 };
        let dot_y =
            if ymax > ymin { (ymax - y) / (ymax - ymin) * (4 * rows - 1) as f64 } else { 2.0 * rows as f64 };
        (dot_x.round() as usize, dot_y.round() as usize)
    };
    for (index, s) in series.iter().enumerate() {
        let mut previous: Option<(usize, usize)> = None;
        for &(x, y) in &s.points {
            if !(x.is_finite() && y.is_finite()) {
                previous = None;
                continue;
            }
            let dot = to_dot(x, y);
            if index == 0 {
                canvas.line(previous.unwrap_or(dot), dot, index);
            } else {
                canvas.marker(dot, MARKERS[(index - 1) % MARKERS.len()], index);
            }
            previous = Some(dot);
        }
    }

    let mut out = String::new();
    for (row, label) in labels.iter().enumerate() {
        let axis = if label.is_some() { '┤' } else { '│' };
        out.push_str(&format!("{:>label_width$} {axis}", label.as_deref().unwrap_or("")));
        out.push_str(&canvas.render_row(row, options.color));
        out.push('\n');
    }
    out.push_str(&format!("{:label_width$} └{}\n", "", "─".repeat(columns)));
    out.push_str(&x_labels(xmin, xmax, label_width + 2, columns));
    out.push('\n');
    out.push_str(&legend(series, label_width + 2, width, options.color));
    out.push('\n');
    out
}

/// The frame of a chart with nothing to draw yet.
fn empty_chart(series: &[Series], width: usize, rows: usize, color: bool) -> String {
    let columns = width - 2;
    let mut out = String::new();
    for row in 0..rows {
        let text = if row == rows / 2 { "(no data yet)" } else { "" };
        out.push_str(format!(" │{:^columns$}", text).trim_end());
        out.push('\n');
    }
    out.push_str(&format!(" └{}\n\n", "─".repeat(columns)));
    out.push_str(&legend(series, 2, width, color));
    out.push('\n');
    out
}

/// The x labels: the first value under the axis corner, the last right-aligned under the
/// end of the axis, the middle one centred when there is room.
fn x_labels(xmin: f64, xmax: f64, indent: usize, columns: usize) -> String {
    let (divisor, suffix) = count_unit(xmax.abs().max(xmin.abs()));
    let label =
        |x: f64| if x == 0.0 { "0".to_owned() } else { format!("{}{}", format_short(x / divisor), suffix) };
    let mut line: Vec<char> = vec![' '; indent + columns];
    let place = |start: usize, text: &str, line: &mut Vec<char>| {
        for (i, c) in text.chars().enumerate() {
            if let Some(slot) = line.get_mut(start + i) {
                *slot = c;
            }
        }
    };
    let first = label(xmin);
    place(indent, &first, &mut line);
    if xmax > xmin {
        let last = label(xmax);
        let last_start = (indent + columns).saturating_sub(last.chars().count());
        if last_start > indent + first.chars().count() {
            place(last_start, &last, &mut line);
            // A round value near the middle, placed under its own column.
            let centre = (xmin + xmax) / 2.0;
            let (ticks, _) = nice_ticks(xmin, xmax, 8);
            let value = ticks.into_iter().min_by(|a, b| (a - centre).abs().total_cmp(&(b - centre).abs()));
            let value = value.unwrap_or(centre);
            let middle = label(value);
            let middle_len = middle.chars().count();
            let column = ((value - xmin) / (xmax - xmin) * (columns - 1) as f64).round() as usize;
            let middle_start = (indent + column).saturating_sub(middle_len / 2);
            if middle_start >= indent + first.chars().count() + 2
                && middle_start + middle_len + 2 <= last_start
            {
                place(middle_start, &middle, &mut line);
            }
        }
    }
    line.into_iter().collect::<String>().trim_end().to_owned()
}

/// One line naming each series with its glyph, cut to `width` columns.
fn legend(series: &[Series], indent: usize, width: usize, color: bool) -> String {
    let mut plain_len = indent;
    let mut out = " ".repeat(indent);
    for (index, s) in series.iter().enumerate() {
        let glyph =
            if index == 0 { "⠒⠒".to_owned() } else { MARKERS[(index - 1) % MARKERS.len()].to_string() };
        let separator = if index == 0 { "" } else { "  " };
        let entry = format!("{separator}{glyph} {}", s.label);
        let entry: String = entry.chars().take(width.saturating_sub(plain_len)).collect();
        if entry.is_empty() {
            break;
        }
        plain_len += entry.chars().count();
        if color {
            out.push_str(&format!("\x1b[{}m{entry}\x1b[0m", COLORS[index % COLORS.len()]));
        } else {
            out.push_str(&entry);
        }
    }
    out.trim_end().to_owned()
}

/// A grid of braille cells, each remembering which series drew on it last.
struct Canvas {
    columns: usize,
    rows: usize,
    dots: Vec<u8>,
    owner: Vec<Option<usize>>,
    markers: Vec<Option<char>>,
}

impl Canvas {
    fn new(columns: usize, rows: usize) -> Canvas {
        Canvas {
            columns,
            rows,
            dots: vec![0; columns * rows],
            owner: vec![None; columns * rows],
            markers: vec![None; columns * rows],
        }
    }

    /// Sets the dot at (x, y) in dot coordinates (2 per column, 4 per row).
    fn dot(&mut self, x: usize, y: usize, series: usize) {
        let (column, row) = ((x / 2).min(self.columns - 1), (y / 4).min(self.rows - 1));
        // Braille dot numbering: left column 1, 2, 3, 7; right column 4, 5, 6, 8.
        const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
        let cell = row * self.columns + column;
        self.dots[cell] |= BITS[x % 2][y % 4];
        if self.markers[cell].is_none() {
            self.owner[cell] = Some(series);
        }
    }

    /// A straight line of dots from `a` to `b` (Bresenham).
    fn line(&mut self, a: (usize, usize), b: (usize, usize), series: usize) {
        let (mut x, mut y) = (a.0 as i64, a.1 as i64);
        let (x1, y1) = (b.0 as i64, b.1 as i64);
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = ((x1 - x).signum(), (y1 - y).signum());
        let mut err = dx + dy;
        loop {
            self.dot(x as usize, y as usize, series);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// A marker glyph in the cell holding dot (x, y); it replaces the braille there.
    fn marker(&mut self, (x, y): (usize, usize), glyph: char, series: usize) {
        let cell = (y / 4).min(self.rows - 1) * self.columns + (x / 2).min(self.columns - 1);
        self.markers[cell] = Some(glyph);
        self.owner[cell] = Some(series);
    }

    /// One row as text; with `color`, runs of cells of one series share one escape.
    fn render_row(&self, row: usize, color: bool) -> String {
        let mut out = String::new();
        let mut current: Option<usize> = None;
        for column in 0..self.columns {
            let cell = row * self.columns + column;
            let glyph = match (self.markers[cell], self.dots[cell]) {
                (Some(marker), _) => marker,
                (None, 0) => ' ',
                (None, bits) => {
                    char::from_u32(0x2800 + bits as u32).expect("braille block is U+2800..U+28FF")
                }
            };
            if color {
                let owner = if glyph == ' ' { None } else { self.owner[cell] };
                if owner != current {
                    match owner {
                        Some(series) => out.push_str(&format!("\x1b[{}m", COLORS[series % COLORS.len()])),
                        None => out.push_str("\x1b[0m"),
                    }
                    current = owner;
                }
            }
            out.push(glyph);
        }
        if color && current.is_some() {
            out.push_str("\x1b[0m");
        }
        out.trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dot_in_each_corner_of_a_cell() {
        let mut canvas = Canvas::new(1, 1);
        canvas.dot(0, 0, 0);
        canvas.dot(1, 3, 0);
        assert_eq!(canvas.render_row(0, false), "⢁");
    }

    #[test]
    fn lines_are_connected() {
        let mut canvas = Canvas::new(4, 1);
        canvas.line((0, 0), (7, 3), 0);
        assert!(canvas.dots.iter().all(|&bits| bits != 0));
    }

    #[test]
    fn x_labels_show_first_middle_and_last() {
        let line = x_labels(0.0, 4000.0, 2, 30);
        assert!(line.starts_with("  0"), "{line:?}");
        assert!(line.ends_with("4000"), "{line:?}");
        assert!(line.contains(" 2000 "), "{line:?}");
        assert_eq!(line.chars().count(), 32);
        // A round middle value even when the axis starts at step 1.
        let line = x_labels(1.0, 300.0, 2, 30);
        assert!(line.contains(" 150 "), "{line:?}");
    }
}
