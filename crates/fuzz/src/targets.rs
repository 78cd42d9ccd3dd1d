//! The fuzz targets: every loader of a file a user hands Quill. Each target reads one
//! input the way the product reads that kind of file (from a file in a scratch folder,
//! through the same public function the binaries call), then uses what it read a little
//! (encodes with a tokenizer, runs a model on a few tokens, draws a chart), so a loader
//! that accepts what its users cannot use is caught too.
//!
//! An input that is refused is a success; the error message is returned, and its shape
//! (digits and quoted text blanked) is the runner's coverage signal.

use std::path::{Path, PathBuf};

use data::{BatchSampler, CharTokenizer, Dataset, Gpt2Tokenizer, TokenFile, Tokenizer};
use model::checkpoint::{Checkpoint, OptimizerState};
use model::{Gpt, GptConfig};
use plot::{ChartOptions, Run, SvgOptions, XAxis};
use train::{Config, TrainState};

/// The targets, by name.
pub const TARGETS: [&str; 8] =
    ["checkpoint", "token_file", "tokenizer", "gpt2_files", "config", "metrics", "hf_config", "safetensors"];

/// One loader under test.
pub trait Target {
    /// Whether inputs are text (adds the text mutations).
    fn is_text(&self) -> bool;
    /// Valid inputs made by the current code (so they follow format changes); the
    /// committed corpus adds to them.
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Reads one input; `Err` is the loader's refusal, in its words.
    fn exec(&mut self, input: &[u8]) -> Result<(), String>;
    /// Repairs what every mutation breaks and hides the rest behind (a checksum, a length
    /// in the header), so that most mutated inputs reach the checks past it. The runner
    /// calls it on most inputs, not all: the first check must be fuzzed too.
    fn fix_up(&self, _input: &mut Vec<u8>) {}
}

/// The target `name`, working in the folder `scratch` (created empty by the caller).
pub fn open(name: &str, scratch: &Path) -> Result<Box<dyn Target>, String> {
    Ok(match name {
        "checkpoint" => Box::new(CheckpointTarget::new(scratch)?),
        "token_file" => Box::new(TokenFileTarget::new(scratch)?),
        "tokenizer" => Box::new(TokenizerTarget),
        "gpt2_files" => Box::new(Gpt2FilesTarget { dir: scratch.to_path_buf() }),
        "config" => Box::new(ConfigTarget { path: scratch.join("config.toml") }),
        "metrics" => Box::new(MetricsTarget::new(scratch)?),
        "hf_config" => Box::new(HfConfigTarget { path: scratch.join("config.json") }),
        "safetensors" => Box::new(SafetensorsTarget::new(scratch)?),
        other => return Err(format!("no target {other:?}; the targets are {}", TARGETS.join(", "))),
    })
}

/// Writes a scratch input. A plain write, not `fsio`'s atomic one: these are throwaway
/// files in a temporary folder, rewritten a million times, and syncing each would make
/// the loop a thousand times slower.
fn put(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("harness: cannot write {}: {e}", path.display()))
}

const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n紅樓夢 é\n";

/// A model small enough that a million loads take minutes: 1 layer, width 8, context 8.
fn tiny_config(vocab_size: usize) -> GptConfig {
    // Through serde, so that fields added to GptConfig with defaults need no change here.
    serde_json::from_value(serde_json::json!({
        "vocab_size": vocab_size, "block_size": 8, "n_layer": 1, "n_head": 2, "n_embd": 8,
        "dropout": 0.0, "bias": true
    }))
    .expect("a valid tiny GptConfig")
}

fn char_tokenizer() -> CharTokenizer {
    CharTokenizer::from_text(TEXT)
}

fn bpe_tokenizer() -> Box<dyn Tokenizer> {
    Box::new(data::BpeTokenizer::train(TEXT, data::MIN_BPE_VOCAB + 8, false).expect("a BPE tokenizer trains"))
}

/// The tiny GPT-2 tokenizer of convert's test fixture (its vocab.json and merges.txt).
fn gpt2_files() -> (&'static str, &'static str) {
    (
        include_str!("../../convert/tests/fixtures/tiny-gpt2/vocab.json"),
        include_str!("../../convert/tests/fixtures/tiny-gpt2/merges.txt"),
    )
}

