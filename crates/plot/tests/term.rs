//! The terminal chart: it fits the requested size, draws a falling curve, labels its axes
//! and legend, and survives empty, single-point, constant and non-finite series.

use plot::{terminal_chart, terminal_chart_with, ChartOptions, Series};

fn series(label: &str, points: Vec<(f64, f64)>) -> Series {
    Series { label: label.to_owned(), points }
}

fn falling() -> Vec<Series> {
    let train = (0..=500).map(|i| (i as f64 * 10.0, 1.5 + 2.7 * (-(i as f64) / 60.0).exp())).collect();
    let val = (0..=10).map(|i| (i as f64 * 500.0, 1.6 + 2.6 * (-(i as f64) / 1.2).exp())).collect();
    vec![series("train loss", train), series("val loss", val)]
}

fn assert_fits(chart: &str, width: usize, height: usize) {
    let lines: Vec<&str> = chart.lines().collect();
    assert!(lines.len() <= height, "{} lines > {height}:\n{chart}", lines.len());
    for line in &lines {
        assert!(line.chars().count() <= width, "{} columns > {width}: {line:?}", line.chars().count());
    }
}

fn is_braille(c: char) -> bool {
    ('\u{2801}'..='\u{28FF}').contains(&c)
}

#[test]
fn the_chart_fits_the_requested_size() {
    for (width, height) in [(72, 14), (40, 8), (100, 20), (16, 5)] {
        let chart = terminal_chart(&falling(), width, height);
        assert_fits(&chart, width, height);
        assert_eq!(chart.lines().count(), height, "{chart}");
    }
    // Smaller requests are raised to 16 × 5.
    assert_fits(&terminal_chart(&falling(), 3, 1), 16, 5);
}

#[test]
fn a_falling_curve_starts_top_left_and_ends_bottom_right() {
    let chart = terminal_chart(&falling(), 60, 12);
    let lines: Vec<&str> = chart.lines().collect();
    let plot_rows = &lines[..9];
    let first_mark = |line: &str| line.chars().position(|c| is_braille(c) || c == '●');
    let top = first_mark(plot_rows[0]).expect("top row has the start of the curve");
    let bottom = first_mark(plot_rows[8]).expect("bottom row has the end of the curve");
    assert!(top < bottom, "{chart}");
    assert!(chart.contains('●'), "val markers");
    assert!(plot_rows[0].trim_start().starts_with("4.2"), "max label: {chart}");
    assert!(plot_rows[8].trim_start().starts_with("1.50"), "min label: {chart}");
    assert!(lines[9].contains('└'), "x axis");
    assert!(lines[10].trim_start().starts_with('0') && lines[10].ends_with("5000"), "x labels: {chart}");
    assert!(lines[11].contains("train loss") && lines[11].contains("● val loss"), "legend");
}

#[test]
fn odd_series_do_not_panic() {
    let cases = vec![
        vec![],
        vec![series("empty", vec![])],
        vec![series("one", vec![(3.0, 2.0)])],
        vec![series("flat", vec![(0.0, 2.0), (1.0, 2.0), (2.0, 2.0)])],
        vec![series("nan", vec![(0.0, f64::NAN), (1.0, 3.0), (f64::INFINITY, 1.0), (2.0, 2.0)])],
        vec![series("all nan", vec![(0.0, f64::NAN), (1.0, f64::NAN)])],
        vec![series("same x", vec![(5.0, 1.0), (5.0, 3.0)]), series("val", vec![(5.0, 2.0)])],
        vec![series("huge", vec![(0.0, 1e30), (1e12, -1e30)])],
    ];
    for case in cases {
        let chart = terminal_chart(&case, 40, 8);
        assert_fits(&chart, 40, 8);
        let has_points = case.iter().flat_map(|s| &s.points).any(|(x, y)| x.is_finite() && y.is_finite());
        let plot_rows: Vec<&str> = chart.lines().take(5).collect();
        let drawn = plot_rows.concat().chars().any(|c| is_braille(c) || c == '●');
        assert_eq!(drawn, has_points, "{chart}");
    }
}

#[test]
fn colour_is_optional_and_only_adds_escapes() {
    let plain = terminal_chart(&falling(), 60, 12);
    assert!(!plain.contains('\x1b'));
    let colored = terminal_chart_with(&falling(), &ChartOptions { width: 60, height: 12, color: true });
    assert!(colored.contains("\x1b[36m") && colored.contains("\x1b[33m"));
    assert_eq!(strip_ansi(&colored), plain);
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
