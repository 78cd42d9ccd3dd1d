//! The run configuration: one TOML file with `[model]`, `[data]`, `[optim]` and `[train]`
//! sections, field names as nanoGPT's, defaults in one `Default` impl, command-line
//! overrides (`--set section.key=value`), and a `validate` whose errors name the file, the
//! field and the rule.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use model::{Activation, Norm, Position};

use crate::TrainError;

/// The whole run configuration, as written to `runs/NAME/config.toml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub model: ModelSection,
    pub data: DataSection,
    pub optim: OptimSection,
    pub train: TrainSection,
}

/// `[model]`: the GPT's shape (the vocabulary size comes from the tokenizer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// Context length in tokens.
    pub block_size: usize,
    pub dropout: f32,
    /// Biases in Linear layers and LayerNorms.
    pub bias: bool,
    /// "layernorm" (GPT-2) or "rmsnorm" (a gain only, no shift).
    pub norm: Norm,
    /// The MLP's nonlinearity: "gelu" (GPT-2) or "relu2" (max(x, 0)²).
    pub activation: Activation,
    /// "learned" (GPT-2's position table) or "rope" (rotary embeddings of q and k, base
    /// 10000; the head size must be even).
    pub position: Position,
    /// RMS-normalise each head's q and k before attention (no gain).
    pub qk_norm: bool,
    /// Output head tied to the token embedding (GPT-2), or its own `lm_head.weight`.
    pub tie_head: bool,
    /// Weights to fine-tune from (nanoGPT's name): a Quill checkpoint file, a run folder
    /// (its best.ckpt, else latest.ckpt) or a Hugging Face GPT-2 folder. The fields above
    /// then come from the weights; the config may leave them out, lower block_size (the
    /// position table is cropped) and change dropout, but not set another value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// The `[model]` fields the config file or `--set` gave, which must then agree with
    /// the weights of `init_from`; recorded only when init_from is given (the others take
    /// the weights' values).
    #[serde(skip)]
    pub given: Vec<String>,
}

/// `[data]`: where the tokens are, and how to make them when they are missing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    /// Folder holding `tokenizer.bin`, `train.bin` and `val.bin`.
    pub dataset: PathBuf,
    /// Text file(s) to prepare the dataset from when its `.bin` files are missing.
    #[serde(deserialize_with = "one_or_many")]
    pub input: Vec<PathBuf>,
    /// "char", "bpe" or "gpt2": the tokenizer to prepare with. Empty (left out): "char"
    /// when preparing, and whichever the prepared dataset holds otherwise. Given, a
    /// prepared dataset must have it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub tokenizer: String,
    /// Vocabulary size to learn, for "bpe". Given, a prepared dataset must have it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Fraction of the text held out for validation (used only when preparing).
    pub val_fraction: f64,
}

/// `[optim]`: the optimizer (AdamW, or Muon with AdamW), the learning-rate schedule and
/// clipping.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimSection {
    /// "adamw": AdamW for every parameter. "muon": Muon for the blocks' 2-D weights
    /// (attention and MLP), AdamW for the rest (embeddings, head, norms, biases).
    pub optimizer: OptimizerKind,
    /// Peak learning rate (after warm-up), AdamW's.
    pub learning_rate: f64,
    /// Floor of the decay.
    pub min_lr: f64,
    pub warmup_iters: u64,
    /// Step at which the decay reaches min_lr (then it stays there).
    pub lr_decay_iters: u64,
    /// "cosine": warm-up, then a cosine decay to min_lr. "wsd": warm-up, stable at the
    /// peak, then a linear warm-down to min_lr over the last warmdown_iters steps before
    /// lr_decay_iters.
    pub schedule: Schedule,
    /// Steps of the "wsd" warm-down.
    pub warmdown_iters: u64,
    /// Decoupled weight decay, applied to parameters with 2 or more dimensions.
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// Clip the global gradient norm to this (0 disables).
    pub grad_clip: f64,
    /// false: constant learning_rate.
    pub decay_lr: bool,
    /// Muon's peak learning rate; it follows the schedule in proportion to learning_rate.
    pub muon_learning_rate: f64,
    /// Muon's momentum (Nesterov form).
    pub muon_momentum: f64,
    /// Muon's decoupled weight decay: p ← p·(1 − lr·muon_weight_decay).
    pub muon_weight_decay: f64,
}

