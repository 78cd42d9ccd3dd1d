//! Import and export against the transformers fixture (`scripts/hf_fixture.py`): the
//! imported model's logits equal transformers' own, import → export → import keeps every
//! bit, and each thing Quill's GPT cannot represent is refused with its own error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use convert::{from_hf, write_hf, ConvertError};
use data::Tokenizer;
use model::checkpoint::Checkpoint;
use model::{Gpt, GptConfig};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2")
}

/// What transformers computed: the text, its token ids and the logits on them (T, V).
struct Expected {
    text: String,
    tokens: Vec<u32>,
    logits: Vec<f32>,
}

fn expected() -> Expected {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("logits.json")).expect("logits.json"))
            .expect("valid JSON");
    let numbers =
        |key: &str| json[key].as_array().expect("an array").iter().map(|v| v.as_f64().expect("a number"));
    Expected {
        text: json["text"].as_str().expect("a string").to_string(),
        tokens: numbers("tokens").map(|v| v as u32).collect(),
        logits: numbers("logits").map(|v| v as f32).collect(),
    }
}

/// The model's logits on `tokens` (one sequence), through the training forward.
fn logits(gpt: &mut Gpt, tokens: &[u32]) -> Vec<f32> {
    let out = gpt.forward(tokens, None, 1, tokens.len(), None);
    gpt.tape.data(out.logits).to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn imported_fixture_gives_transformers_logits() {
    let ckpt = from_hf(&fixture()).expect("the fixture imports");
    assert!(ckpt.model.bias, "GPT-2 has biases");
    assert_eq!((ckpt.model.n_layer, ckpt.model.n_embd, ckpt.model.n_head), (2, 32, 4));
    let expected = expected();
    let tokenizer = data::tokenizer_from_bytes(&ckpt.tokenizer).expect("the embedded tokenizer");
    assert_eq!(tokenizer.kind(), "gpt2");
    assert_eq!(tokenizer.encode(&expected.text).expect("byte-level"), expected.tokens, "GPT2Tokenizer's ids");

    let mut gpt = ckpt.to_model().expect("a model");
    let diff = max_abs_diff(&logits(&mut gpt, &expected.tokens), &expected.logits);
    let scale = expected.logits.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    println!("imported tiny GPT-2: logits max abs diff {diff:.2e} (logits up to {scale:.2})");
    assert!(diff < 1e-5, "logits differ from transformers' by {diff}");
}

fn assert_same_bits(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.model, b.model);
    assert_eq!(a.tokenizer, b.tokenizer, "the tokenizer survives the round trip");
    assert_eq!(a.params.len(), b.params.len());
    for (p, q) in a.params.iter().zip(&b.params) {
        assert_eq!((&p.name, &p.shape), (&q.name, &q.shape));
        let same = p.data.iter().zip(&q.data).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{} changed in the round trip", p.name);
    }
}

#[test]
fn import_export_import_keeps_every_bit() {
    let first = from_hf(&fixture()).expect("the fixture imports");
    let tokenizer = data::tokenizer_from_bytes(&first.tokenizer).expect("tokenizer");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = write_hf(&first, tokenizer.as_ref(), dir.path(), false).expect("export");
    let names: Vec<_> =
        files.iter().map(|f| f.file_name().expect("a file").to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["config.json", "model.safetensors", "vocab.json", "merges.txt"]);
    // GPT-2's tokenizer files come back as transformers wrote them.
    for name in ["vocab.json", "merges.txt"] {
        let ours = std::fs::read_to_string(dir.path().join(name)).expect("exported");
        let theirs = std::fs::read_to_string(fixture().join(name)).expect("fixture");
        assert_eq!(ours, theirs, "{name}");
    }
    assert_same_bits(&first, &from_hf(dir.path()).expect("the export imports"));

    let again = write_hf(&first, tokenizer.as_ref(), dir.path(), false).unwrap_err();
    assert!(matches!(again, ConvertError::OutputExists { .. }), "{again}");
    write_hf(&first, tokenizer.as_ref(), dir.path(), true).expect("--force replaces");
}

