//! A corpus as a stream of token ids at one [`Level`]: characters, words, or the tokens of a
//! prepared dataset; split into train and val exactly as `prepare` splits its text.
//!
//! Nothing here holds the text: every pass re-reads the file (or the token files) in
//! blocks of 64 KiB, so memory is the vocabulary and one block.
//!
//! **Words.** A word-level token is a maximal run of letters and digits
//! (`char::is_alphanumeric`), a maximal run of spaces and tabs (any whitespace but the
//! newline), a newline, or any other single character (each punctuation mark is its own
//! token). Nothing is dropped, so the tokens of a text concatenate back to exactly that
//! text, and a word model's probability of the val split is a probability of its exact
//! bytes: its bits per byte compare with a character model's and a GPT's. `don't` is three
//! tokens (`don`, `'`, `t`); a run of Chinese characters, all letters, is one token.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use data::{load_tokenizer, TokenFile, Tokenizer};

use crate::NgramError;

/// What one token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// One Unicode character (the essay's letters).
    Char,
    /// A run of letters/digits, a run of spaces, a newline, or one other character.
    Word,
    /// One token of the dataset's own tokenizer (`--dataset` only).
    Token,
}

/// Where the text comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A UTF-8 text file: the first `1 − val_fraction` of its characters are the train
    /// split and the rest the val split, as `prepare --val-fraction` splits it.
    Text { path: PathBuf, val_fraction: f64 },
    /// A folder written by `prepare`: `tokenizer.bin`, `train.bin`, `val.bin`.
    Dataset { dir: PathBuf },
}

/// Which part of the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

/// The token ids of a corpus and the bytes each one stands for.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    pieces: Vec<Vec<u8>>,
    index: HashMap<Vec<u8>, u32>,
}

impl Vocab {
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The bytes of token `id`.
    pub fn bytes(&self, id: u32) -> &[u8] {
        &self.pieces[id as usize]
    }

    /// The id of a piece of text, if the corpus holds it.
    pub fn id(&self, piece: &str) -> Option<u32> {
        self.index.get(piece.as_bytes()).copied()
    }

    fn intern(&mut self, piece: &str) {
        if !self.index.contains_key(piece.as_bytes()) {
            let id = u32::try_from(self.pieces.len()).expect("fewer than 2^32 distinct tokens");
            self.index.insert(piece.as_bytes().to_vec(), id);
            self.pieces.push(piece.as_bytes().to_vec());
        }
    }
}

/// A corpus opened at one level: its vocabulary is every token of the whole text (both
/// splits, as `prepare`'s character tokenizer is), so a val token never seen in training
/// still has an id, and the smoothed models give it a small probability.
pub struct Corpus {
    source: Source,
    level: Level,
    vocab: Vocab,
    /// For a text file: the number of characters in the train split.
    train_chars: u64,
    /// For a dataset: its tokenizer.
    tokenizer: Option<Box<dyn Tokenizer>>,
}

const BLOCK: usize = 1 << 16;