fn gpt2_tokenizer(dir: &Path) -> Gpt2Tokenizer {
    let (vocab, merges) = gpt2_files();
    let (vocab_path, merges_path) = (dir.join("seed-vocab.json"), dir.join("seed-merges.txt"));
    put(&vocab_path, vocab.as_bytes()).expect("scratch is writable");
    put(&merges_path, merges.as_bytes()).expect("scratch is writable");
    Gpt2Tokenizer::from_files(&vocab_path, &merges_path).expect("the fixture tokenizer loads")
}

/// A checkpoint of a tiny model for `tokenizer`, with or without optimizer state.
fn tiny_checkpoint(tokenizer: &dyn Tokenizer, optimizer: bool) -> Checkpoint {
    let gpt = Gpt::new(tiny_config(tokenizer.vocab_size()), 1);
    let params = Checkpoint::params_of(&gpt);
    let moments = |scale: f32| params.iter().map(|p| p.data.iter().map(|v| v * scale).collect()).collect();
    Checkpoint {
        model: gpt.config.clone(),
        run_config: include_str!("../../../configs/small.toml").to_string(),
        tokenizer: tokenizer.to_bytes(),
        optimizer: optimizer.then(|| OptimizerState { step: 3, m: moments(0.1), v: moments(0.01) }),
        params,
        step: 3,
        train_state: Vec::new(),
    }
}

/// A short look at a tokenizer: encode, decode, and every token's bytes (up to 512).
fn use_tokenizer(tokenizer: &dyn Tokenizer) -> Result<(), String> {
    let vocab = tokenizer.vocab_size();
    for id in (0..vocab.min(512)).chain(vocab.checked_sub(1)) {
        tokenizer.token_bytes(id as u32);
    }
    let ids = tokenizer.encode(TEXT).map_err(|e| e.to_string())?;
    if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        panic!("encode gave id {bad} for a vocabulary of {vocab}");
    }
    tokenizer.decode(&ids);
    Ok(())
}

/// `checkpoint`: a checkpoint file, loaded as `sample` loads it (checksum, sizes, the
/// embedded tokenizer, the memory check, the model), then scored on a few tokens; its
/// trainer state is read as `train --resume` reads it and drives a batch sampler.
struct CheckpointTarget {
    path: PathBuf,
    tokens: TokenFile,
    char_tokenizer: CharTokenizer,
    scratch: PathBuf,
}

impl CheckpointTarget {
    fn new(scratch: &Path) -> Result<CheckpointTarget, String> {
        let tokens_path = scratch.join("tokens.bin");
        let tokens: Vec<u32> = (0..64).map(|i| i % 7).collect();
        data::write_token_file(&tokens_path, &tokens, 7).map_err(|e| e.to_string())?;
        Ok(CheckpointTarget {
            path: scratch.join("latest.ckpt"),
            tokens: TokenFile::open(&tokens_path).map_err(|e| e.to_string())?,
            char_tokenizer: char_tokenizer(),
            scratch: scratch.to_path_buf(),
        })
    }
}

impl Target for CheckpointTarget {
    fn is_text(&self) -> bool {
        false
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let mut with_state = tiny_checkpoint(&self.char_tokenizer, true);
        let state = TrainState {
            dropout_rng: tensor_rng(5),
            train_sampler: BatchSampler::new(&self.tokens, 2, 4, 9).expect("64 tokens").state(),
            best_val_loss: Some(2.5),
            tokens_seen: 96,
            elapsed_s: 1.5,
            smoothed_loss: None,
            metrics_jsonl: "{\"step\":1,\"tokens\":32,\"train_loss\":4.1,\"elapsed_s\":0.1}\n".into(),
        };
        with_state.train_state = bincode_bytes(&state);
        [
            with_state,
            tiny_checkpoint(bpe_tokenizer().as_ref(), false),
            tiny_checkpoint(&gpt2_tokenizer(&self.scratch), false),
        ]
        .iter()
        .map(|c| c.to_bytes().expect("a checkpoint serialises"))
        .collect()
    }

