//! The training run: open (or prepare) the data, build or restore the model and AdamW,
//! then loop: micro-batches forward and backward, clip, update, log, evaluate, sample,
//! checkpoint; stop at max_iters, on Ctrl-C or on a `STOP` file in the run folder.
//!
//! Evaluation uses a fixed set of random windows: at every evaluation the eval samplers
//! start again from the same seeds, so each evaluation sees the same `eval_iters` batches
//! of each split (comparable from one evaluation to the next, and nothing to save for
//! resume). Everything random in training (batch sampler, dropout) lives in
//! [`TrainState`], saved in every checkpoint, so a resumed run continues bit for bit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use data::{BatchSampler, SamplerState, Tokenizer};
use model::checkpoint::{Checkpoint, CheckpointError};
use model::{Gpt, GptConfig};
use plot::tensorboard::EventWriter;
use plot::MetricRow;
use serde::{Deserialize, Serialize};
use tensor::{Grads, Rng};

use crate::config::Config;
use crate::console::{self, preflight, Console, StepReport, Verbosity};
use crate::corpus::{bits_per_byte, bytes_per_token, open_corpus, Corpus};
use crate::eval::{evaluate, prompt_tokens, sample_text, show_evaluation, split_loss, SplitLoss};
use crate::optim::{clip_scale, first_non_finite, grad_norm, AdamW, AdamWConfig};
use crate::rundir::{fresh_run_dir, write_atomic, MetricsLog};
use crate::schedule::learning_rate;
use crate::TrainError;

/// How a run starts.
#[derive(Clone, Debug)]
pub enum Start {
    /// A new run from a loaded config; `origin` names it in messages (the file path).
    Fresh { config: Box<Config>, origin: String },
    /// Continue `runs/NAME` from its `latest.ckpt`; `overrides` may only raise
    /// `train.max_iters`.
    Resume { run_dir: PathBuf, overrides: Vec<String> },
}

/// What to run and how much to print.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub start: Start,
    pub verbosity: Verbosity,
    /// Install the Ctrl-C handler (the binary does; tests use a STOP file instead).
    pub handle_ctrl_c: bool,
}

/// What a finished (or stopped) run reports.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub run_dir: PathBuf,
    /// Optimizer steps completed, counting earlier sessions of a resumed run.
    pub step: u64,
    /// The loss of each step run in this session, in order.
    pub losses: Vec<f32>,
    /// The last evaluation's validation loss.
    pub val_loss: Option<f64>,
    pub best_val_loss: Option<f64>,
    /// Stopped early by Ctrl-C or a STOP file (latest.ckpt holds the state to resume).
    pub stopped: bool,
    /// Wall time of this session.
    pub wall_s: f64,
    /// Training tokens per second over this session.
    pub tok_per_s: f64,
}

/// The trainer's part of a checkpoint (bincode inside `Checkpoint::train_state`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainState {
    pub dropout_rng: Rng,
    pub train_sampler: SamplerState,
    pub best_val_loss: Option<f64>,
    pub tokens_seen: u64,
    pub elapsed_s: f64,
    pub smoothed_loss: Option<f64>,
    /// `metrics.jsonl` up to this checkpoint (JSON lines: `MetricRow` skips empty fields,
    /// which bincode cannot read back).
    pub metrics_jsonl: String,
}

/// Set by Ctrl-C; the loop finishes its step, saves and exits.
static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// Whether Ctrl-C asked the run to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

fn install_ctrl_c() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // The handler only raises a flag: the loop saves between steps, so a second
        // Ctrl-C during the save cannot tear the checkpoint.
        let result = ctrlc::set_handler(|| {
            STOP.store(true, Ordering::SeqCst);
            if SIGNALS.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("\nCtrl-C: finishing this step, then saving latest.ckpt ...");
            } else {
                eprintln!("\nAlready stopping: saving latest.ckpt, please wait.");
            }
        });
        if let Err(e) = result {
            eprintln!("warning: cannot install the Ctrl-C handler ({e}); use a STOP file to stop cleanly");
        }
    });
}

