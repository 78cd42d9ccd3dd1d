//! The checkpoint file: a round trip gives back the same model, and every kind of damaged
//! or foreign file gives its own clear error, without panicking or allocating absurd
//! amounts of memory.

use std::path::Path;

use bincode::Options;
use model::checkpoint::{Checkpoint, CheckpointError, OptimizerState, FORMAT_VERSION, HEADER_LEN, MAGIC};
use model::{Gpt, GptConfig};

fn tiny() -> GptConfig {
    GptConfig {
        vocab_size: 40,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        dropout: 0.1,
        bias: true,
        arch: model::Arch::GPT2,
    }
}

fn checkpoint_of(gpt: &Gpt) -> Checkpoint {
    let params = Checkpoint::params_of(gpt);
    let moments = |scale: f32| params.iter().map(|p| p.data.iter().map(|v| v * scale).collect()).collect();
    Checkpoint {
        model: gpt.config.clone(),
        run_config: "[model]\nn_layer = 2\n".to_string(),
        tokenizer: vec![1, 2, 3, 4],
        optimizer: Some(OptimizerState { step: 7, m: moments(0.5), v: moments(0.25) }),
        params,
        step: 7,
        train_state: vec![9; 12],
    }
}

fn logits(gpt: &mut Gpt) -> Vec<f32> {
    let tokens: Vec<u32> = (0..8).map(|i| (i * 5) % 40).collect();
    let out = gpt.forward(&tokens, None, 1, 8, None);
    gpt.tape.data(out.logits).to_vec()
}

/// Writes a file with a valid header for `payload` (its length and CRC), and `version`.
fn write_with_header(path: &Path, version: u32, payload: &[u8]) {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    std::fs::write(path, bytes).expect("write test file");
}

fn saved(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let path = dir.join("model.ckpt");
    checkpoint_of(&Gpt::new(tiny(), 3)).save(&path).expect("save");
    let bytes = std::fs::read(&path).expect("read back");
    (path, bytes)
}

#[test]
fn save_then_load_gives_the_same_checkpoint_and_logits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("best.ckpt");
    let mut gpt = Gpt::new(tiny(), 3);
    let ckpt = checkpoint_of(&gpt);
    ckpt.save(&path).expect("save");
    ckpt.save(&path).expect("saving again replaces the file");
    let names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["best.ckpt"], "no temporary file is left behind");

    let loaded = Checkpoint::load(&path).expect("load");
    assert_eq!(loaded, ckpt);
    let mut restored = loaded.to_model().expect("to_model");
    assert_eq!(logits(&mut restored), logits(&mut gpt), "identical logits");
    let mut moved = loaded.clone().into_model().expect("into_model");
    assert_eq!(logits(&mut moved), logits(&mut gpt), "moving the weights gives the same model");

    let mut other = Gpt::new(tiny(), 4);
    assert_ne!(logits(&mut other), logits(&mut gpt));
    loaded.load_into(&mut other).expect("load_into a model of the same config");
    assert_eq!(logits(&mut other), logits(&mut gpt));
}

#[test]
fn saving_under_two_names_then_replacing_one_leaves_the_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (latest, best) = (dir.path().join("latest.ckpt"), dir.path().join("best.ckpt"));
    let first = checkpoint_of(&Gpt::new(tiny(), 3));
    first.save_as(&[&latest, &best]).expect("save under two names");
    assert_eq!(Checkpoint::load(&latest).expect("load latest"), first);
    assert_eq!(Checkpoint::load(&best).expect("load best"), first);
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let links = std::fs::metadata(&best).expect("metadata").nlink();
        assert_eq!(links, 2, "written once, the second name a hard link");
    }

    // The names share one file; replacing one must not change the other.
    let second = checkpoint_of(&Gpt::new(tiny(), 4));
    second.save(&latest).expect("save latest again");
    assert_eq!(Checkpoint::load(&latest).expect("load latest"), second);
    assert_eq!(Checkpoint::load(&best).expect("load best"), first, "best.ckpt is untouched");
    let mut names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, ["best.ckpt", "latest.ckpt"], "no temporary file is left behind");

    // The same name twice is one file, and no temporary file is left either.
    first.save_as(&[&latest, &latest]).expect("save under one name twice");
    assert_eq!(Checkpoint::load(&latest).expect("load latest"), first);
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 2);
}

#[test]
fn a_name_that_cannot_be_written_fails_after_the_others_are_saved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (latest, best) = (dir.path().join("latest.ckpt"), dir.path().join("best.ckpt"));
    std::fs::create_dir(&best).expect("a directory where best.ckpt would go");
    let ckpt = checkpoint_of(&Gpt::new(tiny(), 3));
    let err = ckpt.save_as(&[&latest, &best]).expect_err("best.ckpt is a directory");
    assert!(err.to_string().contains("best.ckpt"), "{err}");
    assert_eq!(Checkpoint::load(&latest).expect("latest.ckpt was saved first"), ckpt);
    let mut names: Vec<_> =
        std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    names.sort();
    assert_eq!(names, ["best.ckpt", "latest.ckpt"], "no temporary file is left behind");
}

