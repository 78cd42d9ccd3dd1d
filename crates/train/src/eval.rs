//! Evaluation and what it shows: the mean loss over a fixed set of batches of a split,
//! the evaluation line with the loss chart, and a sample of text from the model.

use std::path::Path;

use data::{read_windows, BatchSampler, TokenFile, Tokenizer};
use model::sampling::{generate, SamplingParams};
use model::Gpt;
use plot::{MetricRow, Series};
use tensor::Rng;

use crate::config::Config;
use crate::console::Console;
use crate::trainer::{stream_seed, STREAM_SAMPLE};
use crate::TrainError;

/// Prints an evaluation (losses, bits per byte, perplexity, the loss chart) and redraws
/// loss.svg.
pub fn show_evaluation(
    console: &Console,
    row: &MetricRow,
    improved: bool,
    rows: &[MetricRow],
    run_dir: &Path,
) {
    console.println(&format!(
        "step {} | train {:.4} | val {:.4} | {:.3} bits/byte | perplexity {:.2}{}",
        row.step,
        row.eval_train_loss.unwrap_or(f64::NAN),
        row.val_loss.unwrap_or(f64::NAN),
        row.val_bpb.unwrap_or(f64::NAN),
        row.val_ppl.unwrap_or(f64::NAN),
        if improved { " (best so far)" } else { "" }
    ));
    if let Err(e) = plot::refresh_loss_svg(run_dir) {
        console.println(&format!("warning: loss.svg not updated: {e}"));
    }
    console.println(&plot::terminal_chart(&loss_series(rows), 72, 12));
}

/// Mean loss over `eval_iters` batches of a split, from a sampler started afresh at `seed`
/// (so each evaluation sees the same batches). No dropout; nothing is learned.
pub fn evaluate(
    gpt: &mut Gpt,
    file: &TokenFile,
    config: &Config,
    seed: u64,
    inputs: &mut Vec<u32>,
    targets: &mut Vec<u32>,
) -> Result<f64, TrainError> {
    let (b, t) = (config.train.batch_size, config.model.block_size);
    let mut sampler = BatchSampler::new(file, b, t, seed)?;
    let mut left = config.train.eval_iters;
    let losses = forward_losses(gpt, t, inputs, targets, |inputs, targets| {
        left = left.checked_sub(1)?;
        sampler.next_batch(file, inputs, targets);
        Some(b)
    });
    Ok(losses.iter().map(|&(loss, _)| loss).sum::<f64>() / config.train.eval_iters as f64)
}

/// The loss of each of a series of forwards without gradients, with its number of rows of
/// t tokens: `next` fills the inputs and targets of the next one and returns its rows, or
/// None when there are no more. One pool task for them all, as for a training step: the
/// workers stay awake from op to op; nothing is kept for backward.
fn forward_losses(
    gpt: &mut Gpt,
    t: usize,
    inputs: &mut Vec<u32>,
    targets: &mut Vec<u32>,
    mut next: impl FnMut(&mut Vec<u32>, &mut Vec<u32>) -> Option<usize> + Send,
) -> Vec<(f64, usize)> {
    gpt.tape.set_no_grad(true);
    let losses = tensor::on_pool(|| {
        let mut losses = Vec::new();
        while let Some(rows) = next(inputs, targets) {
            let out = gpt.forward(inputs, Some(targets), rows, t, None);
            losses.push((
                gpt.tape.data(out.loss.expect("a forward with targets returns a loss"))[0] as f64,
                rows,
            ));
            // The next forward reuses this one's activation memory.
            gpt.tape.reset();
        }
        losses
    });
    gpt.tape.set_no_grad(false);
    losses
}

/// The mean loss of a model over a whole split, and how many windows it covers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitLoss {
    pub loss: f64,
    pub windows: usize,
}

/// Mean loss over every window of a split: its consecutive, non-overlapping windows of t
/// tokens, each predicting the next t tokens as in training, up to `b` windows per forward
/// (the last forward takes what is left). Every window counts equally, so this is the mean
/// over all (len − 1) / t · t predicted tokens, without the sampling noise of
/// [`evaluate`]'s few random batches (about ±0.02 on Tiny Shakespeare with 20 batches).
pub fn split_loss(gpt: &mut Gpt, file: &TokenFile, b: usize, t: usize) -> SplitLoss {
    let windows = file.len().saturating_sub(1) / t;
    let mut next = 0;
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let losses = forward_losses(gpt, t, &mut inputs, &mut targets, |inputs, targets| {
        let rows = b.max(1).min(windows - next);
        (rows > 0).then(|| {
            read_windows(file, next..next + rows, t, inputs, targets);
            next += rows;
            rows
        })
    });
    // Each forward's loss is the mean over its rows · t tokens.
    let sum: f64 = losses.iter().map(|&(loss, rows)| loss * rows as f64).sum();
    SplitLoss { loss: sum / windows.max(1) as f64, windows }
}

/// The prompt for samples: the configured text, or a newline; a token 0 when the
/// tokenizer can express neither.
pub fn prompt_tokens(tokenizer: &dyn Tokenizer, prompt: &str) -> Vec<u32> {
    let text = if prompt.is_empty() { "\n" } else { prompt };
    match tokenizer.encode(text) {
        Ok(ids) if !ids.is_empty() => ids,
        _ => vec![0],
    }
}

/// `n` tokens sampled at temperature 0.8 after the prompt, decoded (prompt included).
pub fn sample_text(
    gpt: &Gpt,
    tokenizer: &dyn Tokenizer,
    prompt: &[u32],
    n: usize,
    seed: u64,
    step: u64,
) -> String {
    let params = SamplingParams { temperature: 0.8, top_k: None, top_p: None };
    let mut rng = Rng::seeded(stream_seed(seed, STREAM_SAMPLE).wrapping_add(step));
    let new = generate(gpt, prompt, n, &params, &mut rng, &mut |_| {});
    let all: Vec<u32> = prompt.iter().chain(&new).copied().collect();
    tokenizer.decode(&all)
}

/// Train (per logged step) and val (per evaluation) losses, for the terminal chart.
fn loss_series(rows: &[MetricRow]) -> Vec<Series> {
    let pick = |label: &str, f: fn(&MetricRow) -> Option<f64>| Series {
        label: label.into(),
        points: rows.iter().filter_map(|r| f(r).map(|y| (r.step as f64, y))).collect(),
    };
    vec![pick("train", |r| r.train_loss), pick("val", |r| r.val_loss)]
}
