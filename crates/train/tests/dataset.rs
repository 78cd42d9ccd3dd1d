//! The dataset folder says which tokenizer it holds: a config may leave `data.tokenizer`
//! and `data.vocab_size` out for a prepared folder, and a given one must agree with it.

mod common;

use common::{error_of, run_fresh, tiny_config};

#[test]
fn a_config_without_tokenizer_trains_on_a_prepared_bpe_dataset() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 1;
    data::prepare(&data::PrepareOptions {
        inputs: config.data.input.clone(),
        out_dir: config.data.dataset.clone(),
        tokenizer: "bpe".into(),
        vocab_size: Some(300),
        val_fraction: 0.1,
        lossy: false,
        progress: false,
    })
    .expect("prepare a bpe dataset");
    assert!(config.data.tokenizer.is_empty() && config.data.vocab_size.is_none());
    run_fresh(&config).expect("the folder's own tokenizer is used");

    let mut explicit = config.clone();
    explicit.train.name = "explicit".into();
    explicit.data.tokenizer = "bpe".into();
    explicit.data.vocab_size = Some(300);
    run_fresh(&explicit).expect("values that agree with the folder are fine");

    explicit.data.vocab_size = Some(512);
    let m = error_of(run_fresh(&explicit));
    assert!(m.contains("data.vocab_size = 512, but the tokenizer of") && m.contains("has 300 tokens"), "{m}");
}

#[test]
fn a_config_without_tokenizer_prepares_char() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = tiny_config(dir.path());
    config.train.max_iters = 1;
    run_fresh(&config).expect("prepares and trains");
    let dataset = data::Dataset::open(&config.data.dataset).expect("prepared");
    assert_eq!(dataset.tokenizer.kind(), "char");
}