#[test]
fn a_missing_file_names_its_path() {
    let err = Checkpoint::load(Path::new("/nonexistent/dir/x.ckpt")).expect_err("no file");
    println!("{err}");
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/dir/x.ckpt"), "{err}");
}

#[test]
fn a_file_of_another_kind_is_not_a_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "First Citizen:\nBefore we proceed any further, hear me speak.\n").expect("write");
    let err = Checkpoint::load(&path).expect_err("text");
    println!("{err}");
    assert!(matches!(err, CheckpointError::NotACheckpoint { .. }), "{err}");
    assert!(
        err.to_string().contains("notes.txt") && err.to_string().contains("not a Quill checkpoint"),
        "{err}"
    );
    std::fs::write(&path, b"QUI").expect("write");
    assert!(matches!(Checkpoint::load(&path), Err(CheckpointError::NotACheckpoint { .. })));
}

#[test]
fn a_newer_format_says_which_version_this_build_reads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, bytes) = saved(dir.path());
    write_with_header(&path, FORMAT_VERSION + 1, &bytes[HEADER_LEN..]);
    let err = Checkpoint::load(&path).expect_err("newer");
    println!("{err}");
    assert!(
        matches!(err, CheckpointError::NewerVersion { found, supported, .. }
            if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains(&format!("reads (version {FORMAT_VERSION})")), "{err}");
}

#[test]
fn a_truncated_file_is_corrupted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, bytes) = saved(dir.path());
    for keep in [bytes.len() - 1, bytes.len() / 2, HEADER_LEN, HEADER_LEN - 4] {
        std::fs::write(&path, &bytes[..keep]).expect("write");
        let err = Checkpoint::load(&path).expect_err("truncated");
        println!("{err}");
        assert!(matches!(err, CheckpointError::Corrupted { .. }), "{keep} bytes: {err}");
        assert!(err.to_string().contains("truncated") && err.to_string().contains("model.ckpt"), "{err}");
    }
}

#[test]
fn a_flipped_byte_is_caught_by_the_checksum() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, mut bytes) = saved(dir.path());
    let middle = HEADER_LEN + (bytes.len() - HEADER_LEN) / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&path, &bytes).expect("write");
    let err = Checkpoint::load(&path).expect_err("flipped");
    println!("{err}");
    assert!(matches!(err, CheckpointError::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

#[test]
fn a_header_claiming_a_huge_payload_errors_without_allocating() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, mut bytes) = saved(dir.path());
    bytes[12..20].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    std::fs::write(&path, &bytes).expect("write");
    let err = Checkpoint::load(&path).expect_err("huge");
    println!("{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// bincode as the payload uses it (fixed-width integers, little-endian).
fn payload_options() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian()
}

/// The serialized size of a value in the payload.
fn size<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    payload_options().serialized_size(value).expect("size") as usize
}

#[test]
fn a_huge_length_inside_a_valid_payload_errors_without_allocating() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hostile.ckpt");
    let ckpt = checkpoint_of(&Gpt::new(tiny(), 3));
    let payload = payload_options().serialize(&ckpt).expect("serialize");
    // Offsets of three length prefixes: run_config's (a string), the params vector's, and
    // the first parameter's data (a Vec<f32>).
    let config_len = size(&ckpt.model);
    let params_len = config_len + size(&ckpt.run_config) + size(&ckpt.tokenizer);
    let p0 = &ckpt.params[0];
    let data_len = params_len + 8 + size(&p0.name) + size(&p0.shape);
    let data_prefix = u64::from_le_bytes(payload[data_len..data_len + 8].try_into().expect("8 bytes"));
    assert_eq!(data_prefix as usize, p0.data.len(), "the offset arithmetic finds the data length");
    for offset in [config_len, params_len, data_len] {
        let mut hostile = payload.clone();
        hostile[offset..offset + 8].copy_from_slice(&(1u64 << 61).to_le_bytes());
        write_with_header(&path, FORMAT_VERSION, &hostile);
        let err = Checkpoint::load(&path).expect_err("hostile length");
        println!("offset {offset}: {err}");
        assert!(matches!(err, CheckpointError::Corrupted { .. }), "offset {offset}: {err}");
    }
}