/// `optim.optimizer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    AdamW,
    Muon,
}

/// `optim.schedule`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    #[default]
    Cosine,
    Wsd,
}

/// `[train]`: the loop, evaluation, logging and the run folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Optimizer steps.
    pub max_iters: u64,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    pub eval_interval: u64,
    /// Batches per split in each evaluation.
    pub eval_iters: usize,
    pub log_interval: u64,
    /// Write latest.ckpt every this many steps (0: only at evaluations and the end).
    pub checkpoint_interval: u64,
    pub seed: u64,
    /// Worker threads; 0 uses every core.
    pub threads: usize,
    /// Runs are written to out_dir/name.
    pub out_dir: PathBuf,
    /// Empty: the config file's name (small.toml → "small").
    pub name: String,
    /// Tokens of text sampled and shown at each evaluation (0: none).
    pub sample_tokens: usize,
    /// Start of that text; empty starts from a newline.
    pub sample_prompt: String,
    /// On several ranks (`mpirun -np N train ...`), each rank keeps AdamW's moments for
    /// 1/N of the parameters only (ZeRO stage 1); the results are the same bits. Written to
    /// a run folder's config.toml only when set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shard_optimizer: bool,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            block_size: 64,
            dropout: 0.0,
            bias: false,
            norm: Norm::LayerNorm,
            activation: Activation::Gelu,
            position: Position::Learned,
            qk_norm: false,
            tie_head: true,
            init_from: None,
            given: Vec::new(),
        }
    }
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection {
            dataset: PathBuf::from("datasets/tinyshakespeare"),
            input: vec![PathBuf::from("datasets/tinyshakespeare/input.txt")],
            tokenizer: String::new(),
            vocab_size: None,
            val_fraction: 0.1,
        }
    }
}

impl Default for OptimSection {
    fn default() -> Self {
        OptimSection {
            optimizer: OptimizerKind::AdamW,
            learning_rate: 1e-3,
            min_lr: 1e-4,
            warmup_iters: 100,
            lr_decay_iters: 2000,
            schedule: Schedule::Cosine,
            warmdown_iters: 0,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            grad_clip: 1.0,
            decay_lr: true,
            muon_learning_rate: 0.02,
            muon_momentum: 0.95,
            muon_weight_decay: 0.0,
        }
    }
}

impl Default for TrainSection {
    fn default() -> Self {
        TrainSection {
            batch_size: 12,
            max_iters: 2000,
            gradient_accumulation_steps: 1,
            eval_interval: 250,
            eval_iters: 20,
            log_interval: 10,
            checkpoint_interval: 0,
            seed: 1337,
            threads: 0,
            out_dir: PathBuf::from("runs"),
            name: String::new(),
            sample_tokens: 200,
            sample_prompt: String::new(),
            shard_optimizer: false,
        }
    }
}

impl DataSection {
    /// The tokenizer `prepare` makes for this config: `tokenizer`, or "char" when not given.
    pub fn tokenizer_to_prepare(&self) -> &str {
        if self.tokenizer.is_empty() {
            "char"
        } else {
            &self.tokenizer
        }
    }
}

/// Accepts `input = "a.txt"` as well as `input = ["a.txt", "b.txt"]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(v) => v,
    })
}

/// Most worker threads a config may ask for.
pub const MAX_THREADS: usize = 1024;

