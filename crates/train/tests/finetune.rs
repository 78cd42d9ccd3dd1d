//! Fine-tuning (`model.init_from`): from the tiny Hugging Face GPT-2 fixture (a 272-token
//! GPT-2 tokenizer) on a tiny text prepared with that tokenizer, and each refusal.

mod common;

use std::path::{Path, PathBuf};

use common::{error_of, run_fresh, run_resume, tiny_config, tiny_text};
use train::config::Config;
use train::TrainError;

/// The tiny GPT-2 folder written by transformers (2 layers, width 32, context 16).
fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../convert/tests/fixtures/tiny-gpt2")
}

/// Copies the fixture into `dir/tiny-gpt2` (so a test can delete it) and prepares the tiny
/// text with its tokenizer into `dir/data`.
fn setup(dir: &Path) -> PathBuf {
    let weights = dir.join("tiny-gpt2");
    std::fs::create_dir(&weights).expect("weights folder");
    for entry in std::fs::read_dir(fixture()).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), weights.join(entry.file_name())).expect("copy");
    }
    // prepare reads GPT-2's files under OpenAI's names.
    let tokenizer = dir.join("tokenizer");
    std::fs::create_dir(&tokenizer).expect("tokenizer folder");
    std::fs::copy(weights.join("vocab.json"), tokenizer.join("encoder.json")).expect("copy");
    std::fs::copy(weights.join("merges.txt"), tokenizer.join("vocab.bpe")).expect("copy");
    let input = dir.join("input.txt");
    std::fs::write(&input, tiny_text()).expect("text");
    let options = data::PrepareOptions {
        inputs: vec![input],
        out_dir: dir.join("data"),
        tokenizer: "gpt2".into(),
        vocab_size: None,
        val_fraction: 0.1,
        lossy: false,
        progress: false,
    };
    data::prepare_with(&options, false, &tokenizer).expect("prepare with the fixture's tokenizer");
    weights
}

/// A fine-tuning config for `dir`, with `model` as its `[model]` lines besides init_from.
fn finetune_config(dir: &Path, init_from: &Path, model: &str) -> Result<Config, TrainError> {
    let text = format!(
        r#"
[model]
init_from = {init_from:?}
{model}

[data]
dataset = {dataset:?}
input = []

[optim]
learning_rate = 3e-3
min_lr = 3e-4
warmup_iters = 0
lr_decay_iters = 20

[train]
batch_size = 4
max_iters = 20
eval_interval = 10
eval_iters = 2
log_interval = 1
out_dir = {runs:?}
name = "ft"
sample_tokens = 0
"#,
        dataset = dir.join("data"),
        runs = dir.join("runs"),
    );
    Config::parse(&text, "ft.toml", &[])
}

#[test]
fn fine_tuning_the_fixture_lowers_the_loss_and_resumes_from_its_own_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = setup(dir.path());
    let mut config = finetune_config(dir.path(), &weights, "block_size = 8\ndropout = 0.1").expect("config");
    config.train.max_iters = 10;
    let summary = run_fresh(&config).expect("fine-tuning runs");

    let resolved = std::fs::read_to_string(summary.run_dir.join("config.toml")).expect("config.toml");
    assert!(resolved.contains("init_from = "), "init_from is recorded:\n{resolved}");
    let resolved = Config::parse(&resolved, "config.toml", &[]).expect("resolved config parses");
    let m = &resolved.model;
    assert_eq!((m.n_layer, m.n_head, m.n_embd, m.block_size, m.bias), (2, 4, 32, 8, true));
    assert_eq!(m.dropout, 0.1, "dropout is the config's");

    // Resuming reads the run's own checkpoint: the weights it started from are gone.
    std::fs::remove_dir_all(&weights).expect("remove the weights");
    let resumed = run_resume(&summary.run_dir, &["train.max_iters=20"]).expect("resumes");
    assert_eq!(resumed.step, 20);

    let rows = plot::read_metrics(&summary.run_dir.join("metrics.jsonl")).expect("metrics");
    let losses: Vec<f64> = rows.iter().filter_map(|r| r.train_loss).collect();
    let (first, last) = (losses[0], losses[losses.len() - 3..].iter().sum::<f64>() / 3.0);
    println!("train loss: step 1 {first:.4}, last three steps {last:.4}");
    assert!(last < first - 0.5, "the loss falls: {first} at step 1, {last} at the end");
}

#[test]
fn a_model_field_other_than_the_weights_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = setup(dir.path());
    let config = finetune_config(dir.path(), &weights, "n_layer = 3").expect("config");
    let e = run_fresh(&config).expect_err("refused");
    assert!(matches!(&e, TrainError::InitFromMismatch { field, .. } if *field == "n_layer"), "{e}");
    let m = e.to_string();
    assert!(m.contains("model.n_layer = 3") && m.contains("n_layer = 2"), "{m}");

    let config = finetune_config(dir.path(), &weights, "block_size = 32").expect("config");
    let e = run_fresh(&config).expect_err("refused");
    assert!(matches!(&e, TrainError::InitFromMismatch { field, .. } if *field == "block_size"), "{e}");

    // Set as the weights have them, the fields are accepted.
    let mut config =
        finetune_config(dir.path(), &weights, "n_layer = 2\nn_embd = 32\nbias = true").expect("config");
    config.train.max_iters = 1;
    run_fresh(&config).expect("agreeing fields are fine");
}

#[test]
fn a_dataset_of_another_tokenizer_is_refused_naming_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path()); // char-level
    config.model.init_from = Some(fixture());
    let m = error_of(run_fresh(&config));
    assert!(m.contains("char (") && m.contains("gpt2 (272 tokens)"), "{m}");
}

#[test]
fn a_missing_init_from_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.model.init_from = Some(dir.path().join("models/gpt2"));
    let e = run_fresh(&config).expect_err("refused");
    assert!(matches!(e, TrainError::InitFromMissing { .. }), "{e}");
    let m = e.to_string();
    assert!(m.contains("models/gpt2 does not exist") && m.contains("huggingface-cli download gpt2"), "{m}");
}

#[test]
fn the_fields_a_fine_tuning_config_gives_are_those_of_its_file_and_overrides() {
    let text = "[model]\ninit_from = \"models/gpt2\"\nblock_size = 128\n";
    let config = Config::parse(text, "ft.toml", &["model.dropout=0.1".into()]).expect("config");
    assert_eq!(config.model.given, ["block_size", "dropout", "init_from"]);
    let config = Config::parse("", "x.toml", &["model.init_from=models/gpt2".into()]).expect("config");
    assert_eq!(config.model.init_from.as_deref(), Some(Path::new("models/gpt2")));
    assert_eq!(config.model.given, ["init_from"]);
    let config = Config::parse("[model]\nn_layer = 2\n", "x.toml", &[]).expect("config");
    assert!(config.model.given.is_empty(), "recorded only with init_from");
}
