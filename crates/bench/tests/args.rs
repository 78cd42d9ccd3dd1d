//! Command-line values the benchmark cannot run with are refused before anything runs.

use std::process::Command;

#[test]
fn zero_steps_are_refused_in_one_sentence() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench")).args(["--steps", "0"]).output().expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("invalid value '0' for '--steps <STEPS>'"), "{stderr}");
}
