//! Paths a run reads and writes: an input that is also an output is refused; the run
//! folder records where its dataset is, so that it resumes from any folder.

mod common;

use std::path::Path;
use std::process::Command;

use common::{error_of, run_fresh, tiny_config};

#[test]
fn a_data_input_inside_the_dataset_files_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    let inside = dir.path().join("data/train.bin");
    std::fs::hard_link(dir.path().join("input.txt"), &inside).expect("hard link");
    config.data.input = vec![dir.path().join("input.txt")];
    let m = error_of(run_fresh(&config));
    assert!(
        m.starts_with("tiny.toml: data.input:") && m.contains("a file of the prepared dataset itself"),
        "{m}"
    );
    assert_eq!(std::fs::read_to_string(&inside).expect("read"), common::tiny_text());
}

#[test]
fn the_run_folder_records_absolute_data_paths_so_resume_works_from_anywhere() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.data.dataset = "data".into();
    config.data.input = vec!["input.txt".into()];
    config.train.out_dir = "runs".into();
    config.train.max_iters = 4;
    std::fs::write(dir.path().join("tiny.toml"), config.to_toml()).expect("write the config");
    let train = |cwd: &Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_train"))
            .args(args)
            .arg("--quiet")
            .current_dir(cwd)
            .output()
            .expect("run train");
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = train(dir.path(), &["--config", "tiny.toml"]);
    assert!(ok, "{stderr}");
    let run_dir = dir.path().join("runs/tiny");
    let recorded = train::Config::load(&run_dir.join("config.toml"), &[]).expect("config.toml");
    assert_eq!(recorded.data.dataset, dir.path().join("data"));
    assert_eq!(recorded.data.input, vec![dir.path().join("input.txt")]);

    // From another folder.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let run = run_dir.to_str().expect("utf-8 path");
    let (ok, stderr) = train(elsewhere.path(), &["--resume", run, "--set", "train.max_iters=6"]);
    assert!(ok, "{stderr}");
    let (ok, stderr) = train(elsewhere.path(), &["--evaluate", run]);
    assert!(ok, "{stderr}");

    // A dataset that has moved is named, for --resume and --evaluate alike.
    std::fs::rename(dir.path().join("data"), dir.path().join("moved")).expect("move the dataset");
    for args in [vec!["--resume", run, "--set", "train.max_iters=8"], vec!["--evaluate", run]] {
        let (ok, stderr) = train(elsewhere.path(), &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains("data.dataset:")
                && stderr.contains("does not hold the prepared dataset this run trained on (it has moved"),
            "{stderr}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_latest_checkpoint_that_is_a_bad_link_and_a_token_file_that_is_a_folder_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 2;
    let summary = run_fresh(&config).expect("a short run");
    let latest = summary.run_dir.join("latest.ckpt");

    std::fs::remove_file(&latest).expect("remove");
    std::os::unix::fs::symlink(&latest, &latest).expect("a link to itself");
    let m = error_of(common::run_resume(&summary.run_dir, &["train.max_iters=4"]));
    assert!(m.contains("latest.ckpt: Too many levels of symbolic links"), "{m}");

    std::fs::remove_file(&latest).expect("remove");
    std::os::unix::fs::symlink(dir.path().join("gone.ckpt"), &latest).expect("a dangling link");
    let m = error_of(common::run_resume(&summary.run_dir, &["train.max_iters=4"]));
    assert!(m.contains("latest.ckpt: a link to") && m.contains("gone.ckpt, which does not exist"), "{m}");

    let train_bin = dir.path().join("data/train.bin");
    std::fs::remove_file(&train_bin).expect("remove");
    std::fs::create_dir(&train_bin).expect("a folder named train.bin");
    let m = error_of(run_fresh(&config));
    assert!(m.contains("train.bin") && m.contains("is a folder or a device, not a file"), "{m}");
}
