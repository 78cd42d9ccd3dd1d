//! The golden test: our GPT against an independent PyTorch reference
//! (`scripts/golden.py`, float64), on the same weights and tokens. Logits and loss must
//! agree to about 1e-5 and every parameter's gradient to about 1e-4; the test prints the
//! max absolute difference per tensor. A plain AdamW then follows the fixture's 10-step
//! trajectory, which shows the fixture is reachable in float32.

mod common;

use common::golden::{max_abs_diff, Golden};
use model::Gpt;
use tensor::Grads;

/// A model holding the fixture's initial weights, loaded by name.
fn golden_model(golden: &Golden) -> Gpt {
    let mut gpt = Gpt::zeroed(golden.config.clone());
    assert_eq!(gpt.param_names(), golden.param_names, "parameter names and order match PyTorch's");
    let ids: Vec<_> = gpt.tape.params().map(|(id, name, _)| (id, name.to_string())).collect();
    for (id, name) in ids {
        let (shape, data) = golden.tensor(&format!("param.{name}"));
        let value = gpt.tape.value_mut(id);
        assert_eq!(value.shape, shape, "{name}: shape");
        value.data.copy_from_slice(data);
    }
    gpt
}

#[test]
fn logits_loss_and_gradients_match_pytorch() {
    let golden = Golden::load();
    let mut gpt = golden_model(&golden);
    let out = gpt.forward(&golden.tokens, Some(&golden.targets), golden.batch, golden.t, None);

    let (_, want_logits) = golden.tensor("logits");
    let logits_diff = max_abs_diff(gpt.tape.data(out.logits), want_logits);
    let loss = gpt.tape.data(out.loss.expect("targets given"))[0];
    let loss_diff = (loss as f64 - golden.loss).abs();
    println!("{:<40} {:>10}", "tensor", "max |diff|");
    println!("{:<40} {logits_diff:>10.2e}", "logits");
    println!("{:<40} {loss_diff:>10.2e}  ({loss} vs {})", "loss", golden.loss);

    let mut grads = Grads::new();
    gpt.backward(out.loss.expect("targets given"), &mut grads);
    let (mut worst, mut worst_relative) = ((0.0f32, String::new()), (0.0f32, String::new()));
    for (id, name, _) in gpt.tape.params() {
        let (_, want) = golden.tensor(&format!("grad.{name}"));
        let diff = max_abs_diff(grads.get(id), want);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let relative = diff / scale;
        println!("{:<40} {diff:>10.2e}  (largest |grad| {scale:.2e})", format!("grad {name}"));
        if diff > worst.0 {
            worst = (diff, name.to_string());
        }
        if relative > worst_relative.0 {
            worst_relative = (relative, name.to_string());
        }
    }
    assert!(logits_diff < 1e-5, "logits differ from PyTorch's by {logits_diff:e}");
    assert!(loss_diff < 1e-5, "loss {loss} differs from PyTorch's {} by {loss_diff:e}", golden.loss);
    assert!(worst.0 < 1e-4, "gradient of {} differs from PyTorch's by {:e}", worst.1, worst.0);
    // The gradients are small (mean loss, 0.02-scale weights), so also bound the error
    // relative to each tensor's largest gradient: float32 accuracy, not just 1e-4.
    assert!(
        worst_relative.0 < 1e-4,
        "gradient of {} differs from PyTorch's by {:e} of its largest value",
        worst_relative.1,
        worst_relative.0
    );
    gpt.check_grads(&grads).expect("every parameter has a finite, non-zero gradient");
}

#[test]
fn forward_is_repeatable_on_the_same_tape() {
    let golden = Golden::load();
    let mut gpt = golden_model(&golden);
    let first = gpt.forward(&golden.tokens, Some(&golden.targets), golden.batch, golden.t, None);
    let first = gpt.tape.data(first.loss.expect("loss")).to_vec();
    let again = gpt.forward(&golden.tokens, Some(&golden.targets), golden.batch, golden.t, None);
    assert_eq!(
        first,
        gpt.tape.data(again.loss.expect("loss")),
        "a second forward (reused buffers) changes nothing"
    );
}

/// The fixture's AdamW trajectory is reachable in float32: a plain AdamW (PyTorch's
/// update, nanoGPT's decay groups as the fixture lists them) on our model follows its 10
/// losses and ends at its weights. The trainer's own AdamW is tested against the same data.
#[test]
fn adamw_trajectory_of_the_fixture_is_reachable() {
    let golden = Golden::load();
    let adamw = &golden.json["adamw"];
    let num = |key: &str| adamw[key].as_f64().expect("AdamW setting") as f32;
    let (lr, beta1, beta2, eps, wd) =
        (num("lr"), num("beta1"), num("beta2"), num("eps"), num("weight_decay"));
    let decay: Vec<String> = serde_json::from_value(adamw["decay"].clone()).expect("decay names");
    let want: Vec<f64> = serde_json::from_value(adamw["losses"].clone()).expect("losses");

    let mut gpt = golden_model(&golden);
    let params: Vec<_> =
        gpt.tape.params().map(|(id, name, v)| (id, decay.contains(&name.to_string()), v.numel())).collect();
    let mut m: Vec<Vec<f32>> = params.iter().map(|&(_, _, n)| vec![0.0; n]).collect();
    let mut v = m.clone();
    let mut grads = Grads::new();
    let mut worst = 0.0f64;
    for (step, want_loss) in want.iter().enumerate() {
        let out = gpt.forward(&golden.tokens, Some(&golden.targets), golden.batch, golden.t, None);
        let loss = out.loss.expect("loss");
        let diff = (gpt.tape.data(loss)[0] as f64 - want_loss).abs();
        println!("step {step}: loss {:.7} vs {want_loss:.7} (|diff| {diff:.1e})", gpt.tape.data(loss)[0]);
        worst = worst.max(diff);
        grads.zero();
        gpt.backward(loss, &mut grads);
        let t = (step + 1) as i32;
        let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        for (i, &(id, decays, _)) in params.iter().enumerate() {
            let g = grads.get(id).to_vec();
            let p = &mut gpt.tape.value_mut(id).data;
            for j in 0..g.len() {
                if decays {
                    p[j] -= lr * wd * p[j];
                }
                m[i][j] = beta1 * m[i][j] + (1.0 - beta1) * g[j];
                v[i][j] = beta2 * v[i][j] + (1.0 - beta2) * g[j] * g[j];
                p[j] -= lr * (m[i][j] / c1) / ((v[i][j] / c2).sqrt() + eps);
            }
        }
    }
    let mut worst_param = 0.0f32;
    for (_, name, value) in gpt.tape.params() {
        let (_, want) = golden.tensor(&format!("adamw.param.{name}"));
        worst_param = worst_param.max(max_abs_diff(&value.data, want));
    }
    println!("weights after {} steps: max |diff| {worst_param:.1e}", want.len());
    assert!(worst < 1e-5, "AdamW losses differ from PyTorch's by {worst:e}");
    assert!(worst_param < 1e-5, "AdamW weights differ from PyTorch's by {worst_param:e}");
}
