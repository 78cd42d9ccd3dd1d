//! Paths a run reads and writes: an input that is also an output is refused.

mod common;

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