    /// The header (checkpoint.rs): magic (8 bytes), format version (u32), payload length
    /// (u64), CRC-32 of the payload (u32); the payload follows.
    fn fix_up(&self, input: &mut Vec<u8>) {
        const HEADER_LEN: usize = 24;
        if input.len() >= HEADER_LEN {
            let payload_len = (input.len() - HEADER_LEN) as u64;
            input[12..20].copy_from_slice(&payload_len.to_le_bytes());
            let crc = crc32fast::hash(&input[HEADER_LEN..]);
            input[20..24].copy_from_slice(&crc.to_le_bytes());
        }
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        put(&self.path, input)?;
        let loaded = sample::load(&self.path).map_err(|e| e.to_string())?;
        use_tokenizer(loaded.tokenizer.as_ref())?;
        let first = sample::start_token(loaded.tokenizer.as_ref());
        sample::score(&loaded.gpt, &[first], &[0, 0]);
        // What `train --resume` reads beside the weights.
        let ckpt = Checkpoint::load(&self.path).map_err(|e| e.to_string())?;
        let state: TrainState = bincode::deserialize(&ckpt.train_state).map_err(|e| e.to_string())?;
        let mut sampler = BatchSampler::new(&self.tokens, 2, 4, 0).map_err(|e| e.to_string())?;
        sampler.restore(state.train_sampler);
        sampler.next_batch(&self.tokens, &mut Vec::new(), &mut Vec::new());
        Ok(())
    }
}

fn tensor_rng(seed: u64) -> tensor::Rng {
    tensor::Rng::seeded(seed)
}

fn bincode_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("serialises")
}

/// `token_file`: a `train.bin`, opened alone (header, sizes, every id) and as part of a
/// dataset folder beside a char tokenizer (vocabularies checked against each other).
struct TokenFileTarget {
    dir: PathBuf,
}

impl TokenFileTarget {
    fn new(scratch: &Path) -> Result<TokenFileTarget, String> {
        let dir = scratch.join("dataset");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let tokenizer = char_tokenizer();
        put(&dir.join(data::TOKENIZER_FILE), &tokenizer.to_bytes())?;
        let ids = tokenizer.encode(TEXT).map_err(|e| e.to_string())?;
        data::write_token_file(&dir.join(data::VAL_FILE), &ids, tokenizer.vocab_size())
            .map_err(|e| e.to_string())?;
        Ok(TokenFileTarget { dir })
    }
}

impl Target for TokenFileTarget {
    fn is_text(&self) -> bool {
        false
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let tokenizer = char_tokenizer();
        let ids = tokenizer.encode(TEXT).expect("the text is the tokenizer's");
        let wide: Vec<u32> = (0..40).map(|i| i * 1700).collect();
        [(ids, tokenizer.vocab_size()), (wide, 70_000)]
            .iter()
            .map(|(ids, vocab)| {
                let path = self.dir.join("seed.bin");
                data::write_token_file(&path, ids, *vocab).expect("scratch is writable");
                std::fs::read(&path).expect("just written")
            })
            .collect()
    }

    /// The header (shard.rs): magic (8 bytes), version (u32), token width (u32), vocab
    /// size (u64), token count (u64); the tokens follow. The count is made to match.
    fn fix_up(&self, input: &mut Vec<u8>) {
        let header = data::TOKEN_FILE_HEADER_LEN;
        if input.len() >= header {
            let width = u32::from_le_bytes(input[12..16].try_into().expect("4 bytes"));
            if width == 2 || width == 4 {
                let count = (input.len() - header) / width as usize;
                input.truncate(header + count * width as usize);
                input[24..32].copy_from_slice(&(count as u64).to_le_bytes());
            }
        }
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        let path = self.dir.join(data::TRAIN_FILE);
        put(&path, input)?;
        let file = TokenFile::open(&path).map_err(|e| e.to_string())?;
        let mut window = vec![0u32; file.len().min(4096)];
        file.read_into(0, &mut window);
        if !file.is_empty() {
            file.get(file.len() - 1);
        }
        file.check_vocab(file.vocab_size()).map_err(|e| e.to_string())?;
        drop(file);
        let dataset = Dataset::open(&self.dir).map_err(|e| e.to_string())?;
        let (train, tokenizer) = (&dataset.train, &dataset.tokenizer);
        let mut window = vec![0u32; train.len().min(64)];
        train.read_into(0, &mut window);
        tokenizer.decode(&window);
        Ok(())
    }
}

