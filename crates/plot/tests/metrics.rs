//! Reading metrics.jsonl: complete files, runs in progress or killed mid-write, rows
//! without val fields, malformed lines, and loading several runs.

use std::path::Path;

use plot::{loss_series, read_metrics, MetricRow, Run, XAxis};

const ROW0: &str = r#"{"step":0,"tokens":0,"train_loss":4.17,"val_loss":4.18,"elapsed_s":0.0}"#;
const ROW1: &str = r#"{"step":10,"tokens":1000,"train_loss":3.9,"lr":0.0006,"elapsed_s":1.5}"#;
const ROW2: &str = r#"{"step":20,"tokens":2000,"train_loss":3.5,"elapsed_s":3.0}"#;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write test file");
    path
}

#[test]
fn reads_complete_rows_with_and_without_val_fields() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "metrics.jsonl", &format!("{ROW0}\n{ROW1}\n{ROW2}\n"));
    let rows = read_metrics(&path).expect("valid file");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].val_loss, Some(4.18));
    assert_eq!(rows[1].val_loss, None);
    assert_eq!(rows[1].lr, Some(0.0006));
    assert_eq!(rows[2].tokens, 2000);

    let series = loss_series(&rows, XAxis::Step);
    assert_eq!(series[0].label, "train loss");
    assert_eq!(series[0].points, vec![(0.0, 4.17), (10.0, 3.9), (20.0, 3.5)]);
    assert_eq!(series[1].points, vec![(0.0, 4.18)]);
    let by_tokens = loss_series(&rows, XAxis::Tokens);
    assert_eq!(by_tokens[0].points[2], (2000.0, 3.5));
}

#[test]
fn a_half_written_last_line_is_ignored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cut = &ROW2[..25];
    let path = write(dir.path(), "metrics.jsonl", &format!("{ROW0}\n{ROW1}\n{cut}"));
    assert_eq!(read_metrics(&path).expect("tolerated").len(), 2);
    // Cut mid-value but followed by a newline and blank lines: still a torn write.
    let path = write(dir.path(), "torn.jsonl", &format!("{ROW0}\n{cut}\n\n"));
    assert_eq!(read_metrics(&path).expect("tolerated").len(), 1);
}

#[test]
fn blank_lines_unknown_fields_and_null_losses_are_fine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let extra = r#"{"step":30,"tokens":3000,"train_loss":null,"new_field":[1,2],"elapsed_s":4.0}"#;
    let path = write(dir.path(), "metrics.jsonl", &format!("\n{ROW0}\n\n  \n{extra}\n"));
    let rows = read_metrics(&path).expect("valid file");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].train_loss, None);
}

#[test]
fn an_empty_file_is_a_run_that_has_not_logged_yet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "metrics.jsonl", "");
    assert_eq!(read_metrics(&path).expect("empty is fine"), Vec::<MetricRow>::new());
}

#[test]
fn a_malformed_middle_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write(dir.path(), "metrics.jsonl", &format!("{ROW0}\n\n{{\"step\": oops}}\n{ROW2}\n"));
    let message = read_metrics(&path).expect_err("line 3 is bad").to_string();
    assert!(message.contains("metrics.jsonl:3:"), "{message}");
    assert!(message.contains("oops"), "{message}");

    // A complete last line that is wrong (not a torn write) is an error too.
    let path = write(
        dir.path(),
        "wrong.jsonl",
        &format!("{ROW0}\n{{\"step\": \"ten\", \"tokens\": 0, \"elapsed_s\": 0}}\n"),
    );
    let message = read_metrics(&path).expect_err("line 2 is bad").to_string();
    assert!(message.contains("wrong.jsonl:2:"), "{message}");
}

#[test]
fn a_missing_file_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let message = read_metrics(&dir.path().join("nope.jsonl")).expect_err("missing").to_string();
    assert!(message.contains("nope.jsonl"), "{message}");
}

#[test]
fn several_runs_load_by_folder_or_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in
        [("small", format!("{ROW0}\n{ROW1}\n")), ("wide", format!("{ROW0}\n{ROW1}\n{ROW2}\n"))]
    {
        std::fs::create_dir(dir.path().join(name)).expect("run folder");
        write(&dir.path().join(name), "metrics.jsonl", &text);
    }
    let small = Run::load(&dir.path().join("small")).expect("folder");
    let wide = Run::load(&dir.path().join("wide").join("metrics.jsonl")).expect("file");
    assert_eq!((small.name.as_str(), small.rows.len()), ("small", 2));
    assert_eq!((wide.name.as_str(), wide.rows.len()), ("wide", 3));

    let missing = Run::load(&dir.path().join("nope")).expect_err("no folder").to_string();
    assert!(missing.contains("no such run folder"), "{missing}");
    std::fs::create_dir(dir.path().join("empty")).expect("folder");
    let no_metrics = Run::load(&dir.path().join("empty")).expect_err("no metrics.jsonl").to_string();
    assert!(no_metrics.contains("metrics.jsonl: not found"), "{no_metrics}");
}

#[test]
fn rows_round_trip_through_json() {
    let row =
        MetricRow { step: 5, tokens: 640, train_loss: Some(2.5), elapsed_s: 1.25, ..MetricRow::default() };
    let text = serde_json::to_string(&row).expect("serialize");
    assert_eq!(text, r#"{"step":5,"tokens":640,"train_loss":2.5,"elapsed_s":1.25}"#);
    assert_eq!(serde_json::from_str::<MetricRow>(&text).expect("parse"), row);
}
