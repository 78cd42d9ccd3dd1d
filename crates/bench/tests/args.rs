//! Command-line values the benchmark cannot run with are refused before anything runs.

use std::process::Command;

#[test]
fn zero_steps_are_refused_in_one_sentence() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench")).args(["--steps", "0"]).output().expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid value '0' for '--steps <STEPS>'"), "{stderr}");
}

/// A thread count past a train config's limit once hung starting 100000 threads, and
/// 10^11 sample tokens tried to keep them all: both are refused by the argument parser.
#[test]
fn thread_counts_and_sample_lengths_past_their_limits_are_refused() {
    for (flag, value) in [("--threads", "100000"), ("--sample-tokens", "100000000000")] {
        let out = Command::new(env!("CARGO_BIN_EXE_bench")).args([flag, value]).output().expect("run bench");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(&format!("invalid value '{value}' for '{flag}")), "{stderr}");
    }
}