impl Config {
    /// Reads a config file and applies `--set section.key=value` overrides. Errors name the
    /// file and line (or the override) and the field.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TrainError::Io { path: path.to_path_buf(), error: source })?;
        Config::parse(&text, &path.display().to_string(), overrides)
    }

    /// Parses TOML text (`origin`, the file's path, names it in errors) and applies
    /// overrides. An empty `train.name` becomes the file's stem (small.toml → "small").
    pub fn parse(text: &str, origin: &str, overrides: &[String]) -> Result<Config, TrainError> {
        // Deserialising the text itself keeps toml's spans, so errors carry a line number.
        let mut config: Config = toml::from_str(text).map_err(|e| config_error(origin, text, &e))?;
        if !overrides.is_empty() {
            let mut table = toml::Table::try_from(&config).expect("a Config always serialises to TOML");
            for item in overrides {
                apply_override(&mut table, item)?;
            }
            config = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| {
                TrainError::Config(format!("--set {}: {}", overrides.join(" --set "), e.message().trim()))
            })?;
        }
        if config.model.init_from.is_some() {
            config.model.given = given_model_fields(text, overrides);
        }
        if config.train.name.is_empty() {
            config.train.name = Path::new(origin)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
        }
        Ok(config)
    }

    /// The resolved config as TOML (what `config.toml` in the run folder holds).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a Config always serialises to TOML")
    }

    /// The value of `section.key` as TOML text (`4`, `"char"`), empty when it is unset.
    pub fn value_text(&self, field: &str) -> String {
        let table = toml::Table::try_from(self).expect("a Config always serialises to TOML");
        let value = field.split_once('.').and_then(|(section, key)| table.get(section)?.get(key));
        value.map(ToString::to_string).unwrap_or_default()
    }

    /// Checks every rule that needs no data; `origin` names the config in the message.
    pub fn validate(&self, origin: &str) -> Result<(), TrainError> {
        let err = |field: &str, rule: String| {
            let value = self.value_text(field);
            Err(TrainError::InvalidValue { origin: origin.into(), field: field.into(), value, rule })
        };
        let (m, o, t) = (&self.model, &self.optim, &self.train);
        for (field, value) in [
            ("model.n_layer", m.n_layer),
            ("model.n_head", m.n_head),
            ("model.n_embd", m.n_embd),
            ("model.block_size", m.block_size),
            ("train.batch_size", t.batch_size),
            ("train.gradient_accumulation_steps", t.gradient_accumulation_steps),
            ("train.eval_iters", t.eval_iters),
        ] {
            if value == 0 {
                return err(field, "must be at least 1, found 0".into());
            }
        }
        if m.n_embd % m.n_head != 0 {
            return err(
                "model.n_embd",
                format!(
                    "{} is not divisible by model.n_head = {}; pick n_embd a multiple of n_head",
                    m.n_embd, m.n_head
                ),
            );
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return err("model.dropout", format!("must be in [0, 1), found {}", m.dropout));
        }
        for (field, value) in [
            ("optim.learning_rate", o.learning_rate),
            ("optim.min_lr", o.min_lr),
            ("optim.muon_learning_rate", o.muon_learning_rate),
        ] {
            if !value.is_finite() || value < 0.0 {
                return err(field, format!("must be a finite number >= 0, found {value}"));
            }
        }
        if o.min_lr > o.learning_rate {
            return err(
                "optim.min_lr",
                format!("{} is larger than optim.learning_rate = {}", o.min_lr, o.learning_rate),
            );
        }
        for (field, value) in
            [("optim.weight_decay", o.weight_decay), ("optim.muon_weight_decay", o.muon_weight_decay)]
        {
            if value.is_nan() || value < 0.0 {
                return err(field, format!("must be >= 0, found {value}"));
            }
        }
        for (field, value) in
            [("optim.beta1", o.beta1), ("optim.beta2", o.beta2), ("optim.muon_momentum", o.muon_momentum)]
        {
            if !(0.0..1.0).contains(&value) {
                return err(field, format!("must be in [0, 1), found {value}"));
            }
        }
        if o.grad_clip.is_nan() || o.grad_clip < 0.0 {
            return err(
                "optim.grad_clip",
                format!("must be >= 0 (0 disables clipping), found {}", o.grad_clip),
            );
        }
        if o.decay_lr && o.warmup_iters > o.lr_decay_iters {
            return err(
                "optim.warmup_iters",
                format!("{} is past optim.lr_decay_iters = {}", o.warmup_iters, o.lr_decay_iters),
            );
        }
        if o.decay_lr && o.schedule == Schedule::Wsd {
            if o.warmdown_iters == 0 {
                return err(
                    "optim.warmdown_iters",
                    "must be at least 1 with schedule = \"wsd\" (e.g. a fifth of optim.lr_decay_iters)"
                        .into(),
                );
            }
            if o.warmdown_iters > t.max_iters {
                return err(
                    "optim.warmdown_iters",
                    format!(
                        "{} is longer than train.max_iters = {}; use fewer steps",
                        o.warmdown_iters, t.max_iters
                    ),
                );
            }
            if o.warmup_iters.saturating_add(o.warmdown_iters) > o.lr_decay_iters {
                return err(
                    "optim.warmdown_iters",
                    format!(
                        "{} overlaps the warm-up: optim.warmup_iters = {} plus the warm-down must fit in optim.lr_decay_iters = {}",
                        o.warmdown_iters, o.warmup_iters, o.lr_decay_iters
                    ),
                );
            }
        }
        if t.shard_optimizer && o.optimizer == OptimizerKind::Muon {
            return err(
                "train.shard_optimizer",
                "shards AdamW's moments only, and Muon orthogonalises whole matrices on every rank; set it to false with optim.optimizer = \"muon\"".into(),
            );
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) || self.data.val_fraction == 0.0 {
            return err("data.val_fraction", format!("must be in (0, 1), found {}", self.data.val_fraction));
        }
        if !["", "char", "bpe", "gpt2"].contains(&self.data.tokenizer.as_str()) {
            return err(
                "data.tokenizer",
                format!("must be \"char\", \"bpe\" or \"gpt2\", found {:?}", self.data.tokenizer),
            );
        }
        match (self.data.tokenizer_to_prepare(), self.data.vocab_size) {
            ("bpe", None) => {
                return err("data.vocab_size", "is required with tokenizer = \"bpe\" (e.g. 4096)".into())
            }
            ("bpe", Some(n)) if n < data::MIN_BPE_VOCAB => {
                return err(
                    "data.vocab_size",
                    format!(
                        "{n} is too small for BPE (256 byte tokens plus merges); use {} or more, e.g. 4096",
                        data::MIN_BPE_VOCAB
                    ),
                )
            }
            (tokenizer, Some(n)) if tokenizer != "bpe" => {
                return err(
                    "data.vocab_size",
                    format!(
                        "= {n} applies only to tokenizer = \"bpe\"; the {tokenizer} tokenizer's vocabulary is fixed, so remove it"
                    ),
                )
            }
            _ => {}
        }
        if t.name.is_empty() || t.name.contains(['/', '\\']) || t.name == "." || t.name == ".." {
            return err("train.name", format!("must be a plain folder name, found {:?}", t.name));
        }
        if t.max_iters == 0 {
            return err("train.max_iters", "must be at least 1 (optimizer steps to run), found 0".into());
        }
        // The run's token count (what the plan line and tokens_seen count) fits in 64 bits.
        // An overflow names the largest factor so far, the likeliest mistake.
        let mut tokens = 1u64;
        let mut largest = ("train.batch_size", 0u64);
        for (field, value) in [
            ("train.batch_size", t.batch_size as u64),
            ("model.block_size", m.block_size as u64),
            ("train.gradient_accumulation_steps", t.gradient_accumulation_steps as u64),
            ("train.max_iters", t.max_iters),
        ] {
            if value > largest.1 {
                largest = (field, value);
            }
            match tokens.checked_mul(value) {
                Some(n) => tokens = n,
                None => {
                    let (field, value) = largest;
                    return err(
                        field,
                        format!(
                            "{value} makes the run's tokens (batch_size × block_size × gradient_accumulation_steps × max_iters) overflow 64 bits; use a smaller value"
                        ),
                    );
                }
            }
        }
        if t.threads > MAX_THREADS {
            return err(
                "train.threads",
                format!("must be at most {MAX_THREADS} (0 uses every core), found {}", t.threads),
            );
        }
        if self.data.input.iter().any(|p| p.as_os_str().is_empty()) {
            return err("data.input", "holds an empty path; list text files, or [] for none".into());
        }
        if m.init_from.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return err(
                "model.init_from",
                "is empty; name a checkpoint, a run folder or a Hugging Face folder, or leave it out".into(),
            );
        }
        for (field, path) in [("data.dataset", &self.data.dataset), ("train.out_dir", &t.out_dir)] {
            if path.as_os_str().is_empty() {
                return err(field, "is empty; name a folder (\".\" for the current one)".into());
            }
        }
        Ok(())
    }
}

