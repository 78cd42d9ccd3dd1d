//! The `plot` binary: writes the SVG where asked, prints a chart, and fails with a clear
//! message and a non-zero exit for a missing folder, a missing metrics.jsonl or no rows.

use std::process::Command;

fn plot(args: &[&str], cwd: &std::path::Path) -> (bool, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_plot")).args(args).current_dir(cwd).output().expect("run plot");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn make_run(root: &std::path::Path, name: &str, metrics: &str) {
    std::fs::create_dir_all(root.join("runs").join(name)).expect("run folder");
    std::fs::write(root.join("runs").join(name).join("metrics.jsonl"), metrics).expect("metrics");
}

#[test]
fn plots_two_runs_into_the_current_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows: String = (0..50)
        .map(|i| {
            let loss = 1.5 + 2.5 * (-(i as f64) / 10.0).exp();
            let val = if i % 10 == 0 { format!(",\"val_loss\":{:.3}", loss + 0.1) } else { String::new() };
            format!(
                "{{\"step\":{},\"tokens\":{},\"train_loss\":{loss:.3}{val},\"elapsed_s\":{}}}\n",
                i * 10,
                i * 10240,
                i
            )
        })
        .collect();
    make_run(dir.path(), "a", &rows);
    make_run(dir.path(), "b", &rows);
    let (ok, stdout, stderr) = plot(&["runs/a", "runs/b", "--x", "tokens", "--log"], dir.path());
    assert!(ok, "{stderr}");
    assert!(stdout.contains("a: step 490") && stdout.contains("wrote loss.svg"), "{stdout}");
    assert!(stdout.contains('└'), "terminal chart: {stdout}");
    let svg = std::fs::read_to_string(dir.path().join("loss.svg")).expect("loss.svg in the current folder");
    assert_eq!(svg.matches("<path").count(), 6);

    let (ok, _, stderr) = plot(&["runs/a", "--out", "pics/a.svg", "--quiet"], dir.path());
    assert!(!ok && stderr.contains("pics/a.svg"), "missing output folder is reported: {stderr}");
    let (ok, _, stderr) = plot(&["runs/a", "--x", "epochs"], dir.path());
    assert!(!ok && stderr.contains("expected step, tokens or time"), "{stderr}");
}

#[test]
fn bad_runs_fail_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ok, _, stderr) = plot(&["runs/nope"], dir.path());
    assert!(!ok && stderr.contains("runs/nope: no such run folder"), "{stderr}");

    std::fs::create_dir_all(dir.path().join("runs/empty")).expect("folder");
    let (ok, _, stderr) = plot(&["runs/empty"], dir.path());
    assert!(!ok && stderr.contains("runs/empty/metrics.jsonl: not found"), "{stderr}");

    make_run(dir.path(), "fresh", "");
    let (ok, _, stderr) = plot(&["runs/fresh"], dir.path());
    assert!(!ok && stderr.contains("runs/fresh/metrics.jsonl: no metric rows yet"), "{stderr}");

    make_run(
        dir.path(),
        "broken",
        "{\"step\":0,\"tokens\":0,\"elapsed_s\":0}\nnot json\n{\"step\":1,\"tokens\":0,\"elapsed_s\":0}\n",
    );
    let (ok, _, stderr) = plot(&["runs/broken"], dir.path());
    assert!(!ok && stderr.contains("runs/broken/metrics.jsonl:2:"), "{stderr}");
    assert!(!dir.path().join("loss.svg").exists());
}

#[test]
fn out_never_replaces_a_file_that_is_not_a_plot() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rows = "{\"step\":1,\"tokens\":10,\"train_loss\":3.0,\"elapsed_s\":1}\n{\"step\":2,\"tokens\":20,\"train_loss\":2.0,\"elapsed_s\":2}\n";
    make_run(dir.path(), "a", rows);
    let ckpt = dir.path().join("runs/a/best.ckpt");
    std::fs::write(&ckpt, b"QUILLCKP not a plot").expect("checkpoint stand-in");
    for out in ["runs/a/best.ckpt", "runs/a/metrics.jsonl", "runs/a"] {
        let (ok, _, stderr) = plot(&["runs/a", "--out", out, "--quiet"], dir.path());
        assert!(!ok && stderr.contains("is not an SVG image"), "--out {out}: {stderr}");
    }
    assert_eq!(std::fs::read(&ckpt).expect("checkpoint"), b"QUILLCKP not a plot");
    // A plot written earlier is replaced.
    for _ in 0..2 {
        let (ok, _, stderr) = plot(&["runs/a", "--out", "a.svg", "--quiet"], dir.path());
        assert!(ok, "{stderr}");
    }
}
