//! Starting a run, fresh or resumed: the config checked, the thread pool sized, the dataset
//! opened (prepared first if need be), then the model, the optimizer, the batch sampler and the
//! trainer's state, either new or as `latest.ckpt` left them, and the run folder.
//! Everything is checked before anything is written. `train --evaluate` shares the opening
//! half: `open_run`, `run_folder_config` and `check_checkpoint`.

use std::path::{Path, PathBuf};

use data::{BatchSampler, Dataset, DatasetState, SamplerState, Tokenizer};
use model::budget::{format_bytes, MemoryLimit, TrainingMemory};
use model::checkpoint::{Checkpoint, CheckpointError, NamedTensor, OptimizerState};
use model::{Gpt, GptConfig};
use serde::{Deserialize, Serialize};
use tensor::Rng;

use crate::config::{Config, OptimSection, OptimizerKind};
use crate::corpus::{open_corpus, Corpus};
use crate::init_from::InitWeights;
use crate::muon::MuonConfig;
use crate::optim::{AdamWConfig, Optimizer};
use crate::rundir::{fresh_run_dir, write_atomic};
use crate::seeds::{rank_dropout_seed, stream_seed, Stream};
use crate::world::World;
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

/// A run ready for its next step: as it starts, or as its checkpoint left it.
pub(crate) struct Started {
    pub config: Config,
    pub corpus: Corpus,
    pub gpt: Gpt,
    pub opt: Optimizer,
    pub sampler: BatchSampler,
    pub state: TrainState,
    /// Optimizer steps already done: 0, or the checkpoint's step.
    pub step: u64,
    pub run_dir: PathBuf,
    /// What the run needs in memory, checked against the limit before the model was built.
    pub memory: TrainingMemory,
}

