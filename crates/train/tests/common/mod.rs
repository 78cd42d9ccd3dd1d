//! Helpers shared by the run tests: a tiny corpus and a tiny config in a temporary folder.

#![allow(dead_code)]

use std::path::Path;

use train::config::Config;
use train::{RunOptions, RunSummary, Start, TrainError, Verbosity};

/// About 6,000 characters of simple, repetitive English: learnable in a few dozen steps.
pub fn tiny_text() -> String {
    let lines = [
        "the cat sat on the mat.",
        "the dog ran to the log.",
        "a bird sang in the tree.",
        "the sun is warm and bright.",
        "we walk along the river.",
        "my friend reads a book.",
    ];
    let mut text = String::new();
    let mut x = 7u32;
    while text.len() < 6000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        text.push_str(lines[(x >> 16) as usize % lines.len()]);
        text.push('\n');
    }
    text
}

/// A 2-layer, 32-wide model on the tiny corpus, prepared on first use in `dir/data`,
/// its runs in `dir/runs`.
pub fn tiny_config(dir: &Path) -> Config {
    let input = dir.join("input.txt");
    if !input.exists() {
        std::fs::write(&input, tiny_text()).expect("write the tiny corpus");
    }
    let mut c = Config::default();
    c.model.n_layer = 2;
    c.model.n_head = 2;
    c.model.n_embd = 32;
    c.model.block_size = 16;
    c.data.dataset = dir.join("data");
    c.data.input = vec![input];
    c.optim.learning_rate = 1e-2;
    c.optim.min_lr = 1e-3;
    c.optim.warmup_iters = 5;
    c.optim.lr_decay_iters = 40;
    c.train.batch_size = 8;
    c.train.max_iters = 40;
    c.train.eval_interval = 20;
    c.train.eval_iters = 2;
    c.train.log_interval = 5;
    c.train.out_dir = dir.join("runs");
    c.train.name = "tiny".into();
    c.train.sample_tokens = 0;
    c
}

pub fn run_fresh(config: &Config) -> Result<RunSummary, TrainError> {
    train::run(&RunOptions {
        start: Start::Fresh { config: Box::new(config.clone()), origin: "tiny.toml".into() },
        verbosity: Verbosity::Quiet,
        handle_ctrl_c: false,
    })
}

pub fn run_resume(run_dir: &Path, overrides: &[&str]) -> Result<RunSummary, TrainError> {
    train::run(&RunOptions {
        start: Start::Resume {
            run_dir: run_dir.to_path_buf(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
        },
        verbosity: Verbosity::Quiet,
        handle_ctrl_c: false,
    })
}

/// One run resumed, beside the same run straight through.
pub struct Resumed {
    pub straight: RunSummary,
    pub second: RunSummary,
    /// metrics.jsonl as the first half left it, before the resume appended to it.
    pub first_metrics: String,
}

/// Runs `config` for `steps` steps straight through, then again stopped half way and
/// resumed to the end, in runs/straight and runs/split; fails the test unless the
/// resumed losses are the straight run's, bit for bit.
pub fn straight_and_resumed(config: &Config, steps: u64) -> Resumed {
    let mut config = config.clone();
    config.train.max_iters = steps;
    config.train.name = "straight".into();
    let straight = run_fresh(&config).expect("straight run");
    config.train.max_iters = steps / 2;
    config.train.name = "split".into();
    let first = run_fresh(&config).expect("first half");
    assert_eq!(first.step, steps / 2);
    let first_metrics =
        std::fs::read_to_string(first.run_dir.join("metrics.jsonl")).expect("metrics of the first half");
    let second = run_resume(&first.run_dir, &[&format!("train.max_iters={steps}")]).expect("second half");
    assert_eq!(second.step, steps);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let resumed: Vec<f32> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(bits(&resumed), bits(&straight.losses), "losses differ after resume");
    Resumed { straight, second, first_metrics }
}

/// The message of an error, failing the test on success.
pub fn error_of(result: Result<RunSummary, TrainError>) -> String {
    match result {
        Ok(s) => panic!("expected an error, the run finished at step {}", s.step),
        Err(e) => e.to_string(),
    }
}

/// Every file of a folder with its bytes, sorted by name: to check that a command
/// changed nothing there.
pub fn folder_snapshot(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("folder")
        .map(|e| e.expect("entry"))
        .map(|e| (e.file_name(), std::fs::read(e.path()).expect("file")))
        .collect();
    files.sort();
    files
}
