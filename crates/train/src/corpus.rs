//! The data of a run: the dataset folder (opened with the data crate's [`Dataset`], which
//! knows its files; prepared from the config's text files on first use), its tokenizer and
//! memory-mapped splits, checked against the context length.

use data::{Dataset, DatasetState, TokenFile, Tokenizer, TOKENIZER_FILE};

use crate::config::Config;
use crate::TrainError;

/// The data of a run: tokenizer and memory-mapped splits.
pub struct Corpus {
    pub tokenizer: Box<dyn Tokenizer>,
    pub train: TokenFile,
    pub val: TokenFile,
    /// Mean bytes of text per token, for bits per byte.
    pub bytes_per_token: f64,
}

/// Opens the dataset folder, preparing it from `data.input` first when its files are
/// missing; checks that both splits hold more than block_size tokens.
///
/// The folder says which tokenizer it was prepared with: `data.tokenizer` and
/// `data.vocab_size` are what to prepare with, and may be left out for a prepared folder.
/// Given, they must agree with it (a config that names one tokenizer and trains on
/// another would be a mistake).
pub fn open_corpus(config: &Config, origin: &str, progress: bool) -> Result<Corpus, TrainError> {
    let d = &config.data;
    if let Some((output, input)) = fsio::output_among_inputs(&Dataset::files(&d.dataset), &d.input) {
        return Err(TrainError::Config(format!(
            "{origin}: data.input: {} is {}, a file of the prepared dataset itself; point data.input at the text \
             (outside data.dataset's files) and data.dataset at the folder to prepare",
            input.display(),
            output.display()
        )));
    }
    match Dataset::state(&d.dataset) {
        DatasetState::Prepared => {}
        DatasetState::Partial { missing } => {
            let missing: Vec<String> = missing.iter().map(|f| f.display().to_string()).collect();
            return Err(TrainError::Config(format!(
                "{origin}: data.dataset: {} holds part of a prepared dataset ({} missing); delete its .bin files \
                 to prepare it again from data.input, or point data.dataset at another folder",
                d.dataset.display(),
                missing.join(", ")
            )));
        }
        DatasetState::Missing => prepare_dataset(config, origin, progress)?,
    }
    let Dataset { tokenizer, train, val, .. } = Dataset::open(&d.dataset)?;
    if !d.tokenizer.is_empty() && tokenizer.kind() != d.tokenizer {
        return Err(TrainError::Config(format!(
            "{origin}: data.tokenizer = {:?}, but {} was prepared with the {} tokenizer; set data.tokenizer = {:?} \
             (or leave it out), or point data.dataset at another folder to prepare it anew",
            d.tokenizer,
            d.dataset.display(),
            tokenizer.kind(),
            tokenizer.kind()
        )));
    }
    if let Some(n) = d.vocab_size.filter(|&n| n != tokenizer.vocab_size()) {
        return Err(TrainError::Config(format!(
            "{origin}: data.vocab_size = {n}, but the tokenizer of {} has {} tokens; set data.vocab_size = {} \
             (or leave it out), or point data.dataset at another folder to prepare it anew",
            d.dataset.display(),
            tokenizer.vocab_size(),
            tokenizer.vocab_size()
        )));
    }
    let need = config.model.block_size + 1;
    for (split, file) in [("train", &train), ("val", &val)] {
        if file.len() < need {
            return Err(TrainError::Config(format!(
                "{origin}: model.block_size = {} is too large for the {split} split: {} holds {} tokens, \
                 need at least block_size + 1 = {need}; lower model.block_size or use more text",
                config.model.block_size,
                file.path().display(),
                file.len()
            )));
        }
    }
    let bytes_per_token = bytes_per_token(tokenizer.as_ref(), &val);
    Ok(Corpus { tokenizer, train, val, bytes_per_token })
}

/// Prepares `data.dataset` from `data.input` with `data.tokenizer` (char when not given).
fn prepare_dataset(config: &Config, origin: &str, progress: bool) -> Result<(), TrainError> {
    let d = &config.data;
    if let Some(input) = d.input.iter().find(|p| p.is_dir()) {
        return Err(TrainError::Config(format!(
            "{origin}: data.input: {} is a folder; list the text files to prepare from",
            input.display()
        )));
    }
    let [tokenizer_file, ..] = Dataset::files(&d.dataset);
    if d.input.is_empty() {
        return Err(TrainError::Config(format!(
            "{origin}: data.dataset: {} does not exist and data.input is empty; set data.input to the \
             text file(s) to prepare it from, or run prepare --input FILE --out {}",
            tokenizer_file.display(),
            d.dataset.display()
        )));
    }
    if let Some(input) = d.input.iter().find(|p| !p.exists()) {
        return Err(TrainError::Config(format!(
            "{origin}: data.input: {} does not exist (needed to prepare {}, which has no {TOKENIZER_FILE}); \
             fix the path or set data.dataset to a prepared folder",
            input.display(),
            d.dataset.display(),
        )));
    }
    let tokenizer = d.tokenizer_to_prepare();
    let summary = data::prepare(&data::PrepareOptions {
        inputs: d.input.clone(),
        out_dir: d.dataset.clone(),
        tokenizer: tokenizer.to_string(),
        vocab_size: d.vocab_size,
        val_fraction: d.val_fraction,
        lossy: false,
        progress,
    })?;
    if progress {
        println!(
            "prepared {}: {tokenizer} tokenizer, vocabulary {}, {} train and {} val tokens",
            d.dataset.display(),
            summary.vocab_size,
            summary.train_tokens,
            summary.val_tokens
        );
    }
    Ok(())
}

/// A loss in nats per token as bits per byte of text.
pub fn bits_per_byte(loss: f64, bytes_per_token: f64) -> f64 {
    loss / std::f64::consts::LN_2 / bytes_per_token
}

/// Mean UTF-8 bytes per token over (the first million tokens of) a split, for bits per byte.
pub fn bytes_per_token(tokenizer: &dyn Tokenizer, file: &TokenFile) -> f64 {
    let lengths: Vec<usize> =
        (0..tokenizer.vocab_size() as u32).map(|id| tokenizer.token_bytes(id).len()).collect();
    let n = file.len().min(1 << 20);
    let total: usize = (0..n).map(|i| lengths.get(file.get(i) as usize).copied().unwrap_or(1)).sum();
    (total as f64 / n.max(1) as f64).max(f64::MIN_POSITIVE)
}
