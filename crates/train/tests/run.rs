//! Whole runs in-process on a tiny corpus: the loss falls, the run folder holds its
//! files, resume is exact, STOP stops cleanly, and bad data is refused before anything
//! is written.

mod common;

use common::{error_of, folder_snapshot, run_fresh, run_resume, straight_and_resumed, tiny_config, Resumed};
use model::checkpoint::Checkpoint;

fn mean(xs: &[f32]) -> f32 {
    xs.iter().sum::<f32>() / xs.len() as f32
}

#[test]
fn tiny_run_learns_and_writes_its_run_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = tiny_config(dir.path());
    let summary = run_fresh(&config).expect("the run finishes");
    assert_eq!(summary.step, 40);
    assert!(!summary.stopped);
    let (first, last) = (mean(&summary.losses[..5]), mean(&summary.losses[35..]));
    assert!(last < first - 0.8, "loss fell from {first} to only {last}");
    let val = summary.val_loss.expect("evaluated at the end");
    assert!(val < 2.5, "val loss {val}");

    let run_dir = dir.path().join("runs/tiny");
    assert_eq!(summary.run_dir, run_dir);
    for file in ["config.toml", "metrics.jsonl", "latest.ckpt", "best.ckpt", "loss.svg"] {
        assert!(run_dir.join(file).is_file(), "{file} missing");
    }
    let has_events = std::fs::read_dir(&run_dir)
        .expect("run dir")
        .any(|e| e.expect("entry").file_name().to_string_lossy().starts_with("events.out.tfevents"));
    assert!(has_events, "no TensorBoard event file");
    let rows = plot::read_metrics(&run_dir.join("metrics.jsonl")).expect("metrics parse");
    let steps: Vec<u64> = rows.iter().map(|r| r.step).collect();
    assert_eq!(steps, [1, 5, 10, 15, 20, 25, 30, 35, 40]);
    assert_eq!(rows.iter().filter(|r| r.val_loss.is_some()).count(), 2, "evaluations at 20 and 40");
    let last_row = rows.last().expect("rows");
    assert!(last_row.val_bpb.is_some() && last_row.val_ppl.is_some() && last_row.grad_norm.is_some());
    let resolved = train::Config::load(&run_dir.join("config.toml"), &[]).expect("resolved config parses");
    assert_eq!(resolved, config);
    let ckpt = Checkpoint::load(&run_dir.join("latest.ckpt")).expect("checkpoint loads");
    assert_eq!(ckpt.step, 40);
    assert_eq!(ckpt.optimizer.as_ref().map(|o| o.step), Some(40));
}

#[test]
fn resume_is_bit_identical() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.model.dropout = 0.1; // the dropout RNG must resume too
    config.train.gradient_accumulation_steps = 2;
    config.train.eval_interval = 5;
    let Resumed { straight, second, first_metrics, .. } = straight_and_resumed(&config, 12);
    let rows_after =
        std::fs::read_to_string(second.run_dir.join("metrics.jsonl")).expect("metrics after resume");
    assert!(
        rows_after.starts_with(&first_metrics),
        "resume rewrote the rows it kept:\n{first_metrics}\n{rows_after}"
    );
    let a = Checkpoint::load(&straight.run_dir.join("latest.ckpt")).expect("straight checkpoint");
    let b = Checkpoint::load(&second.run_dir.join("latest.ckpt")).expect("resumed checkpoint");
    assert_eq!(a.params, b.params, "weights differ after resume");
    assert_eq!(a.optimizer, b.optimizer, "AdamW state differs after resume");
    let rows = plot::read_metrics(&second.run_dir.join("metrics.jsonl")).expect("metrics");
    assert_eq!(rows.last().map(|r| r.step), Some(12));
    assert!(rows.windows(2).all(|w| w[0].step < w[1].step), "metrics rows are in order, without repeats");
}

#[test]
fn resume_is_bit_identical_under_muon_and_wsd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.optim.optimizer = train::config::OptimizerKind::Muon;
    config.optim.schedule = train::config::Schedule::Wsd;
    config.optim.warmdown_iters = 4;
    config.optim.lr_decay_iters = 12;
    config.optim.muon_weight_decay = 0.1;
    config.train.eval_interval = 5;
    let Resumed { straight, second, .. } = straight_and_resumed(&config, 12);
    let a = Checkpoint::load(&straight.run_dir.join("latest.ckpt")).expect("straight checkpoint");
    let b = Checkpoint::load(&second.run_dir.join("latest.ckpt")).expect("resumed checkpoint");
    assert_eq!(a.params, b.params, "weights differ after resume");
    assert_eq!(a.optimizer, b.optimizer, "Muon and AdamW state differ after resume");
    let state = b.optimizer.expect("optimizer state");
    assert!(state.v.iter().any(Vec::is_empty), "Muon's parameters keep no second moment");
}

