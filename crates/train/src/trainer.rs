//! The training run: start (fresh or resumed, [`crate::start`]), then loop: one optimizer
//! step, evaluate, log, save, and stop at max_iters, on Ctrl-C or on a `STOP` file in the
//! run folder.
//!
//! On several ranks (`mpirun -np N train ...`, [`crate::parallel`]) every rank runs this
//! same loop on its share of each step's micro-batches; rank 0 alone writes and prints.
//!
//! Evaluation uses a fixed set of random windows: at every evaluation the eval samplers
//! start again from the same seeds, so each evaluation sees the same `eval_iters` batches
//! of each split (comparable from one evaluation to the next, and nothing to save for
//! resume). Everything random in training (batch sampler, dropout) lives in
//! [`TrainState`], saved in every checkpoint, so a resumed run continues bit for bit.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use data::{BatchSampler, TokenFile, Tokenizer};
use model::checkpoint::{Checkpoint, OptimizerState};
use model::Gpt;
use plot::tensorboard::EventWriter;
use plot::MetricRow;
use tensor::{Grads, Rng};

use crate::config::Config;
use crate::console::{self, preflight, Console, StepReport, Verbosity};
use crate::corpus::{bits_per_byte, Corpus};
use crate::eval::{self, prompt_tokens, sample_text, show_evaluation};
use crate::optim::{clip_scale, first_non_finite, LearningRates, Optimizer};
use crate::parallel::{self, DataParallel};
use crate::rundir::MetricsLog;
use crate::schedule::{learning_rate, muon_learning_rate};
use crate::seeds::{stream_seed, Stream};
use crate::start::{start_on, Start, Started, TrainState};
use crate::world::World;
use crate::TrainError;

/// What to run and how much to print.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub start: Start,
    pub verbosity: Verbosity,
    /// Install the handler of Ctrl-C, SIGTERM and SIGHUP (the binary does; tests use a STOP
    /// file instead).
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

/// Set by Ctrl-C, SIGTERM or SIGHUP; the loop finishes its step, saves and exits.
static STOP: AtomicBool = AtomicBool::new(false);
static SIGNALS: AtomicUsize = AtomicUsize::new(0);
/// While latest.ckpt is being written: a second signal then waits for the write.
static SAVING: AtomicBool = AtomicBool::new(false);
/// The step of the last checkpoint this run has (0 when none yet), for the sentence a
/// second signal prints.
static LAST_SAVED: AtomicU64 = AtomicU64::new(0);
/// The run folder, for the same sentence.
static RUN_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
/// Whether the signal handler may print: on rank 0 only (the other ranks stop silently).
static SIGNAL_SAYS: AtomicBool = AtomicBool::new(true);

/// Whether Ctrl-C (or SIGTERM, SIGHUP) asked the run to stop.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Installs the handler of Ctrl-C, SIGTERM and SIGHUP (what `kill`, `docker stop`, Slurm
/// and `timeout` send, and a closed terminal). The first signal only raises a flag: the
/// loop saves between steps, so the checkpoint is never torn. A second one stops the
/// process at once, unless latest.ckpt is being written (a write is short; the one after
/// that stops it anyway, the previous checkpoint intact).
fn install_ctrl_c() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let result = ctrlc::set_handler(|| {
            STOP.store(true, Ordering::SeqCst);
            let count = SIGNALS.fetch_add(1, Ordering::SeqCst);
            if count < 2 && !SIGNAL_SAYS.load(Ordering::SeqCst) {
                if count == 1 && !SAVING.load(Ordering::SeqCst) {
                    std::process::exit(130);
                }
            } else if count == 0 {
                eprintln!(
                    "\nStop requested (Ctrl-C or SIGTERM): finishing this step, then saving latest.ckpt; \
                     send it again to stop at once without saving."
                );
            } else if count == 1 && SAVING.load(Ordering::SeqCst) {
                eprintln!("\nSaving latest.ckpt, please wait (once more stops at once, keeping the previous checkpoint).");
            } else {
                eprintln!("\n{}", abandoned_sentence());
                std::process::exit(130);
            }
        });
        if let Err(e) = result {
            eprintln!("warning: cannot install the Ctrl-C handler ({e}); use a STOP file to stop cleanly");
        }
    });
}

