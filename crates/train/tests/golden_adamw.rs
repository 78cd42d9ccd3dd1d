//! The golden AdamW test: ten AdamW steps on the model crate's golden GPT (fixed weights,
//! one fixed batch) against PyTorch's `torch.optim.AdamW` (`scripts/golden.py`): the loss
//! before each step to about 1e-5, and the weights after the tenth step.

use model::Gpt;
use train::{AdamW, AdamWConfig};

#[path = "../../model/tests/common/golden.rs"]
mod golden;
use golden::Golden;

#[test]
fn ten_adamw_steps_match_pytorch() {
    let golden = Golden::load();
    let (config, b, t) = (golden.config.clone(), golden.batch, golden.t);
    let (tokens, targets) = (golden.tokens.clone(), golden.targets.clone());
    let want_losses: Vec<f64> = golden.get("/adamw/losses");
    let decay: Vec<String> = golden.get("/adamw/decay");

    let mut gpt = Gpt::new(config, 0);
    let ids: Vec<_> = gpt.tape.params().map(|(id, name, _)| (id, name.to_string())).collect();
    for (id, name) in &ids {
        let (_, value) = golden.tensor(&format!("param.{name}"));
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
    golden::replay_steps(&mut gpt, (&tokens, &targets), (b, t), &want_losses, |gpt, grads| {
        opt.update(&mut gpt.tape, grads, lr, 1.0)
    });
    for (id, name) in &ids {
        let (_, want) = golden.tensor(&format!("adamw.param.{name}"));
        let worst = gpt.tape.data(*id).iter().zip(want).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{name} after 10 steps differs from PyTorch's by {worst:e}");
    }
}