/// Sets `section.key` in the table to the value parsed as TOML (a bare word that is not
/// valid TOML is taken as a string, so `--set data.dataset=datasets/x` works).
fn apply_override(table: &mut toml::Table, item: &str) -> Result<(), TrainError> {
    let bad = |problem| TrainError::OverrideSyntax { item: item.into(), problem };
    let (key, raw) = item.split_once('=').ok_or_else(|| bad("no '='"))?;
    let (section, field) = key.trim().split_once('.').ok_or_else(|| bad("the key has no section"))?;
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let at = format!("--set {item}");
    let Some(toml::Value::Table(section_table)) = table.get_mut(section) else {
        let expected = one_of(["model", "data", "optim", "train"]);
        return Err(TrainError::UnknownSection { at, section: section.into(), expected });
    };
    // The optional fields are absent from the table when unset.
    let optional = matches!(
        (section, field),
        ("data", "tokenizer" | "vocab_size") | ("model", "init_from") | ("train", "shard_optimizer")
    );
    if !section_table.contains_key(field) && !optional {
        let expected = one_of(section_table.keys());
        return Err(TrainError::UnknownField { at, section: section.into(), field: field.into(), expected });
    }
    section_table.insert(field.to_string(), value);
    Ok(())
}

/// The `[model]` keys that `text` (already parsed once) or an override sets.
fn given_model_fields(text: &str, overrides: &[String]) -> Vec<String> {
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    let in_file =
        table.get("model").and_then(toml::Value::as_table).into_iter().flat_map(|t| t.keys().cloned());
    let in_overrides = overrides.iter().filter_map(|item| {
        let key = item.split_once('=')?.0.trim();
        key.strip_prefix("model.").map(str::to_string)
    });
    let mut given: Vec<String> = in_file.chain(in_overrides).collect();
    given.sort();
    given.dedup();
    given
}