/// What a second signal loses: the steps since the last checkpoint.
fn abandoned_sentence() -> String {
    let run_dir = RUN_DIR.lock().ok().and_then(|dir| dir.clone());
    let run_dir = run_dir.map_or_else(|| "the run folder".to_string(), |d| d.display().to_string());
    match LAST_SAVED.load(Ordering::SeqCst) {
        0 => format!(
            "Stopped without saving: no checkpoint was written yet, so this run's steps are lost; start it again (or delete {run_dir})."
        ),
        step => format!(
            "Stopped without saving: the steps after step {step} (the last checkpoint) are lost. Continue from it with: train --resume {run_dir}"
        ),
    }
}

/// Runs (or resumes) training to `train.max_iters`, a Ctrl-C or a STOP file.
pub fn run(opts: &RunOptions) -> Result<RunSummary, TrainError> {
    run_with(opts, &World::single())
}

/// [`run`] as one rank of `world`: every rank calls it, and they train one run together.
pub fn run_with(opts: &RunOptions, world: &World) -> Result<RunSummary, TrainError> {
    let mut run = Run::start(opts, world)?;
    while run.step < run.config.train.max_iters {
        // An evaluation step's metrics row holds its losses, so it is evaluated before it
        // is logged.
        let done = run.step()?;
        let evaluation = run.evaluate()?;
        run.log(&done, evaluation.as_ref())?;
        let stop = run.stop_asked();
        run.save(&done, evaluation.as_ref(), stop)?;
        if stop {
            run.stop();
            break;
        }
    }
    Ok(run.finish())
}

/// A run in progress: the model and everything the loop reads and changes.
struct Run<'w> {
    /// The ranks of the run, this rank's share of a step, and the gradient sum.
    parallel: DataParallel<'w>,
    config: Config,
    corpus: Corpus,
    run_dir: PathBuf,
    gpt: Gpt,
    opt: Optimizer,
    grads: Grads,
    sampler: BatchSampler,
    /// Everything a checkpoint keeps besides the weights and the optimizer.
    state: TrainState,
    /// Optimizer steps done, counting earlier sessions.
    step: u64,
    /// Buffers of a batch's token ids, reused from step to step.
    inputs: Vec<u32>,
    targets: Vec<u32>,

    // Where the run reports.
    verbose: bool,
    console: Console,
    /// metrics.jsonl and the TensorBoard events, on rank 0 (none on the other ranks).
    logs: Option<(MetricsLog, EventWriter)>,
    /// The rows of metrics.jsonl so far, for the loss chart.
    rows: Vec<MetricRow>,
    sample_prompt: Vec<u32>,
    stop_file: PathBuf,

    // This session.
    session_start: Instant,
    /// The step this session started at, and when.
    first_step: u64,
    loop_start: Instant,
    /// Training time of the earlier sessions.
    elapsed_before: f64,
    losses: Vec<f32>,
    last_val: Option<f64>,
    /// Tokens per second over the last log window, which started at `window`.
    tok_per_s: f64,
    window: (Instant, u64),
    stopped: bool,
    /// Seconds this session's steps took, and the part spent summing across ranks.
    step_s: f64,
    sync_s: f64,
}

/// What one optimizer step did.
struct StepDone {
    loss: f64,
    grad_norm: f64,
    lr: f64,
    smoothed_loss: f64,
    ms: f64,
    /// Of which the sum across ranks (0 on one rank).
    sync_ms: f64,
    finished: Instant,
}

/// The losses of an evaluation step.
struct Evaluation {
    train: f64,
    val: f64,
    /// The lowest val loss so far.
    improved: bool,
}

