//! The golden Muon test: ten steps of Muon (the blocks' 2-D weights) with AdamW (the rest)
//! on the model crate's golden GPT (fixed weights, one fixed batch) against the float64
//! PyTorch reference of `scripts/golden_muon.py`: the loss before each step to 1e-5, and
//! every weight after the tenth step to 5e-5 (measured: 7e-6).

use model::Gpt;
use serde_json::Value;
use train::{AdamWConfig, LearningRates, MuonConfig, Optimizer};

#[path = "../../model/tests/common/golden.rs"]
mod golden;
use golden::Golden;

/// golden_muon.json, and the tensors of golden_muon.bin by name.
fn load_fixture() -> (Value, std::collections::HashMap<String, Vec<f32>>) {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(dir.join("golden_muon.json"))
        .expect("golden_muon.json (run scripts/golden_muon.py)");
    let json: Value = serde_json::from_str(&text).expect("golden_muon.json parses");
    assert_eq!(json["format"], "quill-golden-muon");
    assert_eq!(json["version"], 1, "golden_muon.json: unknown fixture version");
    let bytes =
        std::fs::read(dir.join("golden_muon.bin")).expect("golden_muon.bin (run scripts/golden_muon.py)");
    let floats: Vec<f32> =
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    let mut tensors = std::collections::HashMap::new();
    for (name, entry) in json["tensors"].as_object().expect("tensors index") {
        let shape: Vec<usize> = serde_json::from_value(entry["shape"].clone()).expect("shape");
        let offset = entry["offset"].as_u64().expect("offset") as usize;
        let numel: usize = shape.iter().product();
        tensors.insert(name.clone(), floats[offset..offset + numel].to_vec());
    }
    (json, tensors)
}

#[test]
fn ten_muon_steps_match_pytorch() {
    let golden = Golden::load();
    let (fixture, want_params) = load_fixture();
    let f = |pointer: &str| {
        fixture.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer}"))
    };
    let (config, b, t) = (golden.config.clone(), golden.batch, golden.t);
    let (tokens, targets) = (golden.tokens.clone(), golden.targets.clone());
    let want_losses: Vec<f64> = serde_json::from_value(fixture["losses"].clone()).expect("losses");
    let want_muon: Vec<String> =
        serde_json::from_value(fixture["muon"]["params"].clone()).expect("muon params");

    let mut gpt = Gpt::new(config, 0);
    let ids: Vec<_> = gpt.tape.params().map(|(id, name, _)| (id, name.to_string())).collect();
    for (id, name) in &ids {
        let (_, value) = golden.tensor(&format!("param.{name}"));
        gpt.tape.value_mut(*id).data.copy_from_slice(value);
    }
    let adamw = AdamWConfig {
        beta1: f("/adamw/beta1") as f32,
        beta2: f("/adamw/beta2") as f32,
        eps: f("/adamw/eps") as f32,
        weight_decay: f("/adamw/weight_decay") as f32,
    };
    let muon =
        MuonConfig { momentum: f("/muon/momentum") as f32, weight_decay: f("/muon/weight_decay") as f32 };
    let mut opt = Optimizer::new(&gpt.tape, adamw, Some(muon));
    let muon_state = opt.muon.as_ref().expect("Muon is on");
    let ours: Vec<&str> =
        ids.iter().filter(|(id, _)| muon_state.owns(*id)).map(|(_, n)| n.as_str()).collect();
    assert_eq!(ours, want_muon, "Muon takes the parameters the reference gives it");

    let lr = LearningRates { adamw: f("/adamw/lr") as f32, muon: f("/muon/lr") as f32 };
    golden::replay_steps(&mut gpt, (&tokens, &targets), (b, t), &want_losses, |gpt, grads| {
        opt.update(&mut gpt.tape, grads, lr, 1.0)
    });
    let mut overall = 0.0f32;
    for (id, name) in &ids {
        let want = &want_params[&format!("muon.param.{name}")];
        let worst = gpt.tape.data(*id).iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        overall = overall.max(worst);
        assert!(worst < 5e-5, "{name} after 10 steps differs from PyTorch's by {worst:e}");
    }
    println!("largest weight difference after 10 steps: {overall:e}");
}