/// Checks the config (and, resuming, the checkpoint), opens the data, builds the model,
/// the optimizer and the sampler, restores them from `latest.ckpt` when resuming, and gives the
/// run its folder: a new one with the resolved config.toml, or the resumed one (its
/// config.toml rewritten when `--set` extended max_iters).
pub(crate) fn start(start: &Start, ranks: usize, verbose: bool) -> Result<Started, TrainError> {
    let say = |text: &str| {
        if verbose {
            println!("{text}");
        }
    };
    let (mut config, origin, resume) = match start {
        Start::Fresh { config, origin } => (with_absolute_data_paths(config), origin.clone(), None),
        Start::Resume { run_dir, overrides } => {
            let (config, origin, ckpt) = read_resume(run_dir, overrides)?;
            (config, origin, Some((run_dir, overrides, ckpt)))
        }
    };
    // Fine-tuning: the weights decide the model's shape (a resumed run has its own).
    let init = match (&config.model.init_from, &resume) {
        (Some(path), None) => {
            let weights = InitWeights::load(path, &origin)?;
            weights.resolve(&mut config, &origin)?;
            Some(weights)
        }
        _ => None,
    };
    let (corpus, gpt_config) = open_run(&config, &origin, verbose)?;
    check_ranks(&config, ranks, &origin)?;
    check_sample_prompt(&config, &corpus, &origin)?;
    let memory = check_training_memory(&config, &gpt_config, &origin)?;

    let (mut gpt, mut sampler) = match init {
        Some(weights) => {
            weights.check_tokenizer(&config, corpus.tokenizer.as_ref(), &origin)?;
            say(&format!("fine-tuning from {}", weights.path.display()));
            (weights.into_model(&gpt_config)?, batch_sampler(&config, &corpus)?)
        }
        None => fresh_start(&config, &corpus)?,
    };
    let mut opt = Optimizer::new(&gpt.tape, adamw_config(&config.optim), muon_config(&config.optim));
    let mut state = TrainState {
        dropout_rng: Rng::seeded(stream_seed(config.train.seed, Stream::Dropout)),
        train_sampler: sampler.state(),
        best_val_loss: None,
        tokens_seen: 0,
        elapsed_s: 0.0,
        smoothed_loss: None,
        metrics_jsonl: String::new(),
    };
    let mut step = 0;
    let (t, max_iters) = (&config.train, config.train.max_iters);
    let run_dir = match resume {
        Some((run_dir, overrides, ckpt)) => {
            let ckpt_path = run_dir.join("latest.ckpt");
            check_checkpoint(&ckpt, &ckpt_path, &gpt_config, &config, corpus.tokenizer.as_ref())?;
            state = restore(&ckpt, &ckpt_path, &mut gpt, &mut opt, &mut sampler)?;
            step = ckpt.step;
            if step >= max_iters {
                // Nothing to run: refuse before anything in the folder is rewritten.
                return Err(TrainError::RunComplete { run_dir: run_dir.clone(), step, max_iters });
            }
            if !overrides.is_empty() {
                // The run folder's config stays the resolved one: max_iters as extended.
                write_atomic(&run_dir.join("config.toml"), config.to_toml().as_bytes())?;
            }
            say(&format!("resuming {} at step {step} of {max_iters}", run_dir.display()));
            run_dir.clone()
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
    Ok(Started { config, corpus, gpt, opt, sampler, state, step, run_dir, memory })
}

/// What rank 0 hands the other ranks of a job once it has started: the resolved config,
/// the run folder, and the weights, AdamW's moments (none at a fresh start: they are
/// zero) and the trainer's state to start from, so that the ranks cannot disagree.
#[derive(Serialize, Deserialize)]
struct Handover {
    config: String,
    run_dir: PathBuf,
    step: u64,
    params: Vec<NamedTensor>,
    optimizer: Option<OptimizerState>,
    state: TrainState,
}

/// [`start`] on every rank of `world`: rank 0 starts the run (it alone reads the run
/// folder and writes to it) and hands it to the others, which open the same dataset
/// (at the same path on every host) and take rank 0's weights and state.
pub(crate) fn start_on(world: &World, start: &Start, verbose: bool) -> Result<Started, TrainError> {
    if world.size() == 1 {
        return self::start(start, 1, verbose);
    }
    if world.is_root() {
        let started = self::start(start, world.size(), verbose)?;
        let handover = Handover {
            config: started.config.to_toml(),
            run_dir: started.run_dir.clone(),
            step: started.step,
            params: Checkpoint::params_of(&started.gpt),
            optimizer: (started.step > 0).then(|| started.opt.state()),
            state: started.state.clone(),
        };
        let mut bytes = bincode::serialize(&handover).expect("a run's start always serialises");
        drop(handover);
        world.broadcast_bytes(&mut bytes);
        return Ok(started);
    }
    let mut bytes = Vec::new();
    world.broadcast_bytes(&mut bytes);
    let handover: Handover = bincode::deserialize(&bytes).map_err(|e| {
        TrainError::Config(format!("rank {}: cannot read the start rank 0 sent ({e})", world.rank()))
    })?;
    drop(bytes);
    join(handover, world.rank())
}

/// A rank other than 0 at the start rank 0 handed over: the same model, optimizer,
/// sampler and state. Its dropout masks come from a stream of its own (seeded by the run's
/// seed, its rank and the step it starts at), since its micro-batches are not rank 0's.
fn join(handover: Handover, rank: usize) -> Result<Started, TrainError> {
    let Handover { config, run_dir, step, params, optimizer, mut state } = handover;
    let origin = format!("{} (from rank 0)", run_dir.join("config.toml").display());
    let config = Config::parse(&config, &origin, &[])?;
    let (corpus, gpt_config) = open_run(&config, &origin, false)?;
    let memory = check_training_memory(&config, &gpt_config, &origin)?;
    let mut gpt = Gpt::new(gpt_config.clone(), config.train.seed);
    let weights = Checkpoint {
        model: gpt_config,
        run_config: String::new(),
        tokenizer: Vec::new(),
        params,
        optimizer: None,
        step,
        train_state: Vec::new(),
    };
    weights.load_into(&mut gpt)?;
    drop(weights);
    let mut opt = Optimizer::new(&gpt.tape, adamw_config(&config.optim), muon_config(&config.optim));
    if let Some(moments) = &optimizer {
        opt.restore(moments)
            .map_err(|detail| TrainError::NotResumable { path: run_dir.join("latest.ckpt"), detail })?;
    }
    let mut sampler = batch_sampler(&config, &corpus)?;
    sampler.restore(state.train_sampler.clone());
    state.dropout_rng = Rng::seeded(rank_dropout_seed(config.train.seed, rank, step));
    Ok(Started { config, corpus, gpt, opt, sampler, state, step, run_dir, memory })
}

/// Refuses a run on `ranks` processes that cannot share each step's micro-batches evenly.
fn check_ranks(config: &Config, ranks: usize, origin: &str) -> Result<(), TrainError> {
    let accum = config.train.gradient_accumulation_steps;
    if ranks > 1 && !accum.is_multiple_of(ranks) {
        return Err(TrainError::RanksDontDivide { origin: origin.into(), accum, ranks });
    }
    Ok(())
}

/// A resumed run's config (with `overrides`, which may only extend max_iters), the name
/// its messages give it, and its latest.ckpt.
fn read_resume(run_dir: &Path, overrides: &[String]) -> Result<(Config, String, Checkpoint), TrainError> {
    for o in overrides {
        if !o.trim_start().starts_with("train.max_iters") {
            return Err(TrainError::ResumeOverride { item: o.clone() });
        }
    }
    let path = run_folder_config(run_dir, "--resume")?;
    let config = Config::load(&path, overrides)?;
    check_recorded_dataset(&config, &path)?;
    let ckpt_path = run_dir.join("latest.ckpt");
    // Only a name that is not there at all means no checkpoint yet: a link that leads
    // nowhere, or in a loop, is reported as what it is.
    match std::fs::metadata(&ckpt_path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match std::fs::read_link(&ckpt_path) {
                Ok(target) => TrainError::BrokenLink { path: ckpt_path, target },
                Err(_) => TrainError::NothingToResume { path: ckpt_path },
            });
        }
        Err(error) => return Err(TrainError::Io { path: ckpt_path, error }),
    }
    let ckpt = Checkpoint::load(&ckpt_path).map_err(|e| {
        // Resume reads latest.ckpt only; say so when the run's other checkpoint is sound.
        let best = matches!(e, CheckpointError::Corrupted { .. })
            .then(|| Checkpoint::load(&run_dir.join("best.ckpt")).ok())
            .flatten();
        match best {
            Some(best) => TrainError::LatestCorrupted { error: e, best_step: best.step },
            None => e.into(),
        }
    })?;
    Ok((config, path.display().to_string(), ckpt))
}

