//! `prepare`: text files in; a tokenizer (`tokenizer.bin`) and the token files `train.bin`
//! and `val.bin` out.
//!
//! The input is streamed twice and never held whole. The first pass checks the UTF-8,
//! counts the characters, and gathers what the tokenizer needs (the character set, or for
//! BPE the count of every pre-tokenized word). The second pass encodes: the first
//! `1 − val_fraction` of the characters go to `train.bin` and the rest to `val.bin`, each
//! part encoded on its own, as nanoGPT's `prepare.py` splits its text 90/10. Everything is
//! written under temporary names and renamed into place only when all three files are done.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use fsio::AtomicFile;
use indicatif::{ProgressBar, ProgressStyle};

use crate::fxhash::FxHashMap;
use crate::shard::TokenWriter;
use crate::text::read_text_chunks;
use crate::tokenizer::bpe::{BpeTokenizer, MIN_BPE_VOCAB};
use crate::tokenizer::char::CharTokenizer;
use crate::tokenizer::gpt2::Gpt2Tokenizer;
use crate::tokenizer::merges::CachedEncoder;
use crate::tokenizer::pretokenize::{Piece, PieceStream};
use crate::{DataError, Dataset, Tokenizer};

/// Where `prepare` looks for GPT-2's `encoder.json` and `vocab.bpe` unless told otherwise
/// (relative to the current directory: the repository root).
pub const DEFAULT_GPT2_DIR: &str = "datasets/gpt2-tokenizer";

/// What `prepare` is asked to do.
#[derive(Clone, Debug)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// "char", "bpe" or "gpt2".
    pub tokenizer: String,
    /// For "bpe": the vocabulary size to learn.
    pub vocab_size: Option<usize>,
    pub val_fraction: f64,
    /// Replace invalid UTF-8 with U+FFFD instead of refusing the file.
    pub lossy: bool,
    /// Show progress bars.
    pub progress: bool,
}

/// What `prepare` wrote.
#[derive(Clone, Debug)]
pub struct PrepareSummary {
    pub vocab_size: usize,
    pub train_tokens: usize,
    pub val_tokens: usize,
    /// Bytes of text per token over the whole input (for bits per byte).
    pub bytes_per_token: f64,
}

/// Writes `tokenizer.bin`, `train.bin` and `val.bin` into `out_dir` (each through a
/// temporary name and a rename, so a failure leaves nothing partial). Refuses an output
/// that is also an input (always), an output folder that already holds any of them, and reads GPT-2's files from [`DEFAULT_GPT2_DIR`];
/// [`prepare_with`] can overwrite and look elsewhere.
pub fn prepare(opts: &PrepareOptions) -> Result<PrepareSummary, DataError> {
    prepare_with(opts, false, Path::new(DEFAULT_GPT2_DIR))
}

fn fail<T>(msg: String) -> Result<T, DataError> {
    Err(DataError::Message(msg))
}

