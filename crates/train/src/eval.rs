//! Evaluation and what it shows: the mean loss over a fixed set of batches of a split,
//! the evaluation line with the loss chart, a sample of text from the model, and
//! `train --evaluate`, the loss of a run's checkpoint over whole splits.

use std::path::Path;

use data::{read_windows, BatchSampler, TokenFile, Tokenizer};
use model::budget::format_bytes;
use model::checkpoint::Checkpoint;
use model::sampling::{generate, SamplingParams};
use model::Gpt;
use plot::{MetricRow, Series};
use tensor::Rng;

use crate::config::Config;
use crate::console::{Console, Verbosity};
use crate::corpus::{bits_per_byte, bytes_per_token};
use crate::seeds::{stream_seed, Stream};
use crate::start::{check_checkpoint, check_fits, check_recorded_dataset, open_run, run_folder_config};
use crate::world::World;
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
/// (so each evaluation sees the same batches). No dropout; nothing is learned. On several
/// ranks each runs a contiguous share of the batches, and the losses are added in batch
/// order, as one process adds them.
pub fn evaluate(
    gpt: &mut Gpt,
    file: &TokenFile,
    config: &Config,
    seed: u64,
    (inputs, targets): (&mut Vec<u32>, &mut Vec<u32>),
    world: &World,
) -> Result<f64, TrainError> {
    let (b, t) = (config.train.batch_size, config.model.block_size);
    let batches = config.train.eval_iters;
    let share = |rank: usize| rank * batches / world.size();
    let mine = share(world.rank())..share(world.rank() + 1);
    let mut sampler = BatchSampler::new(file, b, t, seed)?;
    let mut drawn = 0;
    let losses = forward_losses(gpt, t, inputs, targets, |inputs, targets| {
        // Batches before this rank's share are drawn and skipped, as in training.
        while drawn < mine.end {
            sampler.next_batch(file, inputs, targets);
            drawn += 1;
            if drawn > mine.start {
                return Some(b);
            }
        }
        None
    });
    let mine: Vec<f64> = losses.iter().map(|&(loss, _)| loss).collect();
    let counts: Vec<usize> = (0..world.size()).map(|r| share(r + 1) - share(r)).collect();
    let all = world.all_gather_f64(&mine, &counts);
    Ok(all.iter().sum::<f64>() / batches as f64)
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

/// One split's line of [`evaluate_run`].
#[derive(Clone, Debug, PartialEq)]
pub struct SplitReport {
    pub split: &'static str,
    pub loss: f64,
    pub bits_per_byte: f64,
    /// Windows of block_size tokens evaluated: every one the split holds.
    pub windows: usize,
}

/// Which splits [`evaluate_run`] scores (`train --split val|train|both`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Splits {
    Val,
    Train,
    Both,
}

/// `train --evaluate runs/NAME`: the loss of the run's best.ckpt (latest.ckpt when it has
/// none; or the checkpoint given, `runs/NAME/latest.ckpt`) over the whole validation
/// split, the whole training split, or both (in that order), by [`split_loss`], with bits
/// per byte. Changes nothing in the run folder (the dataset is prepared first when its
/// files are missing, as for training).
pub fn evaluate_run(
    run_dir: &Path,
    splits: Splits,
    verbosity: Verbosity,
) -> Result<Vec<SplitReport>, TrainError> {
    let verbose = verbosity == Verbosity::Normal;
    // A checkpoint file names its run folder and itself.
    let (run_dir, chosen_ckpt) = match run_dir.parent() {
        Some(parent) if run_dir.is_file() => (parent, Some(run_dir.to_path_buf())),
        _ => (run_dir, None),
    };
    let path = run_folder_config(run_dir, "--evaluate")?;
    let origin = path.display().to_string();
    let config = Config::load(&path, &[])?;
    check_recorded_dataset(&config, &path)?;
    let (corpus, gpt_config) = open_run(&config, &origin, verbose)?;
    let memory = gpt_config
        .training_memory(config.train.batch_size, 0)
        .map_err(|e| TrainError::Config(format!("{origin}: {e}")))?;
    // Evaluation keeps no gradients or AdamW moments: the weights, a batch, its activations.
    let needed = memory.weights.saturating_add(memory.activations).saturating_add(memory.batches);
    check_fits(
        needed,
        &format!(
            "{origin}: evaluating train.batch_size = {} sequences of model.block_size = {} tokens needs {}",
            config.train.batch_size,
            config.model.block_size,
            format_bytes(needed)
        ),
    )?;
    let default_ckpt =
        || ["best.ckpt", "latest.ckpt"].map(|f| run_dir.join(f)).into_iter().find(|p| p.exists());
    let Some(ckpt_path) = chosen_ckpt.or_else(default_ckpt) else {
        return Err(TrainError::NothingToEvaluate { run_dir: run_dir.to_path_buf() });
    };
    let ckpt = Checkpoint::load(&ckpt_path)?;
    check_checkpoint(&ckpt, &ckpt_path, &gpt_config, &config, corpus.tokenizer.as_ref())?;
    let step = ckpt.step;
    let mut gpt = ckpt.into_model()?;
    let (b, t) = (config.train.batch_size, config.model.block_size);
    if verbose {
        println!("{} (step {step}), every {t}-token window:", ckpt_path.display());
    }
    let mut reports = Vec::new();
    let chosen =
        [("val", &corpus.val, splits != Splits::Train), ("train", &corpus.train, splits != Splits::Val)];
    for (split, file, _) in chosen.into_iter().filter(|c| c.2) {
        let SplitLoss { loss, windows } = split_loss(&mut gpt, file, b, t);
        // The corpus measured the val split's bytes per token when it opened.
        let bytes = match split {
            "val" => corpus.bytes_per_token,
            _ => bytes_per_token(corpus.tokenizer.as_ref(), file),
        };
        let report = SplitReport { split, loss, bits_per_byte: bits_per_byte(loss, bytes), windows };
        if verbose {
            println!(
                "{split:<5} {windows:>9} windows | loss {loss:.4} | {:.3} bits/byte | perplexity {:.2}",
                report.bits_per_byte,
                loss.exp()
            );
        }
        reports.push(report);
    }
    Ok(reports)
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
    let mut rng = Rng::seeded(stream_seed(seed, Stream::Sample).wrapping_add(step));
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