/// `config` with data.dataset and data.input made absolute (against the current folder),
/// as the run folder's config.toml records them: `--resume` and `--evaluate` then work from
/// any folder.
fn with_absolute_data_paths(config: &Config) -> Config {
    let mut config = config.clone();
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    config.data.dataset = absolute(&config.data.dataset);
    config.data.input = config.data.input.iter().map(|p| absolute(p)).collect();
    config
}

/// A run folder's config (`config_path`) must still point at the prepared dataset the run
/// trained on: a dataset that has moved is named, not prepared anew.
pub(crate) fn check_recorded_dataset(config: &Config, config_path: &Path) -> Result<(), TrainError> {
    let dataset = &config.data.dataset;
    if Dataset::state(dataset) == DatasetState::Prepared {
        return Ok(());
    }
    // Run folders written before paths were recorded absolute hold them as given.
    let relative_to = dataset.is_relative().then(|| std::env::current_dir().unwrap_or_default());
    Err(TrainError::DatasetMoved { config: config_path.to_path_buf(), dataset: dataset.clone(), relative_to })
}

/// Puts a checked checkpoint's weights, optimizer state and sampler position into a fresh
/// start, and returns its trainer state.
fn restore(
    ckpt: &Checkpoint,
    ckpt_path: &Path,
    gpt: &mut Gpt,
    opt: &mut Optimizer,
    sampler: &mut BatchSampler,
) -> Result<TrainState, TrainError> {
    let bad = |detail: String| TrainError::NotResumable { path: ckpt_path.to_path_buf(), detail };
    ckpt.load_into(gpt)?;
    let opt_state = ckpt.optimizer.as_ref().ok_or_else(|| bad("holds no optimizer state".into()))?;
    opt.restore(opt_state).map_err(bad)?;
    let state: TrainState = bincode::deserialize(&ckpt.train_state)
        .map_err(|e| bad(format!("unreadable trainer state ({e})")))?;
    sampler.restore(state.train_sampler.clone());
    Ok(state)
}

/// Refuses a sample prompt the dataset's tokenizer cannot encode, before anything is written.
fn check_sample_prompt(config: &Config, corpus: &Corpus, origin: &str) -> Result<(), TrainError> {
    let t = &config.train;
    if t.sample_tokens > 0 && !t.sample_prompt.is_empty() {
        if let Err(e) = corpus.tokenizer.encode(&t.sample_prompt) {
            return Err(TrainError::InvalidValue {
                origin: origin.into(),
                field: "train.sample_prompt".into(),
                value: config.value_text("train.sample_prompt"),
                rule: format!("{e}; use text the dataset's tokenizer knows, or \"\" to start from a newline"),
            });
        }
    }
    Ok(())
}

