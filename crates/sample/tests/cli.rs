//! The `sample` binary end to end on a tiny random checkpoint written here: generation,
//! run folders, the next-token table, scoring, and every user error as one sentence on
//! stderr with a non-zero exit and no panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use data::{CharTokenizer, Tokenizer};
use model::checkpoint::Checkpoint;
use model::{Gpt, GptConfig};

const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n";

/// Writes a tiny random char-level checkpoint to `path`.
fn write_checkpoint(path: &Path) {
    let tokenizer = CharTokenizer::from_text(TEXT);
    let config = GptConfig {
        vocab_size: tokenizer.vocab_size(),
        block_size: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        dropout: 0.0,
        bias: true,
        arch: model::Arch::GPT2,
    };
    let gpt = Gpt::new(config.clone(), 7);
    let ckpt = Checkpoint {
        model: config,
        run_config: String::new(),
        tokenizer: tokenizer.to_bytes(),
        params: Checkpoint::params_of(&gpt),
        optimizer: None,
        step: 0,
        train_state: Vec::new(),
    };
    ckpt.save(path).expect("writing the test checkpoint");
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_checkpoint(&dir.path().join("model.ckpt"));
        Fixture { dir }
    }

    fn ckpt(&self) -> PathBuf {
        self.dir.path().join("model.ckpt")
    }
}

fn sample(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sample")).args(args).output().expect("running the sample binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(out.status.success(), "sample failed: {}", stderr(out));
}

/// A user error: non-zero exit, one `error: ...` line containing `needle`, no panic.
fn assert_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "expected a failure, got success; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked instead of an error: {err}");
    let line =
        err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("no error line in: {err}"));
    assert!(line.contains(needle), "error {line:?} does not mention {needle:?}");
}

#[test]
fn generates_the_prompt_and_new_tokens() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let out =
        sample(&["--checkpoint", ckpt.to_str().unwrap(), "--prompt", "First", "--max-new-tokens", "40"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.starts_with("First"), "{text:?}");
    // Char tokens: 5 prompt characters, 40 new ones and a final newline (which may be
    // preceded by generated newlines).
    assert_eq!(text.chars().count(), 5 + 40 + 1, "{text:?}");
    assert!(text.chars().all(|c| TEXT.contains(c)), "{text:?}");
}

#[test]
fn same_seed_same_text_and_greedy_ignores_the_seed() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let run = |extra: &[&str]| {
        let mut args = vec!["--checkpoint", ckpt.to_str().unwrap(), "--max-new-tokens", "30"];
        args.extend_from_slice(extra);
        let out = sample(&args);
        assert_ok(&out);
        stdout(&out)
    };
    assert_eq!(run(&["--seed", "3"]), run(&["--seed", "3"]));
    assert_ne!(run(&["--seed", "3", "--temperature", "1.5"]), run(&["--seed", "4", "--temperature", "1.5"]));
    assert_eq!(run(&["--seed", "3", "--temperature", "0"]), run(&["--seed", "4", "--temperature", "0"]));
    assert_eq!(run(&["--seed", "3", "--top-k", "1"]), run(&["--seed", "3", "--temperature", "0"]));
}

#[test]
fn several_samples_and_past_block_size() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let out = sample(&[
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--max-new-tokens",
        "50",
        "--num-samples",
        "2",
        "--top-p",
        "0.9",
    ]);
    assert_ok(&out);
    assert_eq!(stdout(&out).matches("---------------").count(), 1, "{}", stdout(&out));
}

#[test]
fn a_batch_of_samples_starts_with_the_sample_generated_alone() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    for dtype in ["f32", "bf16"] {
        let run = |n: &str| {
            let args = ["--checkpoint", ckpt.to_str().unwrap(), "--max-new-tokens", "30", "--seed", "5"];
            let out = sample(&[&args[..], &["--num-samples", n, "--dtype", dtype]].concat());
            assert_ok(&out);
            stdout(&out)
        };
        let (one, three) = (run("1"), run("3"));
        let samples: Vec<&str> = three.split("---------------\n").collect();
        assert_eq!(samples.len(), 3, "{three}");
        assert_eq!(samples[0], one, "{dtype}");
    }
}

#[test]
fn a_run_folder_uses_best_then_latest() {
    let f = Fixture::new();
    let run = f.dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let out = sample(&["--checkpoint", run.to_str().unwrap()]);
    assert_error(&out, "best.ckpt");
    write_checkpoint(&run.join("latest.ckpt"));
    let out = sample(&["--checkpoint", run.to_str().unwrap(), "--max-new-tokens", "5"]);
    assert_ok(&out);
    assert!(stderr(&out).contains("latest.ckpt"), "{}", stderr(&out));
    std::fs::copy(run.join("latest.ckpt"), run.join("best.ckpt")).unwrap();
    let out = sample(&["--checkpoint", run.to_str().unwrap(), "--max-new-tokens", "5"]);
    assert_ok(&out);
    assert!(stderr(&out).contains("best.ckpt"), "{}", stderr(&out));
}

