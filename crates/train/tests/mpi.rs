//! One run on two MPI ranks (`mpirun -np 2 train ...`, built with `--features mpi`): the
//! same bits on every repeat; the one-process run's losses within a stated bound, with
//! AdamW and with Muon; a run started on 2 ranks resumed on 1; the sharded optimizer equal
//! to the unsharded one; a rank that fails ending the job with the checkpoint intact; a
//! STOP file stopping every rank at the same step. Needs `mpirun` on the PATH (`.ci/run`
//! installs OpenMPI).

#![cfg(feature = "mpi")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use model::checkpoint::Checkpoint;
use plot::MetricRow;
use train::config::Config;

const TRAIN: &str = env!("CARGO_BIN_EXE_train");

/// How far the 2-rank run's losses may be from the one-process run's: the gradient is the
/// same sum grouped differently ((a + b) + (c + d) against ((a + b) + c) + d), so the
/// weights drift apart by float rounding, step after step.
const TOLERANCE: f64 = 1e-4;

/// The tiny config with 2 micro-batches per step (one per rank), one thread per rank, a
/// checkpoint every 5 steps, as a file in `dir`.
fn tiny(dir: &Path, name: &str, max_iters: u64) -> Config {
    let mut config = common::tiny_config(dir);
    config.train.gradient_accumulation_steps = 2;
    config.train.batch_size = 4;
    config.train.max_iters = max_iters;
    config.train.checkpoint_interval = 5;
    config.train.log_interval = 1;
    config.train.threads = 1;
    config.train.name = name.into();
    config
}

fn write(dir: &Path, config: &Config) -> PathBuf {
    let path = dir.join(format!("{}.toml", config.train.name));
    std::fs::write(&path, config.to_toml()).expect("write the config");
    path
}

/// `mpirun -np <ranks> train <args> --quiet`, allowed to run as root (CI is) and on more
/// ranks than cores.
fn mpirun(ranks: usize, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("mpirun");
    command
        .args(["-np", &ranks.to_string(), "--oversubscribe", TRAIN])
        .args(args)
        .arg("--quiet")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_rmaps_base_oversubscribe", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("start mpirun (is OpenMPI installed? apt-get install openmpi-bin)")
}

/// Runs `config` on `ranks` ranks and fails the test unless the job succeeded.
fn train_on(ranks: usize, dir: &Path, config: &Config) -> PathBuf {
    let path = write(dir, config);
    let out = mpirun(ranks, &["--config", path.to_str().expect("a UTF-8 path")], &[]);
    assert!(out.status.success(), "mpirun failed: {}", String::from_utf8_lossy(&out.stderr));
    config.train.out_dir.join(&config.train.name)
}

fn rows(run_dir: &Path) -> Vec<MetricRow> {
    plot::read_metrics(&run_dir.join("metrics.jsonl")).expect("metrics.jsonl")
}

fn losses(run_dir: &Path) -> Vec<f64> {
    rows(run_dir).iter().filter_map(|r| r.train_loss).collect()
}

fn latest(run_dir: &Path) -> Checkpoint {
    Checkpoint::load(&run_dir.join("latest.ckpt")).expect("latest.ckpt")
}

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "as many losses");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn two_ranks_repeat_the_same_bits_and_agree_with_one_process() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let first = train_on(2, dir.path(), &tiny(dir.path(), "first", 20));
    let again = train_on(2, dir.path(), &tiny(dir.path(), "again", 20));
    let (a, b) = (latest(&first), latest(&again));
    assert_eq!(a.params, b.params, "2 ranks: the weights differ between two runs");
    assert_eq!(a.optimizer, b.optimizer, "2 ranks: AdamW's moments differ between two runs");
    assert_eq!(losses(&first), losses(&again));
    let sync: Vec<f64> = rows(&first).iter().filter_map(|r| r.sync_ms).collect();
    assert_eq!(sync.len(), 20, "every logged step records the time of the sum across ranks");

    let one = common::run_fresh(&tiny(dir.path(), "one", 20)).expect("one process");
    let difference = max_difference(&losses(&first), &losses(&one.run_dir));
    assert!(difference < TOLERANCE, "2 ranks and 1 process: losses {difference:e} apart");
}

