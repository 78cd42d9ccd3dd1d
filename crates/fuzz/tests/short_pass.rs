//! A short fuzz pass of every target from its committed corpus, as part of `cargo test`:
//! a loader change that lets a known kind of damage panic, allocate past the bound or
//! hang fails here within seconds. (The long runs are `cargo run --release -p fuzz`.)

use std::path::PathBuf;
use std::time::Duration;

#[test]
fn every_target_survives_a_short_pass() {
    let crash_dir = tempfile::tempdir().expect("temp dir");
    let mut summary = Vec::new();
    for target in fuzz::TARGETS {
        let options = fuzz::Options {
            execs: 1500,
            seed: 7,
            max_len: 64 * 1024,
            alloc_limit: 1 << 30,
            timeout: Duration::from_secs(60),
            crash_dir: crash_dir.path().to_path_buf(),
            corpus_dir: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)),
            corpus_out: None,
        };
        let report = fuzz::run(target, &options).expect("the target starts");
        assert_eq!(report.execs, 1500);
        assert!(
            report.failures.is_empty(),
            "{target}: {:#?} (replay with cargo run --release -p fuzz -- {target} --input FILE)",
            report.failures
        );
        summary.push(format!("{target} {:.2} s", report.elapsed.as_secs_f64()));
    }
    println!("{}", summary.join(", "));
}

#[test]
fn every_target_has_a_committed_corpus() {
    for target in fuzz::TARGETS {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        let inputs = fuzz::runner::read_corpus(&dir);
        assert!(!inputs.is_empty(), "{}: no inputs; run cargo run -p fuzz -- seeds", dir.display());
        assert!(
            inputs.iter().all(|i| i.len() < 100 * 1024),
            "{}: keep committed inputs small",
            dir.display()
        );
    }
}
