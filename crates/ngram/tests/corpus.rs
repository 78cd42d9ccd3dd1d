//! Corpora: the word split, the train/val split of a text file (prepare's), and the
//! `ngram` binary end to end on a tiny text.

use std::path::Path;
use std::process::Command;

use ngram::{score, split_words, Corpus, Level, NgramCounts, Source, Split};

/// ASCII, so its character and byte offsets agree.
const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n\
First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n";

fn write_text(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.txt");
    std::fs::write(&path, TEXT).unwrap();
    path
}

fn tokens(corpus: &Corpus, split: Split) -> Vec<u32> {
    let mut out = Vec::new();
    corpus.for_each_token(split, &mut |t| out.push(t)).unwrap();
    out
}

#[test]
fn words_are_letter_runs_space_runs_and_single_marks_and_rebuild_the_text() {
    let text = "Hello,  world!\nIt's 42.\n\n";
    let words = split_words(text);
    assert_eq!(words, ["Hello", ",", "  ", "world", "!", "\n", "It", "'", "s", " ", "42", ".", "\n", "\n"]);
    assert_eq!(words.concat(), text);
}

#[test]
fn a_text_splits_as_prepare_splits_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_text(dir.path());
    let source = Source::Text { path: path.clone(), val_fraction: 0.1 };
    let corpus = Corpus::open(source, Level::Char).unwrap();
    let bytes = |ids: &[u32]| ids.iter().flat_map(|&t| corpus.vocab().bytes(t).to_vec()).collect::<Vec<u8>>();
    let (train, val) = (tokens(&corpus, Split::Train), tokens(&corpus, Split::Val));
    let split = (TEXT.chars().count() as f64 * 0.9).floor() as usize;
    assert_eq!(bytes(&train), &TEXT.as_bytes()[..split]);
    assert_eq!(bytes(&val), &TEXT.as_bytes()[split..]);

    // The same text prepared as a char-level dataset: the same tokens, the same scores.
    let out = dir.path().join("dataset");
    let opts = data::PrepareOptions {
        inputs: vec![path],
        out_dir: out.clone(),
        tokenizer: "char".into(),
        vocab_size: None,
        val_fraction: 0.1,
        lossy: false,
        progress: false,
    };
    data::prepare(&opts).unwrap();
    let prepared = Corpus::open(Source::Dataset { dir: out }, Level::Token).unwrap();
    let prepared_bytes =
        |ids: &[u32]| ids.iter().flat_map(|&t| prepared.vocab().bytes(t).to_vec()).collect::<Vec<u8>>();
    assert_eq!(prepared_bytes(&tokens(&prepared, Split::Val)), &TEXT.as_bytes()[split..]);
    let scores_of = |corpus: &Corpus| {
        let mut counts = NgramCounts::new(3, corpus.vocab().len());
        corpus.for_each_token(Split::Train, &mut |t| counts.push(t)).unwrap();
        counts.finish();
        score(&counts, corpus, Split::Val)
            .unwrap()
            .iter()
            .map(|s| (s.tokens, s.bytes, s.bits))
            .collect::<Vec<_>>()
    };
    let (a, b) = (scores_of(&corpus), scores_of(&prepared));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.0, x.1), (y.0, y.1));
        assert!((x.2 - y.2).abs() < 1e-9, "{a:?} vs {b:?}");
    }
}

#[test]
fn the_word_level_scores_every_byte_of_the_val_split() {
    let dir = tempfile::tempdir().unwrap();
    let source = Source::Text { path: write_text(dir.path()), val_fraction: 0.2 };
    let corpus = Corpus::open(source, Level::Word).unwrap();
    let mut counts = NgramCounts::new(2, corpus.vocab().len());
    corpus.for_each_token(Split::Train, &mut |t| counts.push(t)).unwrap();
    counts.finish();
    let scores = score(&counts, &corpus, Split::Val).unwrap();
    let split = (TEXT.chars().count() as f64 * 0.8).floor() as usize;
    for s in &scores {
        assert_eq!(s.bytes as usize, TEXT[split..].len());
        assert!(s.bits.is_finite() && s.bits > 0.0);
    }
    assert!(corpus.encode("Speak, speak").is_ok());
    let unknown = corpus.encode("Speak, Romeo").unwrap_err().to_string();
    assert!(unknown.contains("\"Romeo\" never occurs"), "{unknown}");
}

fn ngram(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ngram")).args(args).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn the_binary_scores_tables_and_generates_from_a_tiny_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_text(dir.path());
    let text = path.to_str().unwrap();

    let (ok, out, err) = ngram(&["score", "--text", text, "--max-n", "3"]);
    assert!(ok, "{err}");
    assert!(out.contains("bits/byte") && out.contains("3-gram (Kneser-Ney)"), "{out}");
    assert_eq!(out.lines().count(), 4, "{out}");

    let (ok, out, err) = ngram(&["top", "--text", text, "--context", "Citizen:", "-n", "2", "--top", "3"]);
    assert!(ok, "{err}");
    // ':' is always followed by a newline in the train split.
    assert!(out.contains("rank  token  probability"), "{out}");
    assert!(out.contains("     1  ⏎          100.00%"), "{out}");

    let args =
        ["generate", "--text", text, "--level", "word", "--max-n", "2", "--length", "20", "--seed", "3"];
    let (ok, first, err) = ngram(&args);
    assert!(ok, "{err}");
    assert!(first.contains("--- 1-gram ---") && first.contains("--- 2-gram ---"), "{first}");
    assert_eq!(ngram(&args).1, first, "the same seed gives the same text");

    let (ok, _, err) = ngram(&["score", "--text", text, "--level", "token"]);
    assert!(!ok && err.contains("--level token needs a prepared dataset"), "{err}");
    let (ok, _, err) = ngram(&["top", "--text", text, "--context", "Zebra"]);
    assert!(!ok && err.contains("never occurs"), "{err}");
}

/// An order of 2^64 - 1 once panicked (capacity overflow) and one of 10^5 never finished
/// counting; a length of 10^10 kept every generated token. Both are refused up front.
#[test]
fn orders_and_lengths_past_their_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_text(dir.path());
    let text = path.to_str().unwrap();
    for (flag, value) in
        [("--max-n", "18446744073709551615"), ("--max-n", "100000"), ("--length", "10000000000")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_ngram"))
            .args(["generate", "--text", text, flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag}")) && !err.contains("panicked"),
            "{err}"
        );
    }
    let (ok, _, err) = ngram(&["score", "--text", text, "--max-n", "32"]);
    assert!(ok, "the largest order still counts: {err}");
}