/// Refuses a checkpoint whose model or tokenizer is not the one `config` and its dataset
/// describe, naming the checkpoint file.
fn check_checkpoint(
    ckpt: &Checkpoint,
    ckpt_path: &Path,
    gpt_config: &GptConfig,
    config: &Config,
    tokenizer: &dyn Tokenizer,
) -> Result<(), TrainError> {
    let bad = |why: String| Err(TrainError::Message(format!("{}: {why}", ckpt_path.display())));
    let (a, b) = (&ckpt.model, gpt_config);
    if a != b {
        let fields = [
            ("the vocabulary size", a.vocab_size.to_string(), b.vocab_size.to_string()),
            ("model.block_size", a.block_size.to_string(), b.block_size.to_string()),
            ("model.n_layer", a.n_layer.to_string(), b.n_layer.to_string()),
            ("model.n_head", a.n_head.to_string(), b.n_head.to_string()),
            ("model.n_embd", a.n_embd.to_string(), b.n_embd.to_string()),
            ("model.dropout", a.dropout.to_string(), b.dropout.to_string()),
            ("model.bias", a.bias.to_string(), b.bias.to_string()),
        ];
        let differ: Vec<String> = fields
            .iter()
            .filter(|(_, ckpt, config)| ckpt != config)
            .map(|(field, ckpt, config)| {
                format!("{field} is {ckpt} in the checkpoint, {config} in the config")
            })
            .collect();
        let detail = if differ.is_empty() { format!("{a:?} against {b:?}") } else { differ.join("; ") };
        return bad(format!(
            "the checkpoint is of another model ({detail}); use the run folder's own config.toml and dataset"
        ));
    }
    if ckpt.tokenizer != tokenizer.to_bytes() {
        return bad(format!(
            "the tokenizer of {} differs from the checkpoint's; use the dataset the run started with",
            config.data.dataset.display()
        ));
    }
    Ok(())
}

/// Sizes the global thread pool to `train.threads` (0 leaves rayon's default: every core).
/// A pool that already exists (a second run in one process) is kept as it is.
fn use_threads(config: &Config, origin: &str) -> Result<(), TrainError> {
    let threads = config.train.threads;
    if threads == 0 {
        return Ok(());
    }
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build_global() {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("already") => Ok(()),
        Err(e) => Err(TrainError::Config(format!(
            "{origin}: train.threads = {threads}: cannot start that many threads ({e}); use fewer, or 0 for one per core"
        ))),
    }
}

/// The config.toml of a run folder given to `flag` (--resume, --evaluate), or why it is not one.
fn run_folder_config(run_dir: &Path, flag: &str) -> Result<PathBuf, TrainError> {
    let path = run_dir.join("config.toml");
    if !path.is_file() {
        return Err(TrainError::Message(format!(
            "{}: not a run folder (it has no config.toml); {flag} takes a folder that train wrote, runs/NAME",
            run_dir.display()
        )));
    }
    Ok(path)
}

/// What training and evaluating a config both start with: the config checked, the thread
/// pool sized, the dataset opened (prepared first if need be), and the model's shape.
fn open_run(config: &Config, origin: &str, verbose: bool) -> Result<(Corpus, GptConfig), TrainError> {
    config.validate(origin)?;
    use_threads(config, origin)?;
    let corpus = open_corpus(config, origin, verbose)?;
    let gpt_config = model_config(config, corpus.tokenizer.vocab_size());
    gpt_config.validate().map_err(|e| TrainError::Config(format!("{origin}: {e}")))?;
    Ok((corpus, gpt_config))
}

fn model_config(config: &Config, vocab_size: usize) -> GptConfig {
    let m = &config.model;
    GptConfig {
        vocab_size,
        block_size: m.block_size,
        n_layer: m.n_layer,
        n_head: m.n_head,
        n_embd: m.n_embd,
        dropout: m.dropout,
        bias: m.bias,
    }
}

/// The model a fresh run of `config` starts from and the sampler of its training batches,
/// as [`run`] makes them: with these, another implementation can be run step by step beside
/// this one (`cargo run --release -p quill-train --example export_start`, then
/// `scripts/lockstep_pytorch.py`).
pub fn fresh_start(config: &Config, corpus: &Corpus) -> Result<(Gpt, BatchSampler), TrainError> {
    let t = &config.train;
    let gpt = Gpt::new(model_config(config, corpus.tokenizer.vocab_size()), t.seed);
    let seed = stream_seed(t.seed, STREAM_TRAIN_BATCHES);
    let sampler = BatchSampler::new(&corpus.train, t.batch_size, config.model.block_size, seed)?;
    Ok((gpt, sampler))
}