#[test]
fn a_checkpoint_of_another_model_names_the_parameter_and_both_shapes() {
    let ckpt = checkpoint_of(&Gpt::new(tiny(), 3));
    let mut wider = Gpt::new(GptConfig { n_embd: 32, ..tiny() }, 1);
    let before = Checkpoint::params_of(&wider);
    let err = ckpt.load_into(&mut wider).expect_err("other width");
    println!("{err}");
    assert!(matches!(err, CheckpointError::ShapeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("transformer.wte.weight") && msg.contains("[40, 16]") && msg.contains("[40, 32]"),
        "{msg}"
    );
    assert_eq!(Checkpoint::params_of(&wider), before, "a failed load leaves the model unchanged");

    let mut deeper = Gpt::new(GptConfig { n_layer: 3, ..tiny() }, 1);
    let err = ckpt.load_into(&mut deeper).expect_err("other depth");
    println!("{err}");
    assert!(
        matches!(&err, CheckpointError::MissingParam { name } if name.starts_with("transformer.h.2.")),
        "{err}"
    );

    let mut no_bias = Gpt::new(GptConfig { bias: false, ..tiny() }, 1);
    let err = ckpt.load_into(&mut no_bias).expect_err("no biases");
    println!("{err}");
    assert!(matches!(&err, CheckpointError::UnexpectedParam { name } if name.ends_with(".bias")), "{err}");
}

#[test]
fn params_with_inconsistent_sizes_are_corrupted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("odd.ckpt");
    let mut ckpt = checkpoint_of(&Gpt::new(tiny(), 3));
    ckpt.params[2].data.pop();
    ckpt.save(&path).expect("save");
    let err = Checkpoint::load(&path).expect_err("inconsistent");
    println!("{err}");
    assert!(matches!(err, CheckpointError::Corrupted { .. }), "{err}");
    assert!(err.to_string().contains(&ckpt.params[2].name), "{err}");
}

#[test]
fn a_config_claiming_a_huge_model_is_refused_before_the_model_is_allocated() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.ckpt");
    let huge = 1usize << 40;
    type Patch = fn(&mut GptConfig, usize);
    let patches: [(&str, Patch); 3] = [
        ("n_layer", |c, n| c.n_layer = n),
        ("vocab_size", |c, n| c.vocab_size = n),
        ("block_size", |c, n| c.block_size = n),
    ];
    for (field, patch) in patches {
        let mut ckpt = checkpoint_of(&Gpt::new(tiny(), 3));
        patch(&mut ckpt.model, huge);
        // The writer computes a valid checksum for the patched config.
        ckpt.save(&path).expect("save");
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(matches!(err, CheckpointError::Corrupted { .. }), "{field}: {err:?}");
        assert!(err.to_string().contains("parameters, but it holds"), "{field}: {err}");
        // A checkpoint built in memory (as convert does) is refused by to_model too.
        let err = ckpt.to_model().err().expect("refused");
        assert!(matches!(err, CheckpointError::ModelSize(_)), "{field}: {err:?}");
    }
    // A width of 2^40 with one head: the parameter count itself overflows.
    let mut ckpt = checkpoint_of(&Gpt::new(tiny(), 3));
    ckpt.model.n_embd = huge;
    ckpt.model.n_head = 1;
    ckpt.save(&path).expect("save");
    let err = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(err.contains("model.n_embd = 1099511627776"), "{err}");
}

/// `fixtures/checkpoint_v1.ckpt` was written by the model crate as it was before format
/// version 2 (that of commit defd205): a 1-layer GPT (vocab 12, block 6, 2 heads of 4, biases), seed 5, weights
/// randomised with `testing::randomise(.., 6)`. It loads as GPT-2's architecture and
/// computes what it computed then: the logits of the last of tokens [1, 5, 9, 2, 11, 0].
#[test]
fn a_version_1_checkpoint_loads_as_gpt2s_architecture() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint_v1.ckpt");
    let bytes = std::fs::read(&path).expect("the fixture");
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")), 1, "a version-1 file");
    let ckpt = Checkpoint::load(&path).expect("a version-1 checkpoint loads");
    assert_eq!(ckpt.model.arch, model::Arch::GPT2);
    assert_eq!((ckpt.model.vocab_size, ckpt.model.n_layer, ckpt.step), (12, 1, 3));
    let mut gpt = ckpt.to_model().expect("the model");
    let out = gpt.forward(&[1, 5, 9, 2, 11, 0], None, 1, 6, None);
    let logits = gpt.tape.data(out.logits);
    let then = [
        0.8379622,
        -1.1724373,
        -0.63043267,
        1.1183763,
        -1.6408077,
        -1.9886962,
        -0.19692558,
        -0.33235678,
        -0.7903157,
        -0.71098995,
        -1.8818562,
        1.0755765,
    ];
    assert_eq!(&logits[5 * 12..], &then, "the same logits as the code that wrote it");
    // Saved again, it is a current-version file with the same model.
    let dir = tempfile::tempdir().expect("temp dir");
    ckpt.save(&dir.path().join("again.ckpt")).expect("save");
    let again = Checkpoint::load(&dir.path().join("again.ckpt")).expect("load");
    assert_eq!(again, ckpt);
}