/// `tokenizer`: a serialised tokenizer of any kind (`tokenizer.bin`, or the one a
/// checkpoint embeds), read and used.
struct TokenizerTarget;

impl Target for TokenizerTarget {
    fn is_text(&self) -> bool {
        false
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let scratch = tempfile::tempdir().expect("a temporary folder");
        vec![
            char_tokenizer().to_bytes(),
            bpe_tokenizer().to_bytes(),
            gpt2_tokenizer(scratch.path()).to_bytes(),
        ]
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        let tokenizer = data::tokenizer_from_bytes(input).map_err(|e| e.to_string())?;
        use_tokenizer(tokenizer.as_ref())
    }
}

/// `gpt2_files`: GPT-2's two tokenizer files as a Hugging Face folder holds them
/// (`vocab.json`, then a NUL byte, then `merges.txt`).
struct Gpt2FilesTarget {
    dir: PathBuf,
}

impl Target for Gpt2FilesTarget {
    fn is_text(&self) -> bool {
        true
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let (vocab, merges) = gpt2_files();
        vec![[vocab.as_bytes(), b"\0", merges.as_bytes()].concat()]
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        let (vocab, merges) = split_at_nul(input);
        let (vocab_path, merges_path) = (self.dir.join("vocab.json"), self.dir.join("merges.txt"));
        put(&vocab_path, vocab)?;
        put(&merges_path, merges)?;
        let tokenizer = Gpt2Tokenizer::from_files(&vocab_path, &merges_path).map_err(|e| e.to_string())?;
        use_tokenizer(&tokenizer)?;
        // What a checkpoint embeds must read back.
        if let Err(e) = data::tokenizer_from_bytes(&tokenizer.to_bytes()) {
            panic!("a loaded GPT-2 tokenizer does not read back: {e}");
        }
        Ok(())
    }
}

/// The part before the first NUL byte and the part after it (empty when there is none).
fn split_at_nul(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == 0) {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[]),
    }
}

/// `config`: a train config file (then a NUL byte and `--set` overrides, one a line),
/// loaded and validated as `train --config` does, and written back as the run folder's
/// `config.toml` is.
struct ConfigTarget {
    path: PathBuf,
}

impl Target for ConfigTarget {
    fn is_text(&self) -> bool {
        true
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let small = include_str!("../../../configs/small.toml");
        vec![
            small.as_bytes().to_vec(),
            include_bytes!("../../../configs/finetune-gpt2.toml").to_vec(),
            include_bytes!("../../../configs/chinese.toml").to_vec(),
            [small.as_bytes(), b"\0train.max_iters=250\nmodel.n_layer=2\noptim.lr=1e-3\ntrain.name=\"x\""]
                .concat(),
        ]
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        let (text, overrides) = split_at_nul(input);
        let overrides: Vec<String> =
            String::from_utf8_lossy(overrides).lines().filter(|l| !l.is_empty()).map(String::from).collect();
        put(&self.path, text)?;
        let config = Config::load(&self.path, &overrides).map_err(|e| e.to_string())?;
        config.validate("config.toml").map_err(|e| e.to_string())?;
        let written = config.to_toml();
        if let Err(e) = Config::parse(&written, "run/config.toml", &[]) {
            panic!("a valid config does not read back from the run folder: {e}\n{written}");
        }
        Ok(())
    }
}

/// `metrics`: a run's `metrics.jsonl`, read as `plot` reads it and drawn (terminal and
/// SVG, every x axis); its lines are also read as `train --resume` reads them.
struct MetricsTarget {
    dir: PathBuf,
}