/// Names as toml's errors list them: one of `a`, `b`, `c`.
fn one_of(names: impl IntoIterator<Item = impl std::fmt::Display>) -> String {
    let names: Vec<String> = names.into_iter().map(|name| format!("`{name}`")).collect();
    format!("one of {}", names.join(", "))
}

/// Turns toml's error into one sentence: `configs/x.toml: line 12: unknown field
/// `lerning_rate` in [optim]; expected one of ...`.
fn config_error(origin: &str, text: &str, e: &toml::de::Error) -> TrainError {
    let message = e.message().trim().replace('\n', " ");
    let Some(span) = e.span() else {
        return TrainError::Config(format!("{origin}: {message}"));
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_text = text[line_start..].lines().next().unwrap_or("").trim();
    let section = text[..line_start].lines().rev().find_map(|l| {
        l.trim().strip_prefix('[').and_then(|s| s.split(']').next()).map(|s| s.trim().to_string())
    });
    let at = format!("{origin}: line {line}");
    // toml says "unknown field `name`, expected one of `a`, `b`" of fields and sections alike.
    let unknown = message.split_once(", expected ").and_then(|(head, expected)| {
        let name = head.strip_prefix("unknown field `")?.strip_suffix('`')?;
        Some((name.to_string(), expected.to_string()))
    });
    let message = match (line_text.starts_with('['), &section, unknown) {
        (true, _, Some((section, expected))) => {
            return TrainError::UnknownSection { at, section, expected };
        }
        (false, Some(section), Some((field, expected))) => {
            return TrainError::UnknownField { at, section: section.clone(), field, expected };
        }
        (false, Some(section), _) => {
            let field = line_text.split('=').next().map(str::trim).unwrap_or(line_text);
            format!("[{section}] {field}: {message}")
        }
        _ => message,
    };
    TrainError::Config(format!("{at}: {message}"))
}
