//! The dataset folder: which files a folder holds, and opening one whose parts belong
//! together.

use data::{prepare, DataError, Dataset, DatasetState, PrepareOptions, DATASET_FILES};

fn prepared(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let input = dir.join(format!("{name}.txt"));
    std::fs::write(&input, text).expect("write input");
    let out = dir.join(name);
    prepare(&PrepareOptions {
        inputs: vec![input],
        out_dir: out.clone(),
        tokenizer: "char".into(),
        vocab_size: None,
        val_fraction: 0.1,
        lossy: false,
        progress: false,
    })
    .expect("prepare");
    out
}

#[test]
fn state_tells_prepared_missing_and_partial_apart() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(Dataset::state(&dir.path().join("nowhere")), DatasetState::Missing);
    let out = prepared(dir.path(), "a", &"hello world\n".repeat(20));
    assert_eq!(Dataset::state(&out), DatasetState::Prepared);
    assert_eq!(DATASET_FILES, ["tokenizer.bin", "train.bin", "val.bin"]);
    std::fs::remove_file(out.join("val.bin")).expect("remove val.bin");
    assert_eq!(Dataset::state(&out), DatasetState::Partial { missing: vec![out.join("val.bin")] });
}

#[test]
fn open_reads_the_tokenizer_and_both_splits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = prepared(dir.path(), "a", &"hello world\n".repeat(20));
    let dataset = Dataset::open(&out).expect("open");
    assert_eq!(dataset.tokenizer.kind(), "char");
    assert_eq!(dataset.tokenizer.vocab_size(), 9);
    assert_eq!(dataset.train.len() + dataset.val.len(), 240);
}

#[test]
fn splits_of_another_vocabulary_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = prepared(dir.path(), "a", &"hello world\n".repeat(20));
    let b = prepared(dir.path(), "b", &"abc\n".repeat(20));
    std::fs::copy(b.join("train.bin"), a.join("train.bin")).expect("copy");
    let err = Dataset::open(&a).err().expect("mixed folder");
    assert!(
        matches!(&err, DataError::VocabMismatch { path, file_vocab: 4, tokenizer_vocab: 9 } if *path == a.join("train.bin")),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains("train.bin") && err.contains("do not belong together"), "{err}");
    std::fs::remove_file(a.join("tokenizer.bin")).expect("remove tokenizer.bin");
    let err = Dataset::open(&a).err().expect("no tokenizer");
    assert!(matches!(err, DataError::MissingTokenizer { .. }), "{err:?}");
}