impl MetricsTarget {
    fn new(scratch: &Path) -> Result<MetricsTarget, String> {
        let dir = scratch.join("run");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Ok(MetricsTarget { dir })
    }
}

impl Target for MetricsTarget {
    fn is_text(&self) -> bool {
        true
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        let rows = "{\"step\":0,\"tokens\":0,\"train_loss\":4.17,\"lr\":0.0,\"grad_norm\":3.2,\"elapsed_s\":0.05}\n\
{\"step\":0,\"tokens\":0,\"eval_train_loss\":4.17,\"val_loss\":4.18,\"val_bpb\":6.03,\"val_ppl\":65.4,\"elapsed_s\":0.4}\n\
{\"step\":10,\"tokens\":7680,\"train_loss\":3.1,\"lr\":0.0006,\"grad_norm\":1.5,\"tok_per_s\":52000.0,\"elapsed_s\":0.6}\n\
{\"step\":20,\"tokens\":15360,\"train_loss\":2.6,\"lr\":0.0006,\"grad_norm\":0.9,\"tok_per_s\":51000.0,\"elapsed_s\":0.9}\n\
{\"step\":10,\"tokens\":7680,\"train_loss\":3.0,\"elapsed_s\":1.2}\n\
{\"step\":30,\"tokens\":23040,\"train_loss\":2.4,\"eval_train_loss\":2.4,\"val_loss\":2.5,\"elapsed_s\":1.5}\n";
        vec![rows.as_bytes().to_vec(), rows.as_bytes()[..rows.len() - 30].to_vec()]
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        put(&self.dir.join("metrics.jsonl"), input)?;
        let resumed: Vec<plot::MetricRow> =
            String::from_utf8_lossy(input).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        drop(resumed);
        let run = Run::load(&self.dir).map_err(|e| e.to_string())?;
        let history = plot::merge_history(&run.rows);
        for x in [XAxis::Step, XAxis::Tokens, XAxis::Time] {
            let series = plot::loss_series(&history, x);
            plot::terminal_chart_with(&series, &ChartOptions { width: 60, height: 12, color: false });
            plot::render_svg(
                std::slice::from_ref(&run),
                &SvgOptions { x, log_y: x == XAxis::Tokens, ..SvgOptions::default() },
            );
        }
        Ok(())
    }
}

/// `hf_config`: a Hugging Face `config.json`, read and turned into a Quill model config.
struct HfConfigTarget {
    path: PathBuf,
}

impl Target for HfConfigTarget {
    fn is_text(&self) -> bool {
        true
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![include_bytes!("../../convert/tests/fixtures/tiny-gpt2/config.json").to_vec()]
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        put(&self.path, input)?;
        let config = convert::HfConfig::read(&self.path).map_err(|e| e.to_string())?;
        let model = config.to_model_config(&self.path).map_err(|e| e.to_string())?;
        model.checked_num_params().map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// `safetensors`: the `model.safetensors` of a Hugging Face folder (the tiny model's
/// `config.json` and tokenizer beside it), imported as `sample` and `convert` import it.
struct SafetensorsTarget {
    dir: PathBuf,
}

impl SafetensorsTarget {
    fn new(scratch: &Path) -> Result<SafetensorsTarget, String> {
        let dir = scratch.join("hf");
        let tokenizer = char_tokenizer();
        convert::write_hf(&tiny_checkpoint(&tokenizer, false), &tokenizer, &dir, true)
            .map_err(|e| e.to_string())?;
        Ok(SafetensorsTarget { dir })
    }
}

impl Target for SafetensorsTarget {
    fn is_text(&self) -> bool {
        false
    }

    fn seeds(&self) -> Vec<Vec<u8>> {
        vec![std::fs::read(self.dir.join("model.safetensors")).expect("written by new")]
    }

    fn exec(&mut self, input: &[u8]) -> Result<(), String> {
        put(&self.dir.join("model.safetensors"), input)?;
        let ckpt = convert::from_hf(&self.dir).map_err(|e| e.to_string())?;
        ckpt.into_model().map_err(|e| e.to_string())?;
        Ok(())
    }
}
