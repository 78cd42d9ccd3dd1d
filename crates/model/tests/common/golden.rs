//! Reads the golden fixture written by `scripts/golden.py`: `golden.json` (config, tokens,
//! targets, loss, AdamW settings and losses, and an index of tensors) and `golden.bin`
//! (the tensors, float32 little-endian, back to back). Another crate's test can include
//! this file with `#[path = "../../model/tests/common/golden.rs"] mod golden;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use model::GptConfig;
use serde_json::Value;

/// The fixture, parsed.
pub struct Golden {
    pub json: Value,
    pub config: GptConfig,
    pub batch: usize,
    pub t: usize,
    pub tokens: Vec<u32>,
    pub targets: Vec<u32>,
    pub loss: f64,
    /// Parameter names in PyTorch's `named_parameters` order.
    pub param_names: Vec<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Golden {
    /// The fixture directory of the model crate (reached through `../model` so that the
    /// path also holds when another crate's test includes this file).
    pub fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures")
    }

    pub fn load() -> Golden {
        Golden::load_named("golden")
    }

    /// The fixture `<stem>.json` + `<stem>.bin` (`golden`, or `golden_rope` and the other
    /// fixtures of `scripts/golden_arch.py`).
    pub fn load_named(stem: &str) -> Golden {
        let dir = Golden::dir();
        let text = std::fs::read_to_string(dir.join(format!("{stem}.json")))
            .unwrap_or_else(|e| panic!("{stem}.json (run scripts/golden.py or golden_arch.py): {e}"));
        let json: Value = serde_json::from_str(&text).expect("the fixture's json parses");
        assert_eq!(json["format"], "quill-golden");
        assert_eq!(json["version"], 1, "{stem}.json: unknown fixture version");
        let bytes = std::fs::read(dir.join(format!("{stem}.bin")))
            .unwrap_or_else(|e| panic!("{stem}.bin (run scripts/golden.py or golden_arch.py): {e}"));
        let floats: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let mut tensors = HashMap::new();
        for (name, entry) in json["tensors"].as_object().expect("tensors index") {
            let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone()).expect("shape");
            let offset = entry["offset"].as_u64().expect("offset") as usize;
            let numel: usize = shape.iter().product();
            tensors.insert(name.clone(), (shape, floats[offset..offset + numel].to_vec()));
        }
        let ids = |key: &str| -> Vec<u32> { serde_json::from_value(json[key].clone()).expect("id list") };
        Golden {
            config: serde_json::from_value(json["config"].clone()).expect("config"),
            batch: json["batch"].as_u64().expect("batch") as usize,
            t: json["t"].as_u64().expect("t") as usize,
            tokens: ids("tokens"),
            targets: ids("targets"),
            loss: json["loss"].as_f64().expect("loss"),
            param_names: serde_json::from_value(json["param_names"].clone()).expect("param_names"),
            tensors,
            json,
        }
    }

    /// A value of golden.json by JSON pointer (`/adamw/lr`).
    pub fn get<T: serde::de::DeserializeOwned>(&self, pointer: &str) -> T {
        let value = self.json.pointer(pointer).unwrap_or_else(|| panic!("golden.json lacks {pointer}"));
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("golden.json {pointer}: {e}"))
    }

    /// A tensor by its fixture name (`param.<name>`, `grad.<name>`, `logits`, ...).
    pub fn tensor(&self, name: &str) -> (&[usize], &[f32]) {
        let (shape, data) = self.tensors.get(name).unwrap_or_else(|| panic!("golden fixture lacks {name}"));
        (shape, data)
    }
}

/// The largest |a - b|.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "max_abs_diff: lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Trains `gpt` on one batch (b rows of t tokens) for as many steps as `want_losses` holds,
/// `update` applying the optimizer after each backward, and checks the loss before each
/// step against the reference's within 1e-5, printing both.
pub fn replay_steps(
    gpt: &mut model::Gpt,
    (tokens, targets): (&[u32], &[u32]),
    (b, t): (usize, usize),
    want_losses: &[f64],
    mut update: impl FnMut(&mut model::Gpt, &tensor::Grads),
) {
    let mut grads = tensor::Grads::new();
    println!("{:>4} {:>12} {:>12} {:>10}", "step", "ours", "pytorch", "|diff|");
    for (i, want) in want_losses.iter().enumerate() {
        let out = gpt.forward(tokens, Some(targets), b, t, None);
        let loss = out.loss.expect("targets given");
        let got = gpt.tape.data(loss)[0] as f64;
        println!("{i:>4} {got:>12.7} {want:>12.7} {:>10.2e}", (got - want).abs());
        assert!((got - want).abs() < 1e-5, "loss before step {} is {got}, PyTorch's {want}", i + 1);
        grads.zero();
        gpt.backward(loss, &mut grads);
        update(gpt, &grads);
    }
}
