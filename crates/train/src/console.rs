//! What the trainer prints: one indicatif progress bar on a terminal (step, loss, val
//! loss, lr, tok/s, ETA) with messages printed above it, or plain log lines when the
//! output is not a terminal (CI, tests, a file): `step 1200 | loss 1.87 | lr 6.0e-4 |
//! 41 ms | 52k tok/s`. Also the pre-flight summary (size, FLOPs, memory) and number formats.

use std::io::IsTerminal;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use model::budget::{format_bytes, TrainingMemory};
use model::GptConfig;

/// One optimizer step, as shown to the user.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepReport {
    /// Steps completed (1 after the first update).
    pub step: u64,
    pub loss: f64,
    /// Exponential moving average of the loss (0.9 · previous + 0.1 · loss).
    pub smoothed_loss: f64,
    pub val_loss: Option<f64>,
    pub lr: f64,
    pub step_ms: f64,
    pub tok_per_s: f64,
}

/// How much the console shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing at all (tests).
    Quiet,
    /// A progress bar on a terminal, else plain lines.
    Normal,
}

pub struct Console {
    bar: Option<ProgressBar>,
    verbosity: Verbosity,
}

impl Console {
    /// A console for a run of `total` steps starting at `start`.
    pub fn new(total: u64, start: u64, verbosity: Verbosity) -> Console {
        let bar = (verbosity == Verbosity::Normal && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {msg} | ETA {eta}")
                    .expect("the progress template is valid")
                    .progress_chars("█▌ "),
            );
            bar.set_position(start);
            bar.reset_eta();
            bar
        });
        Console { bar, verbosity }
    }

    /// Prints a line (above the bar, when there is one).
    pub fn println(&self, text: &str) {
        match (&self.bar, self.verbosity) {
            (_, Verbosity::Quiet) => {}
            (Some(bar), _) => bar.suspend(|| println!("{text}")),
            (None, _) => println!("{text}"),
        }
    }

    /// Updates the bar after a step; `log` asks for a plain line when there is no bar.
    pub fn step(&self, r: &StepReport, log: bool) {
        match &self.bar {
            Some(bar) => {
                let val = r.val_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into());
                bar.set_message(format!(
                    "loss {:.4} (avg {:.4}) | val {val} | lr {:.1e} | {}",
                    r.loss,
                    r.smoothed_loss,
                    r.lr,
                    tokens_per_second(r.tok_per_s)
                ));
                bar.set_position(r.step);
            }
            None if log => self.println(&plain_line(r)),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `step 1200 | loss 1.8700 | lr 6.0e-4 | 41 ms | 52k tok/s`.
pub fn plain_line(r: &StepReport) -> String {
    format!(
        "step {} | loss {:.4} | lr {:.1e} | {:.0} ms | {}",
        r.step,
        r.loss,
        r.lr,
        r.step_ms,
        tokens_per_second(r.tok_per_s)
    )
}

/// `52k tok/s`, `1.2M tok/s`, `830 tok/s`.
pub fn tokens_per_second(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M tok/s", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k tok/s", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k tok/s", x / 1e3)
    } else {
        format!("{x:.0} tok/s")
    }
}

/// `1.2 PFLOPs`, `3.4 TFLOPs`, `560 GFLOPs`.
pub fn flops(x: f64) -> String {
    if x >= 1e15 {
        format!("{:.1} PFLOPs", x / 1e15)
    } else if x >= 1e12 {
        format!("{:.1} TFLOPs", x / 1e12)
    } else {
        format!("{:.0} GFLOPs", x / 1e9)
    }
}

/// `1h02m`, `3m20s`, `41s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The lines printed before training: model size, FLOPs, the plan, memory (as
/// [`GptConfig::training_memory`] computed it, before anything was allocated).
pub fn preflight(
    c: &GptConfig,
    memory: &TrainingMemory,
    tokens_per_step: u64,
    max_iters: u64,
    run_dir: &Path,
) -> String {
    let total_tokens = max_iters.saturating_mul(tokens_per_step);
    format!(
        "model: {} parameters ({} layers, {} heads, {} wide, context {}, vocabulary {}); \
         {:.2} MFLOPs per token\n\
         plan: {max_iters} steps x {tokens_per_step} tokens = {:.1}M tokens, {}; memory about {} \
         (weights, grads, AdamW {}, activations {}); run folder {}",
        memory.params,
        c.n_layer,
        c.n_head,
        c.n_embd,
        c.block_size,
        c.vocab_size,
        c.flops_per_token() / 1e6,
        total_tokens as f64 / 1e6,
        flops(c.flops_per_token() * total_tokens as f64),
        format_bytes(memory.total()),
        format_bytes(memory.weights + memory.gradients + memory.optimizer),
        format_bytes(memory.activations),
        run_dir.display()
    )
}