/// [`prepare`], overwriting existing outputs when `force`, with GPT-2's `encoder.json` and
/// `vocab.bpe` read from `gpt2_dir`.
pub fn prepare_with(
    opts: &PrepareOptions,
    force: bool,
    gpt2_dir: &Path,
) -> Result<PrepareSummary, DataError> {
    check_options(opts)?;
    let out = &opts.out_dir;
    // Before the --force check: forcing would not make writing over the input right.
    if let Some((output, input)) = fsio::output_among_inputs(&Dataset::files(out), &opts.inputs) {
        return Err(DataError::OutputIsInput { output: output.to_path_buf(), input: input.to_path_buf() });
    }
    if !force {
        if let Some(existing) = Dataset::files(out).into_iter().find(|p| p.exists()) {
            return Err(DataError::AlreadyPrepared { path: existing, out_dir: out.clone() });
        }
    }
    let total_bytes = check_inputs(&opts.inputs)?;
    // GPT-2's files are read first, so a missing one fails before the long passes.
    let gpt2 = if opts.tokenizer == "gpt2" { Some(Gpt2Tokenizer::from_dir(gpt2_dir)?) } else { None };

    let scan = scan_inputs(opts, total_bytes)?;
    if scan.chars == 0 {
        let names: Vec<String> = opts.inputs.iter().map(|p| p.display().to_string()).collect();
        return fail(format!("{}: the input is empty; give prepare some text", names.join(", ")));
    }
    // nanoGPT: train_data = data[:int(n * 0.9)]
    let split = (scan.chars as f64 * (1.0 - opts.val_fraction)).floor() as u64;
    let built = match (opts.tokenizer.as_str(), gpt2) {
        ("char", _) => {
            Built::Char(Box::new(CharTokenizer::from_chars(scan.char_set.expect("scanned for char"))))
        }
        ("bpe", _) => {
            let words = scan.word_counts.expect("scanned for bpe");
            let words = words.into_iter().map(|(w, c)| (w.into_boxed_bytes().into_vec(), c)).collect();
            let vocab_size = opts.vocab_size.expect("checked in check_options");
            Built::Bpe(BpeTokenizer::train_from_counts(words, vocab_size, opts.progress)?)
        }
        (_, gpt2) => Built::Gpt2(gpt2.expect("loaded above")),
    };
    let tokenizer = built.as_dyn();
    let vocab_size = tokenizer.vocab_size();

    std::fs::create_dir_all(out).map_err(|e| DataError::io(out, e))?;
    let [tokenizer_path, train_path, val_path] = Dataset::files(out);
    let tokenizer_file = AtomicFile::create(&tokenizer_path)
        .and_then(|mut file| file.write_all(&tokenizer.to_bytes()).and_then(|()| file.sync()).map(|()| file))
        .map_err(|e| DataError::io(&tokenizer_path, e))?;
    let mut train = TokenWriter::create(&train_path, vocab_size)?;
    let mut val = TokenWriter::create(&val_path, vocab_size)?;
    let text_bytes = encode_split(opts, &built, split, total_bytes, &mut train, &mut val)?;

    let (train_tokens, val_tokens) = (train.len() as usize, val.len() as usize);
    if train_tokens < 2 || val_tokens < 2 {
        let names: Vec<String> = opts.inputs.iter().map(|p| p.display().to_string()).collect();
        return fail(format!(
            "{}: too little text to split: {train_tokens} train and {val_tokens} val tokens (each split needs at \
             least 2); use more text or a --val-fraction nearer 0.1",
            names.join(", ")
        ));
    }
    let train = train.finish_pending()?;
    let val = val.finish_pending()?;
    for file in [train, val, tokenizer_file] {
        let path = file.path().to_path_buf();
        file.commit().map_err(|e| DataError::io(&path, e))?;
    }
    Ok(PrepareSummary {
        vocab_size,
        train_tokens,
        val_tokens,
        bytes_per_token: text_bytes as f64 / (train_tokens + val_tokens).max(1) as f64,
    })
}

/// Every input must be a readable file; returns their total size in bytes.
fn check_inputs(inputs: &[PathBuf]) -> Result<u64, DataError> {
    let mut total_bytes = 0;
    for input in inputs {
        match std::fs::metadata(input) {
            Ok(m) if m.is_file() => total_bytes += m.len(),
            Ok(_) => return fail(format!("{}: is not a file; --input takes text files", input.display())),
            Err(error) => return Err(DataError::UnreadableInput { path: input.clone(), error }),
        }
    }
    Ok(total_bytes)
}

/// The second pass: encodes the first `split` characters into `train` and the rest into
/// `val`, each part on its own (a word cut by the split is two words). Returns the bytes
/// of text read.
fn encode_split(
    opts: &PrepareOptions,
    built: &Built,
    split: u64,
    total_bytes: u64,
    train: &mut TokenWriter,
    val: &mut TokenWriter,
) -> Result<u64, DataError> {
    let mut encoder = built.encoding();
    let bar = bytes_bar(opts.progress, total_bytes, "encoding");
    let mut seen = 0u64;
    let mut text_bytes = 0u64;
    let mut in_train = true;
    for input in &opts.inputs {
        read_text_chunks(input, opts.lossy, &bar, &mut |text| {
            text_bytes += text.len() as u64;
            let n = count_chars(text);
            if in_train && seen + n >= split {
                let cut = text.char_indices().nth((split - seen) as usize).map_or(text.len(), |(i, _)| i);
                encoder.feed(&text[..cut], true, &mut |ids| train.push(ids))?;
                in_train = false;
                encoder.feed(&text[cut..], false, &mut |ids| val.push(ids))?;
            } else if in_train {
                encoder.feed(text, false, &mut |ids| train.push(ids))?;
            } else {
                encoder.feed(text, false, &mut |ids| val.push(ids))?;
            }
            seen += n;
            Ok(())
        })?;
    }
    if in_train {
        encoder.feed("", true, &mut |ids| train.push(ids))?;
    }
    encoder.feed("", true, &mut |ids| val.push(ids))?;
    bar.finish_and_clear();
    Ok(text_bytes)
}