#[test]
fn char_model_without_biases_exports_zero_biases_and_its_tokenizer() {
    let config = GptConfig {
        vocab_size: 12,
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
        bias: false,
        arch: model::Arch::GPT2,
    };
    let mut gpt = Gpt::new(config.clone(), 5);
    model::testing::randomise(&mut gpt, 6);
    let tokenizer = data::CharTokenizer::from_text("abcdefghijkl");
    let ckpt = Checkpoint {
        model: config,
        run_config: String::new(),
        tokenizer: tokenizer.to_bytes(),
        params: Checkpoint::params_of(&gpt),
        optimizer: None,
        step: 3,
        train_state: Vec::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    write_hf(&ckpt, &tokenizer, dir.path(), false).expect("export");
    assert!(dir.path().join("quill_tokenizer.md").is_file(), "a note on the tokenizer");
    let back = from_hf(dir.path()).expect("the export imports");
    assert!(back.model.bias);
    assert_eq!(back.tokenizer, ckpt.tokenizer, "the char tokenizer comes back");
    let biases: Vec<_> = back.params.iter().filter(|p| p.name.ends_with(".bias")).collect();
    assert!(!biases.is_empty() && biases.iter().all(|p| p.data.iter().all(|&v| v == 0.0)));
    let tokens = [0, 3, 7, 11, 2];
    let (ours, theirs) = (logits(&mut gpt, &tokens), logits(&mut back.to_model().expect("model"), &tokens));
    assert_eq!(max_abs_diff(&ours, &theirs), 0.0, "zero biases compute the same function");
}

// ---- refusals: each on a copy of the fixture with one thing changed ----

/// A copy of the fixture to change.
fn copy_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(fixture()).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.path().join(path.file_name().expect("a file"))).expect("copy");
    }
    dir
}

fn set_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    json[key] = value;
    std::fs::write(&path, json.to_string()).expect("write");
}

/// One tensor of a safetensors file, owned: name → (dtype, shape, bytes).
type Tensors = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

fn edit_tensors(dir: &Path, edit: impl FnOnce(&mut Tensors)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    let file = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: Tensors = file
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, (dtype, shape, data))| {
            (n.clone(), TensorView::new(*dtype, shape.clone(), data).expect("view"))
        })
        .collect();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    std::fs::write(&path, safetensors::serialize(views, &metadata).expect("serialize")).expect("write");
}

fn refusal(dir: &Path) -> ConvertError {
    let err = from_hf(dir).expect_err("the import is refused");
    println!("{err}");
    err
}

#[test]
fn refuses_another_activation() {
    let dir = copy_fixture();
    set_config(dir.path(), "activation_function", "relu".into());
    let err = refusal(dir.path());
    assert!(matches!(&err, ConvertError::Activation { found, .. } if found == "relu"), "{err}");
    assert!(err.to_string().contains("config.json: activation_function is \"relu\""), "{err}");
}

#[test]
fn refuses_another_layer_norm_epsilon() {
    let dir = copy_fixture();
    set_config(dir.path(), "layer_norm_epsilon", 1e-6.into());
    let err = refusal(dir.path());
    assert!(matches!(err, ConvertError::LayerNormEpsilon { found, .. } if found == 1e-6), "{err}");
}

#[test]
fn refuses_an_untied_head() {
    let dir = copy_fixture();
    set_config(dir.path(), "tie_word_embeddings", false.into());
    let err = refusal(dir.path());
    assert!(matches!(err, ConvertError::UntiedHead { .. }), "{err}");

    let dir = copy_fixture();
    edit_tensors(dir.path(), |t| {
        let (dtype, shape, mut data) = t["transformer.wte.weight"].clone();
        data[0] ^= 1;
        t.insert("lm_head.weight".into(), (dtype, shape, data));
    });
    let err = refusal(dir.path());
    assert!(err.to_string().contains("lm_head.weight differs from transformer.wte.weight"), "{err}");

    // A head equal to wte, as some files store it, is the tied head.
    let dir = copy_fixture();
    edit_tensors(dir.path(), |t| {
        let wte = t["transformer.wte.weight"].clone();
        t.insert("lm_head.weight".into(), wte);
    });
    from_hf(dir.path()).expect("an equal lm_head is tied");
}

#[test]
fn refuses_a_missing_tensor_naming_it() {
    let dir = copy_fixture();
    edit_tensors(dir.path(), |t| {
        t.remove("transformer.h.1.mlp.c_fc.bias");
    });
    let err = refusal(dir.path());
    assert!(
        matches!(&err, ConvertError::MissingTensor { name, .. } if name == "transformer.h.1.mlp.c_fc.bias"),
        "{err}"
    );
}

#[test]
fn refuses_a_shape_that_disagrees_with_config_json() {
    let dir = copy_fixture();
    set_config(dir.path(), "n_positions", 32.into());
    let err = refusal(dir.path());
    assert!(
        matches!(&err, ConvertError::ShapeMismatch { name, expected, found, .. }
            if name == "transformer.wpe.weight" && expected == &[32, 32] && found == &[16, 32]),
        "{err}"
    );
}