/// What a training run of `config` needs in memory, refused (before anything is
/// allocated) when a size overflows or the total is past the memory limit, naming the
/// fields that drive the largest part.
fn check_training_memory(
    config: &Config,
    gpt_config: &GptConfig,
    origin: &str,
) -> Result<TrainingMemory, TrainError> {
    let t = &config.train;
    let memory = gpt_config
        .training_memory(t.batch_size, t.sample_tokens)
        .map_err(|e| TrainError::Config(format!("{origin}: {e}")))?;
    let (part, bytes) = memory.largest();
    let c = gpt_config;
    let fields = match part {
        "activations" | "batch buffers" => format!(
            "train.batch_size = {} sequences of model.block_size = {} tokens, model.n_layer = {}, model.n_embd = {}",
            t.batch_size, c.block_size, c.n_layer, c.n_embd
        ),
        "sampling buffers" => format!(
            "a KV cache of model.block_size = {} positions × model.n_layer = {} × model.n_embd = {} for train.sample_tokens",
            c.block_size, c.n_layer, c.n_embd
        ),
        _ => format!(
            "{} parameters from model.n_layer = {}, model.n_embd = {}, model.block_size = {}, vocabulary {}",
            memory.params, c.n_layer, c.n_embd, c.block_size, c.vocab_size
        ),
    };
    check_fits(memory.total(), &format!("{origin}: {fields} need {} of {part}", format_bytes(bytes)))?;
    Ok(memory)
}

/// Refuses `needed` bytes past the memory limit; `what` begins the sentence.
pub(crate) fn check_fits(needed: u64, what: &str) -> Result<(), TrainError> {
    match MemoryLimit::exceeded_by(needed).map_err(|e| TrainError::Config(e.to_string()))? {
        Some(limit) => Err(TrainError::OutOfMemory {
            detail: format!("{what}, {} in all; {}", format_bytes(needed), limit.describe()),
        }),
        None => Ok(()),
    }
}

fn adamw_config(o: &OptimSection) -> AdamWConfig {
    AdamWConfig {
        beta1: o.beta1 as f32,
        beta2: o.beta2 as f32,
        eps: 1e-8,
        weight_decay: o.weight_decay as f32,
    }
}

/// Muon's settings when `optim.optimizer` is "muon".
fn muon_config(o: &OptimSection) -> Option<MuonConfig> {
    (o.optimizer == OptimizerKind::Muon)
        .then_some(MuonConfig { momentum: o.muon_momentum as f32, weight_decay: o.muon_weight_decay as f32 })
}

/// The model a fresh run of `config` starts from and the sampler of its training batches,
/// as [`run`](crate::run) makes them: with these, another implementation can be run step
/// by step beside this one (`cargo run --release -p quill-train --example export_start`,
/// then `scripts/lockstep_pytorch.py`).
pub fn fresh_start(config: &Config, corpus: &Corpus) -> Result<(Gpt, BatchSampler), TrainError> {
    let t = &config.train;
    let gpt = Gpt::new(model_config(config, corpus.tokenizer.vocab_size()), t.seed);
    Ok((gpt, batch_sampler(config, corpus)?))
}

/// The sampler of a run's training batches, at its start.
fn batch_sampler(config: &Config, corpus: &Corpus) -> Result<BatchSampler, TrainError> {
    let t = &config.train;
    let seed = stream_seed(t.seed, Stream::TrainBatches);
    Ok(BatchSampler::new(&corpus.train, t.batch_size, config.model.block_size, seed)?)
}

/// What training and evaluating a config both start with: the config checked, the thread
/// pool sized, the dataset opened (prepared first if need be), and the model's shape.
pub(crate) fn open_run(
    config: &Config,
    origin: &str,
    verbose: bool,
) -> Result<(Corpus, GptConfig), TrainError> {
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
        arch: model::Arch {
            norm: m.norm,
            activation: m.activation,
            position: m.position,
            qk_norm: m.qk_norm,
            tie_head: m.tie_head,
        },
    }
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
pub(crate) fn run_folder_config(run_dir: &Path, flag: &'static str) -> Result<PathBuf, TrainError> {
    let path = run_dir.join("config.toml");
    if !path.is_file() {
        return Err(TrainError::NotARunFolder { path: run_dir.to_path_buf(), flag });
    }
    Ok(path)
}

/// Refuses a checkpoint whose model or tokenizer is not the one `config` and its dataset
/// describe, naming the checkpoint file.
pub(crate) fn check_checkpoint(
    ckpt: &Checkpoint,
    ckpt_path: &Path,
    gpt_config: &GptConfig,
    config: &Config,
    tokenizer: &dyn Tokenizer,
) -> Result<(), TrainError> {
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
        return Err(TrainError::ModelMismatch { path: ckpt_path.to_path_buf(), detail });
    }
    if ckpt.tokenizer != tokenizer.to_bytes() {
        return Err(TrainError::TokenizerMismatch {
            path: ckpt_path.to_path_buf(),
            dataset: config.data.dataset.clone(),
        });
    }
    Ok(())
}
