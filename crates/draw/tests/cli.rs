//! The `draw` binary never replaces a file that is not an SVG picture: its --out once
//! overwrote the text it counted and the checkpoint it drew.

use std::process::Command;

fn draw(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_draw")).args(args).output().expect("running draw")
}

#[test]
fn out_never_replaces_an_input_or_any_file_but_a_picture() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("text.txt");
    let original = "First Citizen:\nBefore we proceed any further, hear me speak.\n".repeat(20);
    std::fs::write(&text, &original).expect("write");
    let t = text.to_str().unwrap();

    let out = draw(&["letters", "--text", t, "--out", t]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("exists and is not an SVG image"), "{err}");
    assert_eq!(std::fs::read_to_string(&text).unwrap(), original, "the input is untouched");

    // Refused before the checkpoint is even read.
    let out = draw(&["architecture", "--checkpoint", "missing.ckpt", "--out", t]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists and is not an SVG image"));

    // A picture drawn earlier is replaced.
    let svg = dir.path().join("letters.svg");
    let s = svg.to_str().unwrap();
    assert!(draw(&["letters", "--text", t, "--out", s]).status.success());
    let again = draw(&["letters", "--text", t, "--out", s]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}