#[test]
fn existing_run_folder_gets_a_numbered_sibling() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 2;
    std::fs::create_dir_all(dir.path().join("runs/tiny")).expect("an earlier run");
    std::fs::write(dir.path().join("runs/tiny/keep.txt"), "earlier").expect("earlier file");
    let summary = run_fresh(&config).expect("runs");
    assert_eq!(summary.run_dir, dir.path().join("runs/tiny-2"));
    assert!(dir.path().join("runs/tiny/keep.txt").exists(), "the earlier run is untouched");
    assert_eq!(run_fresh(&config).expect("runs").run_dir, dir.path().join("runs/tiny-3"));
}

#[test]
fn stop_file_saves_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 3;
    let first = run_fresh(&config).expect("first part");
    // A STOP file in the run folder: the resumed run does one step, saves, and exits.
    std::fs::write(first.run_dir.join("STOP"), "").expect("STOP");
    let stopped = run_resume(&first.run_dir, &["train.max_iters=20"]).expect("stops cleanly");
    assert!(stopped.stopped);
    assert_eq!(stopped.step, 4);
    assert!(!first.run_dir.join("STOP").exists(), "STOP is removed after use");
    let ckpt = Checkpoint::load(&first.run_dir.join("latest.ckpt")).expect("latest.ckpt saved on stop");
    assert_eq!(ckpt.step, 4);
    let done = run_resume(&first.run_dir, &[]).expect("resume after STOP");
    assert!(!done.stopped);
    assert_eq!(done.step, 20);
}

#[test]
fn block_size_larger_than_val_split_is_refused_before_writing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.model.block_size = 1024;
    let m = error_of(run_fresh(&config));
    assert!(m.starts_with("tiny.toml: model.block_size = 1024 is too large for the val split"), "{m}");
    assert!(!dir.path().join("runs").exists(), "nothing written");
}

#[test]
fn a_dataset_that_does_not_match_the_config_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 1;
    run_fresh(&config).expect("prepares the char dataset");
    let mut bpe = config.clone();
    bpe.data.tokenizer = "bpe".into();
    bpe.data.vocab_size = Some(300);
    let m = error_of(run_fresh(&bpe));
    assert!(
        m.contains("data.tokenizer = \"bpe\", but") && m.contains("prepared with the char tokenizer"),
        "{m}"
    );
    std::fs::remove_file(config.data.dataset.join("val.bin")).expect("remove val.bin");
    let m = error_of(run_fresh(&config));
    assert!(m.contains("holds part of a prepared dataset") && m.contains("val.bin"), "{m}");
    let mut folder_input = config.clone();
    folder_input.data.dataset = dir.path().join("fresh");
    folder_input.data.input = vec![dir.path().to_path_buf()];
    let m = error_of(run_fresh(&folder_input));
    assert!(m.contains("data.input:") && m.contains("is a folder"), "{m}");
}

#[test]
fn a_sample_prompt_the_tokenizer_cannot_encode_is_refused_before_writing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.sample_tokens = 10;
    config.train.sample_prompt = "the cat~".into();
    let m = error_of(run_fresh(&config));
    assert!(m.contains("train.sample_prompt:") && m.contains('~'), "{m}");
    assert!(!dir.path().join("runs").exists(), "nothing written");
}

#[test]
fn a_corrupt_latest_checkpoint_points_at_an_intact_best_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 4;
    config.train.eval_interval = 2;
    let run_dir = run_fresh(&config).expect("the run finishes").run_dir;
    let latest = run_dir.join("latest.ckpt");
    let bytes = std::fs::read(&latest).expect("latest.ckpt");
    // A new file under the name (best.ckpt may be the same file, a hard link).
    std::fs::remove_file(&latest).expect("unlink latest.ckpt");
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).expect("truncated latest.ckpt");
    let m = error_of(run_resume(&run_dir, &["train.max_iters=6"]));
    assert!(m.contains("corrupted checkpoint") && m.contains("best.ckpt (step 4) is intact"), "{m}");
}

#[test]
fn missing_dataset_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.data.dataset = dir.path().join("nowhere");
    config.data.input.clear();
    let m = error_of(run_fresh(&config));
    assert!(m.starts_with("tiny.toml: data.dataset:") && m.contains("does not exist"), "{m}");
    config.data.input = vec![dir.path().join("missing.txt")];
    let m = error_of(run_fresh(&config));
    assert!(m.starts_with("tiny.toml: data.input:") && m.contains("missing.txt does not exist"), "{m}");
    assert!(!dir.path().join("runs").exists(), "nothing written");
}

#[test]
fn resume_refuses_changes_other_than_max_iters() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = error_of(run_resume(&dir.path().join("runs/tiny"), &["optim.learning_rate=1"]));
    assert!(m.contains("only train.max_iters"), "{m}");
}