/// Seeds of the independent random streams, all derived from `train.seed`.
pub(crate) fn stream_seed(seed: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(stream)
}
const STREAM_TRAIN_BATCHES: u64 = 1;
const STREAM_DROPOUT: u64 = 2;
pub(crate) const STREAM_EVAL_TRAIN: u64 = 3;
pub(crate) const STREAM_EVAL_VAL: u64 = 4;
pub(crate) const STREAM_SAMPLE: u64 = 5;

/// Runs (or resumes) training to `train.max_iters`, a Ctrl-C or a STOP file.
pub fn run(opts: &RunOptions) -> Result<RunSummary, TrainError> {
    let session_start = Instant::now();
    let verbose = opts.verbosity == Verbosity::Normal;
    let say = |text: &str| {
        if verbose {
            println!("{text}");
        }
    };

    // Config and checkpoint: everything is checked before anything is written.
    let (config, origin, resume) = match &opts.start {
        Start::Fresh { config, origin } => ((**config).clone(), origin.clone(), None),
        Start::Resume { run_dir, overrides } => {
            for o in overrides {
                if !o.trim_start().starts_with("train.max_iters") {
                    return Err(TrainError::Config(format!(
                        "--set {o}: only train.max_iters can change when resuming (to extend the run); \
                         start a new run to change anything else"
                    )));
                }
            }
            let path = run_folder_config(run_dir, "--resume")?;
            let config = Config::load(&path, overrides)?;
            let ckpt_path = run_dir.join("latest.ckpt");
            if !ckpt_path.exists() {
                return Err(TrainError::Message(format!(
                    "{}: not found; the run saved no checkpoint yet, so there is nothing to resume",
                    ckpt_path.display()
                )));
            }
            let ckpt = Checkpoint::load(&ckpt_path).map_err(|e| {
                // Resume reads latest.ckpt only; say so when the run's other checkpoint is sound.
                let best = matches!(e, CheckpointError::Corrupted { .. })
                    .then(|| Checkpoint::load(&run_dir.join("best.ckpt")).ok())
                    .flatten();
                match best {
                    Some(best) => TrainError::Message(format!(
                        "{e}; best.ckpt (step {}) is intact: to continue from it, copy it over latest.ckpt",
                        best.step
                    )),
                    None => e.into(),
                }
            })?;
            (config, path.display().to_string(), Some((run_dir.clone(), ckpt)))
        }
    };
    let (corpus, gpt_config) = open_run(&config, &origin, verbose)?;
    if config.train.sample_tokens > 0 && !config.train.sample_prompt.is_empty() {
        if let Err(e) = corpus.tokenizer.encode(&config.train.sample_prompt) {
            return Err(TrainError::Config(format!(
                "{origin}: train.sample_prompt: {e}; use text the dataset's tokenizer knows, or \"\" to start from a newline"
            )));
        }
    }

    let (t, o) = (&config.train, &config.optim);
    let (batch_size, block_size, accum) =
        (t.batch_size, config.model.block_size, t.gradient_accumulation_steps);
    let (mut gpt, mut sampler) = fresh_start(&config, &corpus)?;
    let mut opt = AdamW::new(
        &gpt.tape,
        AdamWConfig {
            beta1: o.beta1 as f32,
            beta2: o.beta2 as f32,
            eps: 1e-8,
            weight_decay: o.weight_decay as f32,
        },
    );
    let mut state = TrainState {
        dropout_rng: Rng::seeded(stream_seed(t.seed, STREAM_DROPOUT)),
        train_sampler: sampler.state(),
        best_val_loss: None,
        tokens_seen: 0,
        elapsed_s: 0.0,
        smoothed_loss: None,
        metrics_jsonl: String::new(),
    };
    let mut step = 0u64;
    let run_dir = match resume {
        Some((run_dir, ckpt)) => {
            let ckpt_path = run_dir.join("latest.ckpt");
            let bad = |why: String| TrainError::Message(format!("{}: {why}", ckpt_path.display()));
            check_checkpoint(&ckpt, &ckpt_path, &gpt_config, &config, corpus.tokenizer.as_ref())?;
            ckpt.load_into(&mut gpt)?;
            let opt_state = ckpt.optimizer.as_ref().ok_or_else(|| bad("holds no optimizer state".into()))?;
            opt.restore(opt_state).map_err(bad)?;
            state = bincode::deserialize(&ckpt.train_state)
                .map_err(|e| bad(format!("unreadable trainer state ({e})")))?;
            sampler.restore(state.train_sampler.clone());
            step = ckpt.step;
            if step >= t.max_iters {
                // Nothing to run: refuse before anything in the folder is rewritten.
                return Err(TrainError::Config(format!(
                    "{} is already at step {step} of train.max_iters = {}; to train on, extend it: --resume {} \
                     --set train.max_iters=N with N > {step}",
                    run_dir.display(),
                    t.max_iters,
                    run_dir.display()
                )));
            }
            if matches!(&opts.start, Start::Resume { overrides, .. } if !overrides.is_empty()) {
                // The run folder's config stays the resolved one: max_iters as extended.
                write_atomic(&run_dir.join("config.toml"), config.to_toml().as_bytes())?;
            }
            say(&format!("resuming {} at step {step} of {}", run_dir.display(), t.max_iters));
            run_dir
        }
        None => {
            let dir = fresh_run_dir(&t.out_dir, &t.name)?;
            let wanted = t.out_dir.join(&t.name);
            if dir != wanted {
                say(&format!(
                    "{} already exists (resume it with --resume {}); this run goes to {}",
                    wanted.display(),
                    wanted.display(),
                    dir.display()
                ));
            }
            write_atomic(&dir.join("config.toml"), config.to_toml().as_bytes())?;
            dir
        }
    };
    let mut rows: Vec<MetricRow> =
        state.metrics_jsonl.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut metrics = MetricsLog::create(&run_dir.join("metrics.jsonl"), &rows)?;
    let mut events = EventWriter::create(&run_dir)?;
    if opts.handle_ctrl_c {
        install_ctrl_c();
    }
    STOP.store(false, Ordering::SeqCst);
    SIGNALS.store(0, Ordering::SeqCst);

    let tokens_per_step = (batch_size * block_size * accum) as u64;
    say(&preflight(&gpt_config, batch_size, tokens_per_step, t.max_iters, &run_dir));
    let console = Console::new(t.max_iters, step, opts.verbosity);
    let mut grads = Grads::params_only();
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let mut losses = Vec::new();
    let mut last_val = None;
    let mut stopped = false;
    let elapsed_before = state.elapsed_s;
    let first_step = step;
    let loop_start = Instant::now();
    let mut window = (Instant::now(), 0u64); // tokens/s over the last log window
    let mut tok_per_s = 0.0;
    let stop_file = run_dir.join("STOP");
    let sample_prompt = prompt_tokens(corpus.tokenizer.as_ref(), &t.sample_prompt);

    while step < t.max_iters {
        let step_start = Instant::now();
        let lr = learning_rate(step, o);
        let rng = (gpt_config.dropout > 0.0).then_some(&mut state.dropout_rng);
        let mut next_batch = |inputs: &mut Vec<u32>, targets: &mut Vec<u32>| {
            sampler.next_batch(&corpus.train, inputs, targets)
        };
        // One pool task for the whole step, so that the workers stay awake from op to op. A
        // step with a non-finite loss or gradient, or a disconnected layer at step 0, is not
        // applied; the checks below report it.
        let (loss, norm, connected) = tensor::on_pool(|| {
            let loss = accumulate_gradients(
                &mut gpt,
                &mut grads,
                accum,
                (batch_size, block_size),
                rng,
                (&mut inputs, &mut targets),
                &mut next_batch,
            );
            let norm = grad_norm(&gpt.tape, &grads);
            let connected = if step == 0 { gpt.check_grads(&grads) } else { Ok(()) };
            if loss.is_finite() && norm.is_finite() && connected.is_ok() {
                opt.update(&mut gpt.tape, &grads, lr as f32, clip_scale(norm, o.grad_clip));
            }
            (loss, norm, connected)
        });
        connected.map_err(|e| {
            TrainError::Message(format!("step 0: {e}; a layer is probably not connected to the loss"))
        })?;
        if !loss.is_finite() || !norm.is_finite() {
            let culprit = first_non_finite(&gpt.tape, &grads)
                .map(|name| format!("the first parameter with a non-finite gradient is {name}"))
                .unwrap_or_else(|| "every gradient is finite".into());
            return Err(TrainError::NonFinite(format!(
                "step {}: loss {loss}, gradient norm {norm}; {culprit}. Stopped without saving: the last good \
                 checkpoint in {} is untouched. Try a lower optim.learning_rate or a grad_clip",
                step + 1,
                run_dir.display()
            )));
        }
        step += 1;
        state.tokens_seen += tokens_per_step;
        losses.push(loss as f32);
        let smoothed = state.smoothed_loss.map_or(loss, |s| 0.9 * s + 0.1 * loss);
        state.smoothed_loss = Some(smoothed);
        let step_ms = step_start.elapsed().as_secs_f64() * 1e3;

        if step == first_step + 10 && step < t.max_iters {
            let per_step = loop_start.elapsed().as_secs_f64() / 10.0;
            console.println(&format!(
                "{:.0} ms per step: about {} for the remaining {} steps (evaluations extra)",
                per_step * 1e3,
                console::duration(per_step * (t.max_iters - step) as f64),
                t.max_iters - step
            ));
        }

        let is_log = step.is_multiple_of(t.log_interval.max(1)) || step == 1;
        let is_eval = (t.eval_interval > 0 && step.is_multiple_of(t.eval_interval)) || step == t.max_iters;
        let stop = stop_requested() || stop_file.exists();
        let elapsed = elapsed_before + session_start.elapsed().as_secs_f64();
        if is_log {
            let (since, tokens_then) = window;
            tok_per_s = (state.tokens_seen - tokens_then) as f64 / since.elapsed().as_secs_f64().max(1e-9);
            window = (Instant::now(), state.tokens_seen);
        }
        let mut row = MetricRow { step, tokens: state.tokens_seen, elapsed_s: elapsed, ..Default::default() };
        if is_log || is_eval {
            row.train_loss = Some(loss);
            row.lr = Some(lr);
            row.grad_norm = Some(norm);
            row.tok_per_s = Some(tok_per_s);
            events.add_scalar("train/loss", step, loss)?;
            events.add_scalar("lr", step, lr)?;
        }
        let mut improved = false;
        if is_eval {
            let eval_train = evaluate(
                &mut gpt,
                &corpus.train,
                &config,
                stream_seed(t.seed, STREAM_EVAL_TRAIN),
                &mut inputs,
                &mut targets,
            )?;
            let val = evaluate(
                &mut gpt,
                &corpus.val,
                &config,
                stream_seed(t.seed, STREAM_EVAL_VAL),
                &mut inputs,
                &mut targets,
            )?;
            row.eval_train_loss = Some(eval_train);
            row.val_loss = Some(val);
            row.val_bpb = Some(bits_per_byte(val, corpus.bytes_per_token));
            row.val_ppl = Some(val.exp());
            events.add_scalar("val/loss", step, val)?;
            last_val = Some(val);
            if state.best_val_loss.is_none_or(|best| val < best) {
                state.best_val_loss = Some(val);
                improved = true;
            }
        }
        if is_log || is_eval {
            metrics.append(&row)?;
            events.flush()?;
            state
                .metrics_jsonl
                .push_str(&serde_json::to_string(&row).expect("a MetricRow always serialises"));
            state.metrics_jsonl.push('\n');
            rows.push(row.clone());
        }
        let report =
            StepReport { step, loss, smoothed_loss: smoothed, val_loss: last_val, lr, step_ms, tok_per_s };
        console.step(&report, is_log);
        if is_eval {
            show_evaluation(&console, &row, improved, &rows, &run_dir);
            if verbose && t.sample_tokens > 0 {
                let text = sample_text(
                    &gpt,
                    corpus.tokenizer.as_ref(),
                    &sample_prompt,
                    t.sample_tokens,
                    t.seed,
                    step,
                );
                console.println(&format!("--- sample at step {step} ---\n{text}\n---"));
            }
        }

        let save_latest = step == t.max_iters
            || stop
            || (t.checkpoint_interval > 0 && step.is_multiple_of(t.checkpoint_interval))
            || (t.checkpoint_interval == 0 && is_eval);
        if save_latest || improved {
            state.train_sampler = sampler.state();
            state.elapsed_s = elapsed;
            let ckpt = checkpoint(&gpt, &opt, &config, corpus.tokenizer.as_ref(), step, &state);
            let (latest, best) = (run_dir.join("latest.ckpt"), run_dir.join("best.ckpt"));
            let mut names: Vec<&Path> = Vec::with_capacity(2);
            if save_latest {
                names.push(&latest);
            }
            if improved {
                names.push(&best);
            }
            ckpt.save_as(&names)?;
        }
        if stop {
            if stop_file.exists() {
                // Removed, so that resuming does not stop again at once.
                let _ = std::fs::remove_file(&stop_file);
            }
            console.finish();
            say(&format!(
                "stopped at step {step}; saved {}. Continue with: train --resume {}",
                run_dir.join("latest.ckpt").display(),
                run_dir.display()
            ));
            stopped = true;
            break;
        }
    }
    console.finish();
    let wall_s = session_start.elapsed().as_secs_f64();
    let trained_s = loop_start.elapsed().as_secs_f64();
    let summary = RunSummary {
        run_dir: run_dir.clone(),
        step,
        val_loss: last_val,
        best_val_loss: state.best_val_loss,
        stopped,
        wall_s,
        tok_per_s: ((step - first_step) * tokens_per_step) as f64 / trained_s.max(1e-9),
        losses,
    };
    if !stopped && step > first_step {
        say(&format!(
            "done: step {step}, val loss {}, best {}, {} wall, {}; checkpoints in {}",
            summary.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
            summary.best_val_loss.map_or("-".into(), |v| format!("{v:.4}")),
            console::duration(wall_s),
            console::tokens_per_second(summary.tok_per_s),
            run_dir.display()
        ));
    }
    Ok(summary)
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
    let (corpus, gpt_config) = open_run(&config, &origin, verbose)?;
    let default_ckpt =
        || ["best.ckpt", "latest.ckpt"].map(|f| run_dir.join(f)).into_iter().find(|p| p.exists());
    let Some(ckpt_path) = chosen_ckpt.or_else(default_ckpt) else {
        return Err(TrainError::Message(format!(
            "{}: holds neither best.ckpt nor latest.ckpt; the run saved no checkpoint to evaluate",
            run_dir.display()
        )));
    };
    let ckpt = Checkpoint::load(&ckpt_path)?;
    check_checkpoint(&ckpt, &ckpt_path, &gpt_config, &config, corpus.tokenizer.as_ref())?;
    let mut gpt = ckpt.to_model()?;
    let (b, t) = (config.train.batch_size, config.model.block_size);
    if verbose {
        println!("{} (step {}), every {t}-token window:", ckpt_path.display(), ckpt.step);
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

/// Everything needed to sample from the model or to resume this run exactly.
fn checkpoint(
    gpt: &Gpt,
    opt: &AdamW,
    config: &Config,
    tokenizer: &dyn Tokenizer,
    step: u64,
    state: &TrainState,
) -> Checkpoint {
    Checkpoint {
        model: gpt.config.clone(),
        run_config: config.to_toml(),
        tokenizer: tokenizer.to_bytes(),
        params: Checkpoint::params_of(gpt),
        optimizer: Some(opt.state()),
        step,
        train_state: bincode::serialize(state).expect("the trainer state always serialises"),
    }
}

/// One optimizer step's gradient: zeroes the parameter gradients, then runs `accum` micro-batches of
/// (b, t) tokens, each filled by `next_batch`, seeding each backward with 1/accum so that
/// `grads` ends up holding the gradient of the mean loss. Returns that mean loss.
pub fn accumulate_gradients(
    gpt: &mut Gpt,
    grads: &mut Grads,
    accum: usize,
    (b, t): (usize, usize),
    mut dropout_rng: Option<&mut Rng>,
    (inputs, targets): (&mut Vec<u32>, &mut Vec<u32>),
    next_batch: &mut dyn FnMut(&mut Vec<u32>, &mut Vec<u32>),
) -> f64 {
    // Only parameter gradients accumulate; each backward starts the activation gradients
    // afresh.
    grads.zero();
    let mut loss_sum = 0.0f64;
    for _ in 0..accum {
        next_batch(inputs, targets);
        let out = gpt.forward(inputs, Some(targets), b, t, dropout_rng.as_deref_mut());
        let loss = out.loss.expect("a forward with targets returns a loss");
        loss_sum += gpt.tape.data(loss)[0] as f64;
        gpt.tape.backward_from(loss, &[1.0 / accum as f32], grads);
    }
    loss_sum / accum as f64
}
