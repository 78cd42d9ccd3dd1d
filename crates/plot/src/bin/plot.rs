//! `plot runs/NAME [runs/OTHER ...] [--out FILE] [--x step|tokens|time] [--log]`: draws the
//! train and val loss of one or more runs into one SVG and prints a terminal chart of each.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use plot::{
    color_enabled, loss_series, merge_history, render_svg, terminal_chart_with, write_atomic, ChartOptions,
    Run, SvgOptions, XAxis,
};

/// Draws the loss curves of training runs: one SVG with every run overlaid (train loss
/// thin with a smoothed line, val loss bold with markers), and a chart in the terminal.
#[derive(Parser, Debug)]
#[command(name = "plot", version)]
struct Args {
    /// Run folders written by `train` (each holding metrics.jsonl), or metrics.jsonl files.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// Where to write the SVG. Defaults to loss.svg in the current folder, so it never
    /// overwrites runs/NAME/loss.svg, which the trainer keeps up to date. An existing file
    /// is replaced only if it is an SVG image.
    #[arg(long, value_name = "FILE", default_value = "loss.svg")]
    out: PathBuf,
    /// What the horizontal axis measures: step, tokens or time (seconds since the run
    /// started, shown in s, min or h).
    #[arg(long, value_name = "AXIS", default_value = "step", value_parser = parse_axis)]
    x: XAxis,
    /// Logarithmic loss axis.
    #[arg(long)]
    log: bool,
    /// Title of the picture (default: the run names).
    #[arg(long)]
    title: Option<String>,
    /// Picture size in pixels, WIDTHxHEIGHT.
    #[arg(long, value_name = "WxH", default_value = "860x520", value_parser = parse_size)]
    size: (u32, u32),
    /// Do not print the terminal charts.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_axis(text: &str) -> Result<XAxis, String> {
    text.parse()
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let parsed =
        text.split_once('x').and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) if (200..=10_000).contains(&w) && (150..=10_000).contains(&h) => Ok((w, h)),
        _ => {
            Err(format!("expected WIDTHxHEIGHT in pixels such as 860x520 (at least 200x150), found `{text}`"))
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("plot: error: {}", chain(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", skipping a cause its parent already quotes.
fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut runs = Vec::with_capacity(args.runs.len());
    for path in &args.runs {
        let run = Run::load(path)?;
        if run.rows.is_empty() {
            anyhow::bail!(
                "{}: no metric rows yet; wait for the run's first log interval, or check that this is the right run",
                metrics_path(path).display()
            );
        }
        runs.push(run);
    }

    if !args.quiet {
        let color = color_enabled();
        for run in &runs {
            print_summary(run, args.x, color);
        }
    }

    let options = SvgOptions {
        width: args.size.0,
        height: args.size.1,
        x: args.x,
        log_y: args.log,
        title: args.title.clone(),
        auto_reload_s: None,
    };
    let svg = render_svg(&runs, &options);
    plot::check_replaceable(&args.out)?;
    write_atomic(&args.out, svg.as_bytes())
        .with_context(|| format!("writing the plot to {}", args.out.display()))?;
    say(&format!("wrote {}\n", args.out.display()));
    Ok(())
}

/// The metrics file a RUN argument points at.
fn metrics_path(path: &std::path::Path) -> PathBuf {
    if path.is_file() {
        path.to_owned()
    } else {
        path.join("metrics.jsonl")
    }
}

/// A heading with the run's latest numbers, then its chart.
fn print_summary(run: &Run, x: XAxis, color: bool) {
    let history = merge_history(&run.rows);
    let last_step = history.last().map(|r| r.step).unwrap_or(0);
    let last_train = history.iter().rev().find_map(|r| r.train_loss);
    let best_val = history
        .iter()
        .filter_map(|r| r.val_loss)
        .fold(None, |best: Option<f64>, v| Some(best.map_or(v, |b| b.min(v))));
    let mut heading = format!("{}: step {last_step}", run.name);
    if let Some(loss) = last_train {
        heading.push_str(&format!(" | train loss {loss:.4}"));
    }
    if let Some(loss) = best_val {
        heading.push_str(&format!(" | best val loss {loss:.4}"));
    }
    let mut series = loss_series(&run.rows, x);
    if x == XAxis::Time {
        // Minutes read better than thousands of seconds.
        for point in series.iter_mut().flat_map(|s| s.points.iter_mut()) {
            point.0 /= 60.0;
        }
        heading.push_str(" | x: minutes");
    }
    let width = terminal_width().clamp(40, 100);
    let chart = terminal_chart_with(&series, &ChartOptions { width, height: 14, color });
    say(&format!("{heading}\n{chart}\n"));
}

/// Prints to stdout, ignoring a closed pipe (`plot ... | head`): the SVG matters more.
fn say(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// The terminal's width from `COLUMNS`, or 80.
fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(80)
}
