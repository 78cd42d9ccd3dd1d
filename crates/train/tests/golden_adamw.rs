//! The golden AdamW test: ten AdamW steps on the model crate's golden GPT (fixed weights,
//! one fixed batch) against PyTorch's `torch.optim.AdamW` (`scripts/golden.py`): the loss
//! before each step to about 1e-5, and the weights after the tenth step.

use std::collections::HashMap;
use std::path::PathBuf;

use model::{Gpt, GptConfig};
use serde_json::Value;
use tensor::Grads;
use train::{AdamW, AdamWConfig};

/// The fixture of crates/model: `golden.json` (settings, ids, index) and `golden.bin`
/// (float32 tensors back to back).
struct Golden {
    json: Value,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Golden {
    fn load() -> Golden {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/tests/fixtures");
        let text = std::fs::read_to_string(dir.join("golden.json")).expect("golden.json (scripts/golden.py)");
        let json: Value = serde_json::from_str(&text).expect("golden.json parses");
        assert_eq!(json["format"], "quill-golden");
        assert_eq!(json["version"], 1, "golden.json: unknown fixture version");
        let bytes = std::fs::read(dir.join("golden.bin")).expect("golden.bin (scripts/golden.py)");
        let floats: Vec<f32> =
            bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let mut tensors = HashMap::new();
        for (name, entry) in json["tensors"].as_object().expect("tensors index") {
            let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone()).expect("shape");
            let offset = entry["offset"].as_u64().expect("offset") as usize;
            let numel: usize = shape.iter().product();
            tensors.insert(name.clone(), (shape, floats[offset..offset + numel].to_vec()));
        }
        Golden { json, tensors }
    }

    fn get<T: serde::de::DeserializeOwned>(&self, pointer: &str) -> T {
        let value = self.json.pointer(pointer).unwrap_or_else(|| panic!("golden.json lacks {pointer}"));
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("golden.json {pointer}: {e}"))
    }

    fn tensor(&self, name: &str) -> &[f32] {
        &self.tensors.get(name).unwrap_or_else(|| panic!("golden fixture lacks {name}")).1
    }
}

#[test]
fn ten_adamw_steps_match_pytorch() {
    let golden = Golden::load();
    let config: GptConfig = golden.get("/config");
    let (b, t): (usize, usize) = (golden.get("/batch"), golden.get("/t"));
    let tokens: Vec<u32> = golden.get("/tokens");
    let targets: Vec<u32> = golden.get("/targets");
    let want_losses: Vec<f64> = golden.get("/adamw/losses");
    let decay: Vec<String> = golden.get("/adamw/decay");

    let mut gpt = Gpt::new(config, 0);
    let ids: Vec<_> = gpt.tape.params().map(|(id, name, _)| (id, name.to_string())).collect();
    for (id, name) in &ids {
        let value = golden.tensor(&format!("param.{name}"));
        gpt.tape.value_mut(*id).data.copy_from_slice(value);
    }
    let mut opt = AdamW::new(
        &gpt.tape,
        AdamWConfig {
            beta1: golden.get::<f64>("/adamw/beta1") as f32,
            beta2: golden.get::<f64>("/adamw/beta2") as f32,
            eps: golden.get::<f64>("/adamw/eps") as f32,
            weight_decay: golden.get::<f64>("/adamw/weight_decay") as f32,
        },
    );
    let ours: Vec<&str> =
        ids.iter().zip(opt.decay_mask()).filter(|(_, d)| **d).map(|((_, n), _)| n.as_str()).collect();
    assert_eq!(ours, decay, "decay groups match PyTorch's");

    let lr = golden.get::<f64>("/adamw/lr") as f32;
    let mut grads = Grads::new();
    println!("{:>4} {:>12} {:>12} {:>10}", "step", "ours", "pytorch", "|diff|");
    for (i, want) in want_losses.iter().enumerate() {
        let out = gpt.forward(&tokens, Some(&targets), b, t, None);
        let loss = out.loss.expect("targets given");
        let got = gpt.tape.data(loss)[0] as f64;
        println!("{i:>4} {got:>12.7} {want:>12.7} {:>10.2e}", (got - want).abs());
        assert!((got - want).abs() < 1e-5, "loss before step {} is {got}, PyTorch's {want}", i + 1);
        grads.zero();
        gpt.backward(loss, &mut grads);
        opt.update(&mut gpt.tape, &grads, lr, 1.0);
    }
    for (id, name) in &ids {
        let want = golden.tensor(&format!("adamw.param.{name}"));
        let worst = gpt.tape.data(*id).iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name} after 10 steps differs from PyTorch's by {worst:e}");
    }
}