fn check_options(opts: &PrepareOptions) -> Result<(), DataError> {
    if opts.inputs.is_empty() {
        return fail("no input files; pass one or more with --input FILE".into());
    }
    if !(opts.val_fraction > 0.0 && opts.val_fraction < 1.0) {
        return fail(format!(
            "--val-fraction {} is outside (0, 1): both splits need text; use e.g. 0.1 for the last 10% of the text",
            opts.val_fraction
        ));
    }
    match (opts.tokenizer.as_str(), opts.vocab_size) {
        ("bpe", None) => fail("--tokenizer bpe needs --vocab-size N (e.g. 512 or 4096)".into()),
        ("bpe", Some(n)) if n < MIN_BPE_VOCAB => fail(format!(
            "--vocab-size {n} is too small for BPE: it needs the 256 byte tokens plus at least one merge; use {MIN_BPE_VOCAB} or more (512 to 4096 suit a small corpus)"
        )),
        ("bpe", Some(_)) => Ok(()),
        ("char" | "gpt2", Some(n)) => fail(format!(
            "--vocab-size {n} applies only to --tokenizer bpe; the {} tokenizer's vocabulary is fixed by {}",
            opts.tokenizer,
            if opts.tokenizer == "char" { "the text" } else { "GPT-2's files" }
        )),
        ("char" | "gpt2", None) => Ok(()),
        (other, _) => fail(format!("unknown tokenizer {other:?}; use char, bpe or gpt2")),
    }
}

/// What the first pass learned.
struct Scan {
    chars: u64,
    char_set: Option<BTreeSet<char>>,
    word_counts: Option<FxHashMap<Box<str>, u64>>,
}

fn scan_inputs(opts: &PrepareOptions, total_bytes: u64) -> Result<Scan, DataError> {
    let bar = bytes_bar(opts.progress, total_bytes, "reading");
    let mut chars = 0u64;
    let mut ascii_seen = [false; 128];
    let mut others: BTreeSet<char> = BTreeSet::new();
    let want_chars = opts.tokenizer == "char";
    let mut words: Option<FxHashMap<Box<str>, u64>> = (opts.tokenizer == "bpe").then(FxHashMap::default);
    let mut stream = PieceStream::new(Vec::new());
    let count_word = |piece: Piece<'_>, words: &mut FxHashMap<Box<str>, u64>| {
        if let Piece::Word(w) = piece {
            match words.get_mut(w) {
                Some(c) => *c += 1,
                None => {
                    words.insert(w.into(), 1);
                }
            }
        }
        Ok(())
    };
    for input in &opts.inputs {
        read_text_chunks(input, opts.lossy, &bar, &mut |text| {
            chars += count_chars(text);
            if want_chars {
                for c in text.chars() {
                    if c.is_ascii() {
                        ascii_seen[c as usize] = true;
                    } else {
                        others.insert(c);
                    }
                }
            }
            if let Some(words) = words.as_mut() {
                stream.feed(text, false, &mut |p| count_word(p, words))?;
            }
            Ok(())
        })?;
    }
    if let Some(words) = words.as_mut() {
        stream.feed("", true, &mut |p| count_word(p, words))?;
    }
    bar.finish_and_clear();
    let char_set = want_chars.then(|| {
        let mut set = others;
        set.extend((0..128u8).filter(|&b| ascii_seen[b as usize]).map(char::from));
        set
    });
    Ok(Scan { chars, char_set, word_counts: words })
}

/// The number of chars in `text` (bytes that do not continue a multi-byte character).
fn count_chars(text: &str) -> u64 {
    text.bytes().filter(|&b| (b & 0xC0) != 0x80).count() as u64
}

/// The tokenizer `prepare` made, by kind.
enum Built {
    Char(Box<CharTokenizer>),
    Bpe(BpeTokenizer),
    Gpt2(Gpt2Tokenizer),
}

impl Built {
    fn as_dyn(&self) -> &dyn Tokenizer {
        match self {
            Built::Char(t) => t.as_ref(),
            Built::Bpe(t) => t,
            Built::Gpt2(t) => t,
        }
    }

    fn encoding(&self) -> Encoding<'_> {
        match self {
            Built::Char(t) => Encoding::Char(t),
            Built::Bpe(t) => Encoding::Merges(t.table().encoder(true)),
            Built::Gpt2(t) => Encoding::Merges(t.table().encoder(true)),
        }
    }
}

/// The second pass's encoder: per character, or pre-tokenize and merge.
enum Encoding<'a> {
    Char(&'a CharTokenizer),
    Merges(CachedEncoder<'a>),
}

impl Encoding<'_> {
    fn feed(
        &mut self,
        text: &str,
        end: bool,
        sink: &mut impl FnMut(&[u32]) -> Result<(), DataError>,
    ) -> Result<(), DataError> {
        match self {
            Encoding::Char(tokenizer) => sink(&tokenizer.encode(text)?),
            Encoding::Merges(encoder) => encoder.feed(text, end, sink),
        }
    }
}

fn bytes_bar(progress: bool, total: u64, what: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})")
            .expect("the progress template is valid"),
    );
    bar.set_message(what.to_string());
    bar
}