impl Corpus {
    /// Reads the corpus once or twice to find its split and vocabulary.
    pub fn open(source: Source, level: Level) -> Result<Corpus, NgramError> {
        let mut corpus = Corpus { source, level, vocab: Vocab::default(), train_chars: 0, tokenizer: None };
        match &corpus.source {
            Source::Text { path, val_fraction } => {
                if level == Level::Token {
                    return Err(NgramError::Message(format!(
                        "{}: --level token needs a prepared dataset (--dataset DIR); a text file has char and word levels",
                        path.display()
                    )));
                }
                if !(0.0..1.0).contains(val_fraction) {
                    return Err(NgramError::Message(format!(
                        "--val-fraction must be in [0, 1), got {val_fraction}"
                    )));
                }
                let mut chars = 0u64;
                read_text_file(path, &mut |text| chars += text.chars().count() as u64)?;
                // As prepare.rs: train_data = data[:int(n * 0.9)]
                corpus.train_chars = (chars as f64 * (1.0 - val_fraction)).floor() as u64;
            }
            Source::Dataset { dir } => {
                let tokenizer = load_tokenizer(&dir.join("tokenizer.bin"))?;
                if level == Level::Token {
                    for id in 0..tokenizer.vocab_size() as u32 {
                        corpus.vocab.pieces.push(tokenizer.token_bytes(id));
                    }
                }
                corpus.tokenizer = Some(tokenizer);
            }
        }
        if level != Level::Token {
            let mut vocab = Vocab::default();
            for split in [Split::Train, Split::Val] {
                corpus.for_each_piece(split, &mut |piece| vocab.intern(piece))?;
            }
            corpus.vocab = vocab;
        }
        Ok(corpus)
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// The dataset's tokenizer (`None` for a text file).
    pub fn tokenizer(&self) -> Option<&dyn Tokenizer> {
        self.tokenizer.as_deref()
    }

    /// Calls `f` with each token id of a split, in order.
    pub fn for_each_token(&self, split: Split, f: &mut dyn FnMut(u32)) -> Result<(), NgramError> {
        if self.level == Level::Token {
            let file = self.token_file(split)?;
            for i in 0..file.len() {
                f(file.get(i));
            }
            return Ok(());
        }
        let mut missing = None;
        self.for_each_piece(split, &mut |piece| match self.vocab.id(piece) {
            Some(id) => f(id),
            None => missing = missing.take().or_else(|| Some(piece.to_string())),
        })?;
        match missing {
            Some(piece) => Err(NgramError::Message(format!(
                "{}: the text changed while it was read (\"{piece}\" is new); run the command again",
                self.origin()
            ))),
            None => Ok(()),
        }
    }

    /// A context or prompt as token ids at this corpus's level; every piece must occur in
    /// the corpus.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, NgramError> {
        if let (Level::Token, Some(tokenizer)) = (self.level, &self.tokenizer) {
            return Ok(tokenizer.encode(text)?);
        }
        let mut pieces = Vec::new();
        split_pieces(self.level, text, &mut |piece| pieces.push(piece.to_string()));
        pieces
            .iter()
            .map(|piece| {
                self.vocab.id(piece).ok_or_else(|| {
                    NgramError::Message(format!(
                        "\"{piece}\" never occurs in {}; leave it out",
                        self.origin()
                    ))
                })
            })
            .collect()
    }

    /// The file or folder the corpus reads, for messages.
    pub fn origin(&self) -> String {
        match &self.source {
            Source::Text { path, .. } => path.display().to_string(),
            Source::Dataset { dir } => dir.display().to_string(),
        }
    }

    /// A dataset split's token file (a dataset source only).
    pub fn token_file(&self, split: Split) -> Result<TokenFile, NgramError> {
        let Source::Dataset { dir } = &self.source else {
            return Err(NgramError::Message(format!("{}: not a prepared dataset", self.origin())));
        };
        let name = match split {
            Split::Train => "train.bin",
            Split::Val => "val.bin",
        };
        let file = TokenFile::open(&dir.join(name))?;
        if let Some(tokenizer) = &self.tokenizer {
            file.check_vocab(tokenizer.vocab_size())?;
        }
        Ok(file)
    }

    /// Calls `f` with each char- or word-level piece of a split's text.
    fn for_each_piece(&self, split: Split, f: &mut dyn FnMut(&str)) -> Result<(), NgramError> {
        let mut splitter = Splitter::new(self.level);
        match &self.source {
            Source::Text { path, .. } => {
                let mut seen = 0u64;
                read_text_file(path, &mut |text| {
                    let chars = text.chars().count() as u64;
                    let (start, end) = (seen, seen + chars);
                    seen = end;
                    // This block's part of the split, in characters from the block's start.
                    let (from, to) = match split {
                        Split::Train => (0, self.train_chars.clamp(start, end) - start),
                        Split::Val => (self.train_chars.clamp(start, end) - start, chars),
                    };
                    if from < to {
                        let byte =
                            |c: u64| text.char_indices().nth(c as usize).map_or(text.len(), |(i, _)| i);
                        splitter.push(&text[byte(from)..byte(to)], f);
                    }
                })?;
            }
            Source::Dataset { .. } => {
                let tokenizer = self.tokenizer.as_deref().expect("a dataset corpus has its tokenizer");
                let file = self.token_file(split)?;
                let mut utf8 = Utf8Blocks::default();
                for i in 0..file.len() {
                    utf8.bytes.extend_from_slice(&tokenizer.token_bytes(file.get(i)));
                    if utf8.bytes.len() >= BLOCK {
                        let lossy = utf8.decode(false, true, &mut |text| splitter.push(text, f));
                        lossy.expect("lossy decoding never fails");
                    }
                }
                let lossy = utf8.decode(true, true, &mut |text| splitter.push(text, f));
                lossy.expect("lossy decoding never fails");
            }
        }
        splitter.finish(f);
        Ok(())
    }
}