#[test]
fn resume_with_nothing_to_run_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 4;
    config.train.eval_interval = 2;
    let run_dir = run_fresh(&config).expect("the run finishes").run_dir;
    let before = folder_snapshot(&run_dir);
    for overrides in [&[][..], &["train.max_iters=3"][..]] {
        let m = error_of(run_resume(&run_dir, overrides));
        assert!(m.contains("is already at step 4 of train.max_iters") && m.contains("N > 4"), "{m}");
    }
    assert!(folder_snapshot(&run_dir) == before, "a resume with nothing to run changed the run folder");
    let m = error_of(run_resume(&dir.path().join("runs"), &[]));
    assert!(m.contains("not a run folder (it has no config.toml)"), "{m}");
}

#[test]
fn non_finite_loss_stops_the_run_naming_the_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.optim.learning_rate = 1e30;
    config.optim.min_lr = 1e30;
    config.optim.grad_clip = 0.0;
    let result = run_fresh(&config);
    let m = error_of(result);
    assert!(m.starts_with("step ") && m.contains("untouched"), "{m}");
    assert!(!dir.path().join("runs/tiny/latest.ckpt").exists());
}

#[test]
fn thread_count_does_not_change_the_losses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 8;
    let run_on = |config: &train::Config, threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| run_fresh(config).expect("runs").losses)
    };
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(run_on(&config, 1)), bits(run_on(&config, 3)), "1 and 3 threads give different losses");
    config.optim.optimizer = train::config::OptimizerKind::Muon;
    let (one, three) = (run_on(&config, 1), run_on(&config, 3));
    assert_eq!(bits(one), bits(three), "under Muon, 1 and 3 threads give different losses");
}

#[test]
fn evaluate_run_scores_every_window_of_both_splits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 10;
    config.train.eval_interval = 5;
    let summary = run_fresh(&config).expect("the run finishes");
    let before = folder_snapshot(&summary.run_dir);
    let quiet = train::Verbosity::Quiet;
    let reports = train::evaluate_run(&summary.run_dir, train::Splits::Both, quiet).expect("evaluates");
    assert!(folder_snapshot(&summary.run_dir) == before, "evaluation wrote into the run folder");
    assert_eq!(reports.iter().map(|r| r.split).collect::<Vec<_>>(), ["val", "train"]);

    // The same mean, one window per forward.
    let t = config.model.block_size;
    let mut gpt =
        Checkpoint::load(&summary.run_dir.join("best.ckpt")).expect("best.ckpt").to_model().expect("model");
    gpt.tape.set_no_grad(true);
    for report in &reports {
        let file =
            data::TokenFile::open(&config.data.dataset.join(format!("{}.bin", report.split))).expect("split");
        let windows = (file.len() - 1) / t;
        assert_eq!(report.windows, windows, "{}: not every window", report.split);
        assert!(!windows.is_multiple_of(config.train.batch_size), "the test needs a partial last batch");
        let mut sum = 0.0f64;
        let mut window = vec![0u32; t + 1];
        for w in 0..windows {
            file.read_into(w * t, &mut window);
            let out = gpt.forward(&window[..t], Some(&window[1..]), 1, t, None);
            sum += gpt.tape.data(out.loss.expect("loss"))[0] as f64;
        }
        let expected = sum / windows as f64;
        assert!((report.loss - expected).abs() < 1e-5, "{}: {} vs {expected}", report.split, report.loss);
        assert!(
            (report.bits_per_byte - expected / std::f64::consts::LN_2).abs() < 1e-4,
            "ASCII: one byte per token"
        );
    }

    let val_only = train::evaluate_run(&summary.run_dir, train::Splits::Val, quiet).expect("evaluates");
    assert_eq!(val_only, reports[..1]);
    // A checkpoint of the run, named as a file.
    let latest = summary.run_dir.join("latest.ckpt");
    let from_file = train::evaluate_run(&latest, train::Splits::Val, quiet).expect("evaluates latest.ckpt");
    assert_eq!(from_file, reports[..1], "latest.ckpt is best.ckpt at the end of this run");
    // A checkpoint of another model: the differing fields are named.
    let mut wider = config.clone();
    wider.model.n_embd = 64;
    wider.train.name = "wider".into();
    wider.train.max_iters = 1;
    let wider_dir = run_fresh(&wider).expect("the wider run").run_dir;
    std::fs::copy(wider_dir.join("latest.ckpt"), summary.run_dir.join("other.ckpt")).expect("copy");
    let m = train::evaluate_run(&summary.run_dir.join("other.ckpt"), train::Splits::Val, quiet)
        .expect_err("another model")
        .to_string();
    assert!(m.contains("model.n_embd is 64 in the checkpoint, 32 in the config"), "{m}");
    let missing = train::evaluate_run(&dir.path().join("runs/none"), train::Splits::Val, quiet);
    let message = missing.expect_err("no run folder").to_string();
    assert!(message.contains("not a run folder"), "{message}");
}