#[test]
fn muon_on_two_ranks_agrees_with_one_process() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let muon = |name: &str| {
        let mut config = tiny(dir.path(), name, 20);
        config.optim.optimizer = train::config::OptimizerKind::Muon;
        config
    };
    let two = train_on(2, dir.path(), &muon("muon-two"));
    let one = common::run_fresh(&muon("muon-one")).expect("one process");
    let difference = max_difference(&losses(&two), &losses(&one.run_dir));
    assert!(difference < TOLERANCE, "Muon, 2 ranks and 1 process: losses {difference:e} apart");
}

#[test]
fn a_run_on_two_ranks_resumes_on_one() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let run_dir = train_on(2, dir.path(), &tiny(dir.path(), "split", 20));
    let resumed = common::run_resume(&run_dir, &["train.max_iters=40"]).expect("resume on 1 rank");
    let whole = common::run_fresh(&tiny(dir.path(), "whole", 40)).expect("40 steps on 1 rank");
    assert_eq!(resumed.step, 40);
    let difference = max_difference(&losses(&run_dir), &losses(&whole.run_dir));
    assert!(difference < TOLERANCE, "2 then 1 ranks against 1: losses {difference:e} apart");
    let (a, b) = (resumed.val_loss.expect("val loss"), whole.val_loss.expect("val loss"));
    assert!((a - b).abs() < TOLERANCE, "val loss {a} against {b}");
}

#[test]
fn the_sharded_optimizer_gives_the_unsharded_bits() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let plain = train_on(2, dir.path(), &tiny(dir.path(), "plain", 12));
    let mut config = tiny(dir.path(), "sharded", 12);
    config.train.shard_optimizer = true;
    let sharded = train_on(2, dir.path(), &config);
    let (a, b) = (latest(&plain), latest(&sharded));
    assert_eq!(a.params, b.params, "sharded and unsharded weights differ");
    assert_eq!(a.optimizer, b.optimizer, "the gathered moments differ from the unsharded ones");
    assert_eq!(losses(&plain), losses(&sharded));
    // The checkpoint is the ordinary one: one process continues it.
    let resumed = common::run_resume(&sharded, &["train.max_iters=15"]).expect("resume on 1 rank");
    assert_eq!(resumed.step, 15);
}

#[test]
fn a_failing_rank_ends_the_job_and_leaves_the_checkpoint() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = tiny(dir.path(), "fails", 20);
    let path = write(dir.path(), &config);
    let out = mpirun(2, &["--config", path.to_str().expect("UTF-8")], &[("QUILL_FAIL_RANK_AT_STEP", "1:8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the job should fail: {stderr}");
    assert!(stderr.contains("rank 1 of 2") && stderr.contains("before step 8"), "{stderr}");
    let run_dir = config.train.out_dir.join("fails");
    assert_eq!(latest(&run_dir).step, 5, "latest.ckpt is the one of step 5, intact");
    let resumed = common::run_resume(&run_dir, &[]).expect("resume after the failure");
    assert_eq!(resumed.step, 20);
}

#[test]
fn ranks_must_divide_the_micro_batches() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut config = tiny(dir.path(), "odd", 5);
    config.train.gradient_accumulation_steps = 3;
    let path = write(dir.path(), &config);
    let out = mpirun(2, &["--config", path.to_str().expect("UTF-8")], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("train.gradient_accumulation_steps = 3 does not divide among 2 ranks"),
        "{stderr}"
    );
}

#[test]
fn a_stop_file_stops_every_rank_at_the_same_step() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut config = tiny(dir.path(), "stops", 1_000_000);
    config.train.checkpoint_interval = 0;
    config.train.eval_interval = 0;
    let run_dir = config.train.out_dir.join("stops");
    let path = write(dir.path(), &config);
    let mut child = Command::new("mpirun")
        .args(["-np", "2", "--oversubscribe", TRAIN, "--config", path.to_str().expect("UTF-8"), "--quiet"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .spawn()
        .expect("start mpirun");
    // Once a few steps are logged, ask the run to stop.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(run_dir.join("metrics.jsonl")).map_or(0, |t| t.lines().count()) < 3 {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(run_dir.join("STOP"), "").expect("write STOP");
    // Both ranks must finish: a rank left behind would wait for the other forever.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for mpirun") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().expect("kill mpirun");
            panic!("the ranks did not all stop");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    let saved = latest(&run_dir);
    let last_logged = rows(&run_dir).last().expect("a row").step;
    assert_eq!(saved.step, last_logged, "saved once, at the step the ranks stopped at");
    assert!(!run_dir.join("STOP").exists(), "the STOP file is removed");
}