/// Streams a UTF-8 file in blocks of whole characters; invalid UTF-8 is an error naming
/// its byte offset.
fn read_text_file(path: &Path, on_text: &mut dyn FnMut(&str)) -> Result<(), NgramError> {
    let io = |error| NgramError::Io { path: path.to_path_buf(), error };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut utf8 = Utf8Blocks::default();
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = file.read(&mut block).map_err(io)?;
        utf8.bytes.extend_from_slice(&block[..n]);
        if let Err(offset) = utf8.decode(n == 0, false, on_text) {
            return Err(NgramError::Message(format!(
                "{}: invalid UTF-8 at byte {offset}; convert the file to UTF-8 (or prepare it with --lossy and use --dataset)",
                path.display()
            )));
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// Bytes waiting to be decoded: whole characters are handed on, an incomplete one at the
/// end waits for the next block.
#[derive(Default)]
struct Utf8Blocks {
    bytes: Vec<u8>,
    /// Bytes decoded so far (for error offsets).
    offset: u64,
}

impl Utf8Blocks {
    /// Hands on every whole character pending (and, when `last`, an incomplete one at the
    /// end). Invalid bytes become U+FFFD when `lossy`; otherwise they are an error holding
    /// their offset from the start of the stream.
    fn decode(&mut self, last: bool, lossy: bool, on_text: &mut dyn FnMut(&str)) -> Result<(), u64> {
        loop {
            let error = match std::str::from_utf8(&self.bytes) {
                Ok(text) => {
                    on_text(text);
                    self.offset += self.bytes.len() as u64;
                    self.bytes.clear();
                    return Ok(());
                }
                Err(error) => error,
            };
            let valid = error.valid_up_to();
            on_text(std::str::from_utf8(&self.bytes[..valid]).expect("valid up to here"));
            let bad = match error.error_len() {
                None if !last => {
                    self.offset += valid as u64;
                    self.bytes.drain(..valid);
                    return Ok(());
                }
                _ if !lossy => return Err(self.offset + valid as u64),
                Some(bad) => bad,
                None => self.bytes.len() - valid,
            };
            on_text("\u{FFFD}");
            self.offset += (valid + bad) as u64;
            self.bytes.drain(..valid + bad);
        }
    }
}

/// What kind of run a character belongs to at the word level.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    Alnum,
    Space,
    Single,
}

fn run_of(c: char) -> Run {
    match c {
        c if c.is_alphanumeric() => Run::Alnum,
        '\n' => Run::Single,
        c if c.is_whitespace() => Run::Space,
        _ => Run::Single,
    }
}

/// Cuts a stream of text into char- or word-level pieces; a word may continue into the
/// next block.
struct Splitter {
    level: Level,
    run: String,
    kind: Run,
}

impl Splitter {
    fn new(level: Level) -> Splitter {
        Splitter { level, run: String::new(), kind: Run::Single }
    }

    fn push(&mut self, text: &str, f: &mut dyn FnMut(&str)) {
        let mut buf = [0u8; 4];
        for c in text.chars() {
            let kind = run_of(c);
            if self.level == Level::Char {
                f(c.encode_utf8(&mut buf));
                continue;
            }
            if !self.run.is_empty() && (kind != self.kind || kind == Run::Single) {
                f(&self.run);
                self.run.clear();
            }
            self.run.push(c);
            self.kind = kind;
        }
    }

    fn finish(&mut self, f: &mut dyn FnMut(&str)) {
        if !self.run.is_empty() {
            f(&self.run);
            self.run.clear();
        }
    }
}

/// Calls `f` with each piece of `text` at the char or word level.
fn split_pieces(level: Level, text: &str, f: &mut dyn FnMut(&str)) {
    let mut splitter = Splitter::new(level);
    splitter.push(text, f);
    splitter.finish(f);
}

/// The word-level tokens of a text (see the module docs); they concatenate back to `text`.
pub fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    split_pieces(Level::Word, text, &mut |w| words.push(w.to_string()));
    words
}
