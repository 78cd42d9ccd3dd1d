//! The `train` binary killed and resumed: SIGKILL at a few moments (one of them while
//! latest.ckpt is being written) and SIGTERM, each followed by `--resume`, ends exactly
//! where an uninterrupted run does, and leaves no temporary file behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use model::checkpoint::Checkpoint;
use plot::MetricRow;

const TRAIN: &str = env!("CARGO_BIN_EXE_train");

/// The tiny config as a file, with a checkpoint after every step (so that writes are
/// frequent enough to be caught) and one worker thread (the machine may be small).
fn write_config(dir: &Path, name: &str) -> PathBuf {
    let mut config = common::tiny_config(dir);
    config.train.max_iters = 100;
    config.train.checkpoint_interval = 1;
    config.train.eval_interval = 25;
    config.train.log_interval = 1;
    config.train.threads = 1;
    config.train.name = name.into();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config.to_toml()).expect("write the config");
    path
}

fn train(args: &[&str]) -> Child {
    Command::new(TRAIN)
        .args(args)
        .arg("--quiet")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start train")
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("wait for train");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "train failed: {stderr}");
    stderr
}

/// Polls until `ready` holds (or 20 s pass, which fails the test).
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

fn temporaries(run_dir: &Path) -> Vec<String> {
    match std::fs::read_dir(run_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The step of the run's latest.ckpt, or 0 while it has none (or it is being replaced).
fn saved_step(run_dir: &Path) -> u64 {
    Checkpoint::load(&run_dir.join("latest.ckpt")).map_or(0, |c| c.step)
}

/// metrics.jsonl without the timing fields, which differ from one run to another.
fn metrics(run_dir: &Path) -> Vec<MetricRow> {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    text.lines()
        .map(|line| {
            let mut row: MetricRow = serde_json::from_str(line).expect("a metrics row");
            (row.elapsed_s, row.tok_per_s) = (0.0, None);
            row
        })
        .collect()
}

/// Resumes the run and kills it as soon as a checkpoint's temporary file appears; tries
/// again (a write takes milliseconds) until the kill lands during one.
fn kill_during_a_write(run_dir: &Path, resume: &[&str]) {
    for _ in 0..10 {
        let mut child = train(resume);
        let own = format!("latest.ckpt.tmp-{}", child.id());
        let writing = || temporaries(run_dir).contains(&own);
        wait_for("a checkpoint being written", writing);
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        if writing() {
            return;
        }
    }
    panic!("no kill landed during a checkpoint write in 10 tries");
}

/// Every scalar of the run's TensorBoard event files as (step, tag, value), sorted.
fn scalars(run_dir: &Path) -> Vec<(u64, String, u32)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(run_dir).expect("run folder") {
        let path = entry.expect("entry").path();
        if !path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("events.out.tfevents.")) {
            continue;
        }
        for event in plot::tensorboard::read_events(&path).expect("an intact event file") {
            all.extend(event.scalars.into_iter().map(|(tag, value)| (event.step, tag, value.to_bits())));
        }
    }
    all.sort();
    all
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("run kill");
    assert!(status.success(), "kill -TERM failed");
}

#[test]
fn killed_and_resumed_runs_end_bit_for_bit_as_an_uninterrupted_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = write_config(dir.path(), "whole");
    finish(train(&["--config", whole.to_str().expect("utf-8 path")]));
    let whole_dir = dir.path().join("runs/whole");

    let killed = write_config(dir.path(), "killed");
    let run_dir = dir.path().join("runs/killed");
    let resume = ["--resume", run_dir.to_str().expect("utf-8 path")];

    // 1. SIGKILL once a few checkpoints exist, between writes or during one.
    let mut child = train(&["--config", killed.to_str().expect("utf-8 path")]);
    wait_for("a checkpoint at step 10", || saved_step(&run_dir) >= 10);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    // 2. SIGKILL while latest.ckpt is being written: its temporary file stays behind.
    kill_during_a_write(&run_dir, &resume);

    // 3. SIGTERM saves and stops cleanly, as Ctrl-C does; the resume removed the temporary.
    let child = train(&resume);
    wait_for("a checkpoint at step 40", || saved_step(&run_dir) >= 40);
    // The running process may be writing its next checkpoint: only its own temporary may exist.
    let own = format!("latest.ckpt.tmp-{}", child.id());
    let stale: Vec<String> = temporaries(&run_dir).into_iter().filter(|name| *name != own).collect();
    assert!(stale.is_empty(), "the resume left {stale:?}");
    sigterm(&child);
    let stderr = finish(child);
    assert!(stderr.contains("Stop requested"), "{stderr}");
    let stopped_at = saved_step(&run_dir);
    assert!(stopped_at < 100, "the run finished before SIGTERM arrived");

    // 4. SIGKILL at once after a resume, then a resume to the end.
    let mut child = train(&resume);
    wait_for("a step after the resume", || saved_step(&run_dir) > stopped_at);
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    finish(train(&resume));

    assert!(temporaries(&run_dir).is_empty(), "left behind: {:?}", temporaries(&run_dir));
    let a = Checkpoint::load(&whole_dir.join("latest.ckpt")).expect("uninterrupted checkpoint");
    let b = Checkpoint::load(&run_dir.join("latest.ckpt")).expect("resumed checkpoint");
    assert_eq!(b.step, 100);
    assert_eq!(a.params, b.params, "weights differ");
    assert_eq!(a.optimizer, b.optimizer, "AdamW state differs");
    assert_eq!(metrics(&whole_dir), metrics(&run_dir), "metrics.jsonl differs");
    assert_eq!(scalars(&whole_dir), scalars(&run_dir), "the TensorBoard scalars differ");
}
