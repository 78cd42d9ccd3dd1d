//! Evaluation and what it shows: the mean loss over a fixed set of batches of a split,
//! the evaluation line with the loss chart, and a sample of text from the model.

use std::path::Path;

use data::{BatchSampler, TokenFile, Tokenizer};
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
    // One pool task for all the batches, as for a training step: the workers stay awake
    // from op to op. Nothing is differentiated, so the ops keep nothing for backward.
    gpt.tape.set_no_grad(true);
    let sum = tensor::on_pool(|| {
        let mut sum = 0.0f64;
        for _ in 0..config.train.eval_iters {
            sampler.next_batch(file, inputs, targets);
            let out = gpt.forward(inputs, Some(targets), b, t, None);
            sum += gpt.tape.data(out.loss.expect("a forward with targets returns a loss"))[0] as f64;
            // The next batch reuses this one's activation memory.
            gpt.tape.reset();
        }
        sum
    });
    gpt.tape.set_no_grad(false);
    Ok(sum / config.train.eval_iters as f64)
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
    let (mut inputs, mut targets, mut window) = (Vec::new(), Vec::new(), vec![0u32; t + 1]);
    gpt.tape.set_no_grad(true);
    let sum = tensor::on_pool(|| {
        let mut sum = 0.0f64;
        for w0 in (0..windows).step_by(b.max(1)) {
            let rows = b.max(1).min(windows - w0);
            inputs.clear();
            targets.clear();
            for w in w0..w0 + rows {
                file.read_into(w * t, &mut window);
                inputs.extend_from_slice(&window[..t]);
                targets.extend_from_slice(&window[1..]);
            }
            let out = gpt.forward(&inputs, Some(&targets), rows, t, None);
            // The forward's loss is the mean over its rows · t tokens.
            sum += gpt.tape.data(out.loss.expect("a forward with targets returns a loss"))[0] as f64
                * rows as f64;
            gpt.tape.reset();
        }
        sum
    });
    gpt.tape.set_no_grad(false);
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