#[test]
fn top_table_for_the_prompts_next_token() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let out = sample(&[
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "hear",
        "--top",
        "5",
        "--max-new-tokens",
        "0",
    ]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("after \"hear\""), "{text}");
    assert!(text.contains("rank"), "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_end().ends_with('%')).count(), 5, "{text}");
    assert!(!text.contains("chose"), "{text}");
}

#[test]
fn top_table_at_each_generated_step() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let out = sample(&["--checkpoint", ckpt.to_str().unwrap(), "--top", "3", "--max-new-tokens", "4"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert_eq!(text.matches("chose").count(), 4, "{text}");
    assert_eq!(text.lines().filter(|l| l.trim_end().ends_with('%')).count(), 12, "{text}");
}

#[test]
fn score_prints_log_probs_perplexity_and_bits_per_byte() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let out = sample(&["--checkpoint", ckpt.to_str().unwrap(), "--score", "hear me"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("7 tokens, 7 bytes"), "{text}");
    assert!(text.contains("perplexity") && text.contains("bits per byte"), "{text}");
    // A random model is close to uniform over the vocabulary.
    let vocab = CharTokenizer::from_text(TEXT).vocab_size() as f64;
    let ppl: f64 = text
        .split("perplexity ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {text}"));
    assert!((ppl / vocab - 1.0).abs() < 0.5, "perplexity {ppl} of a random model, vocab {vocab}");
}

#[test]
fn unknown_prompt_characters_are_named_or_dropped() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let out =
        sample(&["--checkpoint", ckpt.to_str().unwrap(), "--prompt", "hear Zoë", "--max-new-tokens", "3"]);
    assert_error(&out, "--drop-unknown");
    assert!(stderr(&out).contains('Z'), "{}", stderr(&out));
    let out = sample(&[
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--prompt",
        "hear Zoë",
        "--max-new-tokens",
        "3",
        "--drop-unknown",
    ]);
    assert_ok(&out);
    assert!(stdout(&out).starts_with("hear o"), "{}", stdout(&out));
    assert!(stderr(&out).contains("'Z'") && stderr(&out).contains("'ë'"), "{}", stderr(&out));
}

#[test]
fn bad_sampling_values_are_refused() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let c = ckpt.to_str().unwrap();
    assert_error(&sample(&["--checkpoint", c, "--temperature", "-1"]), "temperature");
    assert_error(&sample(&["--checkpoint", c, "--temperature", "NaN"]), "temperature");
    assert_error(&sample(&["--checkpoint", c, "--top-p", "0"]), "top-p");
    assert_error(&sample(&["--checkpoint", c, "--top-p", "1.5"]), "top-p");
    assert_error(&sample(&["--checkpoint", c, "--top-k", "0"]), "top-k");
    assert_error(&sample(&["--checkpoint", c, "--top", "0"]), "--top");
}

#[test]
fn missing_torn_and_foreign_checkpoints_are_refused() {
    let f = Fixture::new();
    let dir = f.dir.path();
    let missing = dir.join("nope.ckpt");
    assert_error(&sample(&["--checkpoint", missing.to_str().unwrap()]), "nope.ckpt");

    let bytes = std::fs::read(f.ckpt()).unwrap();
    let torn = dir.join("torn.ckpt");
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(&sample(&["--checkpoint", torn.to_str().unwrap()]), "torn.ckpt");

    let foreign = dir.join("foreign.ckpt");
    std::fs::write(&foreign, b"this is a text file, not a checkpoint\n").unwrap();
    assert_error(&sample(&["--checkpoint", foreign.to_str().unwrap()]), "foreign.ckpt");

    let flipped = dir.join("flipped.ckpt");
    let mut corrupt = bytes.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    std::fs::write(&flipped, &corrupt).unwrap();
    assert_error(&sample(&["--checkpoint", flipped.to_str().unwrap()]), "flipped.ckpt");
}

#[test]
fn unreadable_prompt_file_is_named() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let missing = f.dir.path().join("prompt.txt");
    let out = sample(&["--checkpoint", ckpt.to_str().unwrap(), "--prompt-file", missing.to_str().unwrap()]);
    assert_error(&out, "prompt.txt");
}

/// A batch keeps a KV cache per sample and every sample's tokens until all are printed, so
/// one past the memory limit is refused before anything is allocated (it once aborted
/// with "memory allocation failed"); one sample at a time streams any length.
#[test]
fn a_batch_too_large_for_memory_is_refused_before_it_starts() {
    let f = Fixture::new();
    let ckpt = f.ckpt();
    let c = ckpt.to_str().unwrap();
    for (samples, tokens) in
        [("100000000000", "5"), ("2", "10000000000"), ("18446744073709551615", "18446744073709551615")]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_sample"))
            .args(["--checkpoint", c, "--num-samples", samples, "--max-new-tokens", tokens])
            .env("QUILL_MAX_MEMORY", "16")
            .output()
            .expect("running the sample binary");
        assert_error(&out, "--num-samples");
        assert!(stderr(&out).contains("--num-samples 1 streams"), "{}", stderr(&out));
    }
}
