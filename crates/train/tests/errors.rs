//! The kinds of error a program may tell apart are variants with fields, each still one
//! sentence for the user.

mod common;

use common::{error_of, run_fresh, run_resume, tiny_config};
use train::config::Config;
use train::TrainError;

#[test]
fn config_errors_name_the_field() {
    let text = "[optim]\nlerning_rate = 1e-3\n";
    match Config::parse(text, "x.toml", &[]) {
        Err(TrainError::UnknownField { at, section, field, expected }) => {
            assert_eq!(
                (at.as_str(), section.as_str(), field.as_str()),
                ("x.toml: line 2", "optim", "lerning_rate")
            );
            assert!(expected.contains("`learning_rate`"), "{expected}");
        }
        other => panic!("expected UnknownField, got {other:?}"),
    }
    match Config::parse("[trainer]\nsteps = 5\n", "x.toml", &[]) {
        Err(TrainError::UnknownSection { section, .. }) => assert_eq!(section, "trainer"),
        other => panic!("expected UnknownSection, got {other:?}"),
    }
    match Config::parse("", "x.toml", &["optim.lerning_rate=1".into()]) {
        Err(TrainError::UnknownField { at, field, .. }) => {
            assert_eq!((at.as_str(), field.as_str()), ("--set optim.lerning_rate=1", "lerning_rate"));
        }
        other => panic!("expected UnknownField, got {other:?}"),
    }
    match Config::parse("", "x.toml", &["max_iters".into()]) {
        Err(TrainError::OverrideSyntax { item, .. }) => assert_eq!(item, "max_iters"),
        other => panic!("expected OverrideSyntax, got {other:?}"),
    }
    let config = Config::parse("", "x.toml", &["model.dropout=1.5".into()]).expect("parses");
    match config.validate("x.toml") {
        Err(e @ TrainError::InvalidValue { .. }) => {
            assert_eq!(e.to_string(), "x.toml: model.dropout: must be in [0, 1), found 1.5");
            let TrainError::InvalidValue { field, value, .. } = e else { unreachable!() };
            assert_eq!((field.as_str(), value.as_str()), ("model.dropout", "1.5"));
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

#[test]
fn resume_errors_are_told_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 2;
    config.train.eval_interval = 2;
    let run_dir = run_fresh(&config).expect("the run finishes").run_dir;
    match run_resume(&run_dir, &[]) {
        Err(TrainError::RunComplete { step: 2, max_iters: 2, run_dir: dir }) => assert_eq!(dir, run_dir),
        other => panic!("expected RunComplete, got {other:?}"),
    }
    match run_resume(&run_dir, &["optim.learning_rate=1"]) {
        Err(TrainError::ResumeOverride { item }) => assert_eq!(item, "optim.learning_rate=1"),
        other => panic!("expected ResumeOverride, got {other:?}"),
    }
    match run_resume(&dir.path().join("runs"), &[]) {
        Err(TrainError::NotARunFolder { flag, .. }) => assert_eq!(flag, "--resume"),
        other => panic!("expected NotARunFolder, got {other:?}"),
    }
    std::fs::remove_file(run_dir.join("latest.ckpt")).expect("remove latest.ckpt");
    assert!(matches!(run_resume(&run_dir, &[]), Err(TrainError::NothingToResume { .. })));
}

#[test]
fn non_finite_loss_names_the_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.optim.learning_rate = 1e30;
    config.optim.min_lr = 1e30;
    config.optim.grad_clip = 0.0;
    match run_fresh(&config) {
        Err(TrainError::NonFinite { step, .. }) => assert!(step >= 1),
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn absurd_sizes_are_refused_before_anything_is_allocated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = tiny_config(dir.path());
    type Patch = fn(&mut Config);
    let cases: [(&str, Patch); 5] = [
        ("train.batch_size = 1000000000000", |c| c.train.batch_size = 1_000_000_000_000),
        ("train.batch_size: 9223372036854775807", |c| c.train.batch_size = i64::MAX as usize),
        ("model.n_embd = 1048576", |c| {
            c.model.n_embd = 1 << 20;
            c.model.n_head = 1;
        }),
        ("model.n_layer = 1000000000", |c| c.model.n_layer = 1_000_000_000),
        ("train.gradient_accumulation_steps: 9223372036854775807", |c| {
            c.train.gradient_accumulation_steps = i64::MAX as usize
        }),
    ];
    for (expected, patch) in cases {
        let mut config = base.clone();
        patch(&mut config);
        let err = error_of(run_fresh(&config));
        assert!(err.contains(expected), "{expected}: {err}");
        // The refusal says how much, and against what; nothing of the run was written.
        assert!(
            err.contains("overflow 64 bits") || (err.contains(" in all; ") && err.contains("--max-memory")),
            "{expected}: {err}"
        );
        assert!(!config.train.out_dir.join("tiny").exists(), "{expected}: a run folder was made");
    }
}