impl<'w> Run<'w> {
    /// The run as [`start_on`] leaves it, with its logs opened (a resumed run's metrics.jsonl
    /// and event files cut to the steps its checkpoint knows, stale temporary files removed), the Ctrl-C
    /// handler in place and the plan printed.
    fn start(opts: &RunOptions, world: &'w World) -> Result<Run<'w>, TrainError> {
        let session_start = Instant::now();
        let verbose = opts.verbosity == Verbosity::Normal && world.is_root();
        let Started { config, corpus, gpt, mut opt, sampler, state, step, run_dir, memory } =
            start_on(world, &opts.start, verbose)?;
        let parallel = DataParallel::new(world, &gpt.tape, config.train.shard_optimizer)?;
        if parallel.sharded {
            opt.adamw.keep_only(parallel.owned());
        }
        let rows: Vec<MetricRow> =
            state.metrics_jsonl.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let logs = if world.is_root() {
            sweep_temporaries(&run_dir, verbose)?;
            let metrics = MetricsLog::create(&run_dir.join("metrics.jsonl"), &rows)?;
            // Like metrics.jsonl, the event files keep only the steps the checkpoint knows.
            plot::tensorboard::truncate_events(&run_dir, step)?;
            Some((metrics, EventWriter::create(&run_dir)?))
        } else {
            None
        };
        SIGNAL_SAYS.store(world.is_root(), Ordering::SeqCst);
        if opts.handle_ctrl_c {
            install_ctrl_c();
        }
        STOP.store(false, Ordering::SeqCst);
        SIGNALS.store(0, Ordering::SeqCst);
        LAST_SAVED.store(step, Ordering::SeqCst);
        if let Ok(mut dir) = RUN_DIR.lock() {
            *dir = Some(run_dir.clone());
        }

        let t = &config.train;
        if verbose {
            let tokens = tokens_per_step(&config);
            println!("{}", preflight(&gpt.config, &memory, tokens, t.max_iters, &run_dir));
        }
        let verbosity = if world.is_root() { opts.verbosity } else { Verbosity::Quiet };
        Ok(Run {
            parallel,
            console: Console::new(t.max_iters, step, verbosity),
            sample_prompt: prompt_tokens(corpus.tokenizer.as_ref(), &t.sample_prompt),
            stop_file: run_dir.join("STOP"),
            elapsed_before: state.elapsed_s,
            first_step: step,
            loop_start: Instant::now(),
            window: (Instant::now(), 0),
            config,
            corpus,
            run_dir,
            gpt,
            opt,
            grads: Grads::params_only(),
            sampler,
            state,
            step,
            inputs: Vec::new(),
            targets: Vec::new(),
            verbose,
            logs,
            rows,
            session_start,
            losses: Vec::new(),
            last_val: None,
            tok_per_s: 0.0,
            stopped: false,
            step_s: 0.0,
            sync_s: 0.0,
        })
    }

    /// One optimizer step: this rank's micro-batches' gradients, their sum over the ranks,
    /// clipping and the update. A step with a non-finite loss or gradient, or a
    /// disconnected layer at step 0, is not applied: it stops the run with an error,
    /// leaving the last checkpoint as it was.
    fn step(&mut self) -> Result<StepDone, TrainError> {
        let started = Instant::now();
        parallel::injected_fault(self.parallel.world, self.step + 1)?;
        let (t, o) = (&self.config.train, &self.config.optim);
        let (step, lr) = (self.step, learning_rate(self.step, o));
        let rates = LearningRates { adamw: lr as f32, muon: muon_learning_rate(step, o) as f32 };
        let batch = (t.batch_size, self.config.model.block_size);
        let accum = t.gradient_accumulation_steps;
        let mine = self.parallel.micro_batches(accum);
        let rng = (self.gpt.config.dropout > 0.0).then_some(&mut self.state.dropout_rng);
        let (sampler, train) = (&mut self.sampler, &self.corpus.train);
        let mut next_batch =
            |inputs: &mut Vec<u32>, targets: &mut Vec<u32>| sampler.next_batch(train, inputs, targets);
        let (gpt, grads) = (&mut self.gpt, &mut self.grads);
        let buffers = (&mut self.inputs, &mut self.targets);
        // One pool task for the micro-batches, so that the workers stay awake from op to op.
        let (loss_sum, connected) = tensor::on_pool(|| {
            let loss_sum = accumulate_share(gpt, grads, accum, mine, batch, rng, buffers, &mut next_batch);
            let connected = if step == 0 { gpt.check_grads(grads) } else { Ok(()) };
            (loss_sum, connected)
        });
        connected.map_err(|detail| TrainError::Disconnected { detail })?;
        let sync_started = Instant::now();
        let loss = self.parallel.world.sum_in_rank_order(loss_sum) / accum as f64;
        let norm = self.parallel.sum_gradients(&self.gpt.tape, &mut self.grads);
        let mut sync_s = sync_started.elapsed().as_secs_f64();
        if !loss.is_finite() || !norm.is_finite() {
            return Err(TrainError::NonFinite {
                step: step + 1,
                loss,
                grad_norm: norm,
                parameter: first_non_finite(&self.gpt.tape, &self.grads),
                run_dir: self.run_dir.clone(),
            });
        }
        let (gpt, grads, opt) = (&mut self.gpt, &self.grads, &mut self.opt);
        tensor::on_pool(|| opt.update(&mut gpt.tape, grads, rates, clip_scale(norm, o.grad_clip)));
        let share_started = Instant::now();
        self.parallel.share_weights(&mut self.gpt.tape);
        sync_s += share_started.elapsed().as_secs_f64();
        self.step += 1;
        self.state.tokens_seen = self.state.tokens_seen.saturating_add(tokens_per_step(&self.config));
        self.losses.push(loss as f32);
        let smoothed_loss = self.state.smoothed_loss.map_or(loss, |s| 0.9 * s + 0.1 * loss);
        self.state.smoothed_loss = Some(smoothed_loss);
        let seconds = started.elapsed().as_secs_f64();
        self.step_s += seconds;
        self.sync_s += sync_s;
        Ok(StepDone {
            loss,
            grad_norm: norm,
            lr,
            smoothed_loss,
            ms: seconds * 1e3,
            sync_ms: sync_s * 1e3,
            finished: Instant::now(),
        })
    }

    /// At an evaluation step (every eval_interval steps, and the last), the mean loss of
    /// each split over its fixed batches; a val loss below the best so far becomes the best.
    fn evaluate(&mut self) -> Result<Option<Evaluation>, TrainError> {
        let t = &self.config.train;
        let is_eval =
            (t.eval_interval > 0 && self.step.is_multiple_of(t.eval_interval)) || self.step == t.max_iters;
        if !is_eval {
            return Ok(None);
        }
        let world = self.parallel.world;
        let mut loss_of = |file: &TokenFile, stream: Stream| {
            let seed = stream_seed(t.seed, stream);
            let buffers = (&mut self.inputs, &mut self.targets);
            eval::evaluate(&mut self.gpt, file, &self.config, seed, buffers, world)
        };
        let train = loss_of(&self.corpus.train, Stream::EvalTrain)?;
        let val = loss_of(&self.corpus.val, Stream::EvalVal)?;
        self.last_val = Some(val);
        let improved = self.state.best_val_loss.is_none_or(|best| val < best);
        if improved {
            self.state.best_val_loss = Some(val);
        }
        Ok(Some(Evaluation { train, val, improved }))
    }

    /// Every log_interval steps (and the first) and at evaluations, a row of metrics.jsonl
    /// and the scalars for TensorBoard; the console's progress line; at evaluations, the
    /// losses with the loss chart and a sample of text. On rank 0 only: the other ranks
    /// keep no logs.
    fn log(&mut self, done: &StepDone, evaluation: Option<&Evaluation>) -> Result<(), TrainError> {
        let elapsed_s = self.elapsed_at(done.finished);
        let Some((metrics, events)) = self.logs.as_mut() else {
            return Ok(());
        };
        let (step, t) = (self.step, &self.config.train);
        if step == self.first_step + 10 && step < t.max_iters {
            let per_step = (done.finished - self.loop_start).as_secs_f64() / 10.0;
            self.console.println(&format!(
                "{:.0} ms per step: about {} for the remaining {} steps (evaluations extra)",
                per_step * 1e3,
                console::duration(per_step * (t.max_iters - step) as f64),
                t.max_iters - step
            ));
        }
        let is_log = step.is_multiple_of(t.log_interval.max(1)) || step == 1;
        if is_log {
            let (since, tokens_then) = self.window;
            let seconds = (done.finished - since).as_secs_f64().max(1e-9);
            self.tok_per_s = (self.state.tokens_seen - tokens_then) as f64 / seconds;
            self.window = (done.finished, self.state.tokens_seen);
        }
        let mut row = MetricRow { step, tokens: self.state.tokens_seen, elapsed_s, ..Default::default() };
        if is_log || evaluation.is_some() {
            row.train_loss = Some(done.loss);
            row.lr = Some(done.lr);
            row.grad_norm = Some(done.grad_norm);
            row.tok_per_s = Some(self.tok_per_s);
            row.sync_ms = (self.parallel.world.size() > 1).then_some(done.sync_ms);
            events.add_scalar("train/loss", step, done.loss)?;
            events.add_scalar("lr", step, done.lr)?;
        }
        if let Some(e) = evaluation {
            row.eval_train_loss = Some(e.train);
            row.val_loss = Some(e.val);
            row.val_bpb = Some(bits_per_byte(e.val, self.corpus.bytes_per_token));
            row.val_ppl = Some(e.val.exp());
            events.add_scalar("val/loss", step, e.val)?;
        }
        if is_log || evaluation.is_some() {
            metrics.append(&row)?;
            events.flush()?;
            let line = serde_json::to_string(&row).expect("a MetricRow always serialises");
            self.state.metrics_jsonl.push_str(&line);
            self.state.metrics_jsonl.push('\n');
            self.rows.push(row.clone());
        }
        let report = StepReport {
            step,
            loss: done.loss,
            smoothed_loss: done.smoothed_loss,
            val_loss: self.last_val,
            lr: done.lr,
            step_ms: done.ms,
            tok_per_s: self.tok_per_s,
        };
        self.console.step(&report, is_log);
        if let Some(e) = evaluation {
            show_evaluation(&self.console, &row, e.improved, &self.rows, &self.run_dir);
            if self.verbose && t.sample_tokens > 0 {
                let tokenizer = self.corpus.tokenizer.as_ref();
                let text =
                    sample_text(&self.gpt, tokenizer, &self.sample_prompt, t.sample_tokens, t.seed, step);
                self.console.println(&format!("--- sample at step {step} ---\n{text}\n---"));
            }
        }
        Ok(())
    }

    /// Training time of the whole run (all sessions) at `instant`.
    fn elapsed_at(&self, instant: Instant) -> f64 {
        self.elapsed_before + (instant - self.session_start).as_secs_f64()
    }

    /// Whether Ctrl-C or a STOP file in the run folder (rank 0's) asks the run to stop: the
    /// ranks agree, so that they all stop after the same step.
    fn stop_asked(&self) -> bool {
        let world = self.parallel.world;
        world.any(stop_requested() || (world.is_root() && self.stop_file.exists()))
    }

    /// Writes latest.ckpt at the last step, on a stop, and every checkpoint_interval steps
    /// (at evaluations when that is 0), and best.ckpt when the val loss improved: one
    /// checkpoint, written once, under both names when both are due; by rank 0, once every
    /// rank's optimizer shard has reached it.
    fn save(
        &mut self,
        done: &StepDone,
        evaluation: Option<&Evaluation>,
        stop: bool,
    ) -> Result<(), TrainError> {
        let (step, t) = (self.step, &self.config.train);
        let save_latest = step == t.max_iters
            || stop
            || (t.checkpoint_interval > 0 && step.is_multiple_of(t.checkpoint_interval))
            || (t.checkpoint_interval == 0 && evaluation.is_some());
        let improved = evaluation.is_some_and(|e| e.improved);
        if !save_latest && !improved {
            return Ok(());
        }
        let optimizer = self.parallel.optimizer_state(&self.opt);
        if !self.parallel.world.is_root() {
            return Ok(());
        }
        self.state.train_sampler = self.sampler.state();
        self.state.elapsed_s = self.elapsed_at(done.finished);
        let tokenizer = self.corpus.tokenizer.as_ref();
        let ckpt = checkpoint(&self.gpt, optimizer, &self.config, tokenizer, step, &self.state);
        let (latest, best) = (self.run_dir.join("latest.ckpt"), self.run_dir.join("best.ckpt"));
        let mut names: Vec<&Path> = Vec::with_capacity(2);
        if save_latest {
            names.push(&latest);
        }
        if improved {
            names.push(&best);
        }
        SAVING.store(true, Ordering::SeqCst);
        let saved = ckpt.save_as(&names);
        SAVING.store(false, Ordering::SeqCst);
        saved?;
        if save_latest {
            LAST_SAVED.store(step, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Ends the session early, its checkpoint saved: removes the STOP file (so that resuming
    /// does not stop again at once) and says how to continue.
    fn stop(&mut self) {
        if self.parallel.world.is_root() && self.stop_file.exists() {
            let _ = std::fs::remove_file(&self.stop_file);
        }
        self.console.finish();
        if self.verbose {
            println!(
                "stopped at step {}; saved {}. Continue with: train --resume {}",
                self.step,
                self.run_dir.join("latest.ckpt").display(),
                self.run_dir.display()
            );
        }
        self.stopped = true;
    }

    /// What the session did, printed unless it stopped early or had nothing to run.
    fn finish(self) -> RunSummary {
        self.console.finish();
        let wall_s = self.session_start.elapsed().as_secs_f64();
        let trained_s = self.loop_start.elapsed().as_secs_f64();
        let tokens = (self.step - self.first_step).saturating_mul(tokens_per_step(&self.config));
        let summary = RunSummary {
            run_dir: self.run_dir,
            step: self.step,
            val_loss: self.last_val,
            best_val_loss: self.state.best_val_loss,
            stopped: self.stopped,
            wall_s,
            tok_per_s: tokens as f64 / trained_s.max(1e-9),
            losses: self.losses,
        };
        if self.verbose && !summary.stopped && summary.step > self.first_step {
            println!(
                "done: step {}, val loss {}, best {}, {} wall, {}; checkpoints in {}",
                summary.step,
                summary.val_loss.map_or("-".into(), |v| format!("{v:.4}")),
                summary.best_val_loss.map_or("-".into(), |v| format!("{v:.4}")),
                console::duration(wall_s),
                console::tokens_per_second(summary.tok_per_s),
                summary.run_dir.display()
            );
            if summary.val_loss.is_some() {
                println!(
                    "(val loss: the mean of {} batches; the exact loss over every window: train --evaluate {})",
                    self.config.train.eval_iters,
                    summary.run_dir.display()
                );
            }
            let ranks = self.parallel.world.size();
            if ranks > 1 {
                let steps = (summary.step - self.first_step) as f64;
                println!(
                    "{ranks} ranks: the sum across ranks took {:.1} ms per step, {:.1}% of the step time",
                    self.sync_s * 1e3 / steps,
                    100.0 * self.sync_s / self.step_s.max(1e-9)
                );
            }
        }
        summary
    }
}

/// Removes the temporary files that writers killed mid-write (SIGKILL, a power cut) left
/// in the run folder: a checkpoint's is as large as the checkpoint.
fn sweep_temporaries(run_dir: &Path, verbose: bool) -> Result<(), TrainError> {
    let removed = fsio::remove_stale_temporaries(run_dir)
        .map_err(|error| TrainError::Io { path: run_dir.to_path_buf(), error })?;
    if verbose {
        for path in removed {
            println!("removed {}, left by an interrupted write", path.display());
        }
    }
    Ok(())
}

/// Tokens of one optimizer step: batch_size × block_size × gradient_accumulation_steps.
fn tokens_per_step(config: &Config) -> u64 {
    let t = &config.train;
    // Config::validate checked that the run's tokens fit in 64 bits.
    [t.batch_size, config.model.block_size, t.gradient_accumulation_steps]
        .into_iter()
        .fold(1u64, |n, x| n.saturating_mul(x as u64))
}

/// Everything needed to sample from the model or to resume this run exactly.
fn checkpoint(
    gpt: &Gpt,
    optimizer: OptimizerState,
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
        optimizer: Some(optimizer),
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
    batch: (usize, usize),
    dropout_rng: Option<&mut Rng>,
    buffers: (&mut Vec<u32>, &mut Vec<u32>),
    next_batch: &mut dyn FnMut(&mut Vec<u32>, &mut Vec<u32>),
) -> f64 {
    accumulate_share(gpt, grads, accum, 0..accum, batch, dropout_rng, buffers, next_batch) / accum as f64
}

/// One rank's part of a step's gradient: every one of the step's `accum` batches is drawn
/// (so that every rank's sampler stays where the one-process run's is), and those in
/// `mine` run forward and backward, each backward seeded with 1/accum. Returns the sum of
/// their losses.
#[allow(clippy::too_many_arguments)]
fn accumulate_share(
    gpt: &mut Gpt,
    grads: &mut Grads,
    accum: usize,
    mine: std::ops::Range<usize>,
    (b, t): (usize, usize),
    mut dropout_rng: Option<&mut Rng>,
    (inputs, targets): (&mut Vec<u32>, &mut Vec<u32>),
    next_batch: &mut dyn FnMut(&mut Vec<u32>, &mut Vec<u32>),
) -> f64 {
    // Only parameter gradients accumulate; each backward starts the activation gradients
    // afresh.
    grads.zero();
    let mut loss_sum = 0.0f64;
    for micro_batch in 0..accum {
        next_batch(inputs, targets);
        if !mine.contains(&micro_batch) {
            continue;
        }
        let out = gpt.forward(inputs, Some(targets), b, t, dropout_rng.as_deref_mut());
        let loss = out.loss.expect("a forward with targets returns a loss");
        loss_sum += gpt.tape.data(loss)[0] as f64;
        gpt.tape.backward_from(loss, &[1.0 / accum as f32], grads);
    }
    loss_sum
}