#[test]
fn refuses_an_unknown_tensor_and_another_dtype() {
    let dir = copy_fixture();
    edit_tensors(dir.path(), |t| {
        t.insert("transformer.h.0.attn.rotary".into(), (Dtype::F32, vec![1], vec![0; 4]));
    });
    let err = refusal(dir.path());
    assert!(
        matches!(&err, ConvertError::UnexpectedTensor { name, .. } if name == "transformer.h.0.attn.rotary"),
        "{err}"
    );

    let dir = copy_fixture();
    edit_tensors(dir.path(), |t| {
        let (_, shape, data) = t["transformer.ln_f.bias"].clone();
        t.insert("transformer.ln_f.bias".into(), (Dtype::F16, shape, data[..data.len() / 2].to_vec()));
    });
    let err = refusal(dir.path());
    assert!(matches!(&err, ConvertError::Dtype { name, .. } if name == "transformer.ln_f.bias"), "{err}");
}

#[test]
fn refuses_other_architectures_and_a_folder_without_tokenizer() {
    let dir = copy_fixture();
    set_config(dir.path(), "scale_attn_by_inverse_layer_idx", true.into());
    let err = refusal(dir.path());
    assert!(
        matches!(err, ConvertError::Unsupported { field: "scale_attn_by_inverse_layer_idx", .. }),
        "{err}"
    );

    let dir = copy_fixture();
    set_config(dir.path(), "model_type", "gpt_neo".into());
    assert!(matches!(refusal(dir.path()), ConvertError::Unsupported { field: "model_type", .. }));

    let dir = copy_fixture();
    set_config(dir.path(), "vocab_size", 200.into());
    let err = refusal(dir.path());
    assert!(matches!(err, ConvertError::VocabMismatch { tokenizer: 272, model: 200, .. }), "{err}");

    let dir = copy_fixture();
    std::fs::remove_file(dir.path().join("merges.txt")).expect("remove");
    assert!(matches!(refusal(dir.path()), ConvertError::NoTokenizer { .. }));
}

#[test]
fn accepts_names_without_the_transformer_prefix_and_skips_mask_buffers() {
    let dir = copy_fixture();
    edit_tensors(dir.path(), |t| {
        let renamed: Tensors = t
            .drain()
            .map(|(name, v)| (name.strip_prefix("transformer.").unwrap_or(&name).to_string(), v))
            .collect();
        *t = renamed;
        let mask = (Dtype::F32, vec![1, 1, 16, 16], vec![0; 4 * 256]);
        t.insert("h.0.attn.bias".into(), mask.clone());
        t.insert("h.0.attn.masked_bias".into(), (Dtype::F32, vec![], vec![0; 4]));
    });
    assert_same_bits(
        &from_hf(&fixture()).expect("fixture"),
        &from_hf(dir.path()).expect("GPT2Model's names"),
    );
}

#[test]
fn an_export_never_writes_over_its_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ckpt = from_hf(&fixture()).expect("the fixture imports");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let input = out.join("model.safetensors");
    ckpt.save(&input).expect("save");
    let before = std::fs::read(&input).expect("read");
    for force in [false, true] {
        let err = convert::to_hf(&input, &out, force).expect_err("refused").to_string();
        assert!(
            err.contains("model.safetensors: is the input") && err.contains("not even with --force"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&input).expect("read"), before);
}

#[test]
fn refuses_to_export_a_model_with_architecture_options_naming_them() {
    let arch = model::Arch { norm: model::Norm::RmsNorm, tie_head: false, ..model::Arch::GPT2 };
    let config = GptConfig {
        vocab_size: 12,
        block_size: 8,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
        dropout: 0.0,
        bias: false,
        arch,
    };
    let gpt = Gpt::new(config.clone(), 5);
    let tokenizer = data::CharTokenizer::from_text("abcdefghijkl");
    let ckpt = Checkpoint {
        model: config,
        run_config: String::new(),
        tokenizer: tokenizer.to_bytes(),
        params: Checkpoint::params_of(&gpt),
        optimizer: None,
        step: 0,
        train_state: Vec::new(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let err = write_hf(&ckpt, &tokenizer, dir.path(), false).unwrap_err();
    assert!(matches!(err, ConvertError::NotGpt2Architecture { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("model.norm = \"rmsnorm\", model.tie_head = false"), "{msg}");
    assert!(std::fs::read_dir(dir.path()).expect("the folder").next().is_none(), "nothing written");
}
