//! Writes two made-up runs, with realistic falling loss curves, into a folder: each gets a
//! metrics.jsonl and a TensorBoard event file. For trying `plot` and the TensorBoard check:
//!
//! ```text
//! cargo run --release -p quill-plot --example demo_runs -- /tmp/demo
//! cargo run --release -p quill-plot --bin plot -- /tmp/demo/small /tmp/demo/wide --out /tmp/demo/loss.svg
//! python3 scripts/check_tensorboard.py /tmp/demo/small
//! ```
//!
//! The second run is "still in progress": it stops early and its last line is half written.

use std::io::Write;
use std::path::{Path, PathBuf};

use plot::tensorboard::EventWriter;
use plot::MetricRow;

/// A made-up run: loss falls from `start` towards `floor` with time constant `tau` steps;
/// val loss sits `gap` above train and creeps up by `overfit` per 1000 steps at the end.
struct Shape {
    name: &'static str,
    steps: u64,
    start: f64,
    floor: f64,
    tau: f64,
    gap: f64,
    overfit: f64,
    seconds_per_step: f64,
}

/// A tiny deterministic generator (xorshift64*) for the noise.
struct Noise(u64);

impl Noise {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal: the sum of four uniforms, centred and scaled to unit variance.
    fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.uniform()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "demo-runs".to_owned()));
    let shapes = [
        Shape {
            name: "small",
            steps: 5000,
            start: 4.17,
            floor: 1.47,
            tau: 600.0,
            gap: 0.12,
            overfit: 0.0,
            seconds_per_step: 0.045,
        },
        Shape {
            name: "wide",
            steps: 3520,
            start: 4.19,
            floor: 1.22,
            tau: 420.0,
            gap: 0.2,
            overfit: 0.04,
            seconds_per_step: 0.11,
        },
    ];
    for (index, shape) in shapes.iter().enumerate() {
        write_run(&out.join(shape.name), shape, 7 + index as u64)?;
    }
    println!("wrote {} runs under {}", shapes.len(), out.display());
    Ok(())
}

fn write_run(dir: &Path, shape: &Shape, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut metrics = std::fs::File::create(dir.join("metrics.jsonl"))?;
    let mut events = EventWriter::create(dir)?;
    let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let tokens_per_step = 64 * 256;
    let mean_loss = |step: f64| {
        let progress = step / shape.tau;
        shape.floor
            + (shape.start - shape.floor) * (0.75 * (-progress).exp() + 0.25 * (-progress / 6.0).exp())
    };
    for step in (0..=shape.steps).step_by(10) {
        let s = step as f64;
        let train_loss = mean_loss(s) + 0.035 * (0.6 + mean_loss(s) / shape.start) * noise.normal();
        let mut row = MetricRow {
            step,
            tokens: step * tokens_per_step,
            train_loss: Some(train_loss),
            lr: Some(6e-4 * (s / 100.0).min(1.0)),
            tok_per_s: Some(tokens_per_step as f64 / shape.seconds_per_step),
            elapsed_s: s * shape.seconds_per_step,
            ..MetricRow::default()
        };
        if step.is_multiple_of(250) {
            let late = (s - 2000.0).max(0.0) / 1000.0;
            let val = mean_loss(s) + shape.gap * (1.0 - (-s / 300.0).exp()) + shape.overfit * late * late;
            row.val_loss = Some(val);
            row.eval_train_loss = Some(mean_loss(s));
            row.val_ppl = Some(val.exp());
            events.add_scalar("loss/val", step, val)?;
        }
        events.add_scalar("loss/train", step, train_loss)?;
        writeln!(metrics, "{}", serde_json::to_string(&row)?)?;
    }
    if !shape.steps.is_multiple_of(250) {
        // A run killed in the middle of writing a row.
        write!(
            metrics,
            "{{\"step\":{},\"tokens\":{},\"train_lo",
            shape.steps + 10,
            (shape.steps + 10) * 16384
        )?;
    }
    events.flush()?;
    Ok(())
}
