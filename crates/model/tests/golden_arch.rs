//! The architecture options against an independent PyTorch reference
//! (`scripts/golden_arch.py`, float64): for each option alone (RMSNorm, ReLU², rotary
//! positions, QK-norm, an untied head) and all of them together, the logits, the loss and
//! every parameter's gradient on the fixture's weights and tokens, as `golden.rs` checks
//! GPT-2's architecture; then the KV-cache path's logits against the tape's.

mod common;

use common::golden::{max_abs_diff, Golden};
use model::{Arch, Gpt};
use tensor::Grads;

const FIXTURES: [&str; 6] = ["rmsnorm", "relu2", "rope", "qk_norm", "untied", "all"];

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
fn every_option_matches_pytorch() {
    for stem in FIXTURES {
        let golden = Golden::load_named(&format!("golden_{stem}"));
        assert!(!golden.config.arch.is_gpt2(), "{stem}: the fixture has an option on");
        let mut gpt = golden_model(&golden);
        let out = gpt.forward(&golden.tokens, Some(&golden.targets), golden.batch, golden.t, None);
        let logits_diff = max_abs_diff(gpt.tape.data(out.logits), golden.tensor("logits").1);
        let loss = gpt.tape.data(out.loss.expect("targets given"))[0];
        let loss_diff = (loss as f64 - golden.loss).abs();
        let mut grads = Grads::new();
        gpt.backward(out.loss.expect("targets given"), &mut grads);
        let mut worst = (0.0f32, String::new());
        for (id, name, _) in gpt.tape.params() {
            let (_, want) = golden.tensor(&format!("grad.{name}"));
            let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
            let relative = max_abs_diff(grads.get(id), want) / scale;
            if relative > worst.0 {
                worst = (relative, name.to_string());
            }
        }
        println!(
            "{stem:<8} logits {logits_diff:.1e}  loss {loss_diff:.1e}  worst gradient {:.1e} ({})",
            worst.0, worst.1
        );
        assert!(logits_diff < 2e-5, "{stem}: logits differ from PyTorch's by {logits_diff:e}");
        assert!(
            loss_diff < 1e-5,
            "{stem}: loss {loss} differs from PyTorch's {} by {loss_diff:e}",
            golden.loss
        );
        assert!(
            worst.0 < 1e-4,
            "{stem}: gradient of {} differs by {:e} of its largest value",
            worst.1,
            worst.0
        );
        gpt.check_grads(&grads).expect("every parameter has a finite, non-zero gradient");
    }
}

#[test]
fn cached_logits_equal_the_tapes_for_every_option() {
    for stem in FIXTURES {
        let golden = Golden::load_named(&format!("golden_{stem}"));
        let mut gpt = golden_model(&golden);
        let t = golden.t;
        let tokens = &golden.tokens[..t];
        let out = gpt.forward(tokens, None, 1, t, None);
        let tape_logits = gpt.tape.data(out.logits).to_vec();
        let v = golden.config.vocab_size;
        // One token at a time, then the whole prompt at once.
        let mut cache = gpt.new_cache();
        for (p, &token) in tokens.iter().enumerate() {
            let logits = gpt.forward_cached(&mut cache, &[token]);
            let diff = max_abs_diff(&logits, &tape_logits[p * v..][..v]);
            assert!(diff < 1e-5, "{stem}: position {p}: cached logits differ from the tape's by {diff:e}");
        }
        let prefill = gpt.forward_cached(&mut gpt.new_cache(), tokens);
        let diff = max_abs_diff(&prefill, &tape_logits[(t - 1) * v..]);
        assert!(diff < 1e-5, "{stem}: prefill logits differ from the tape's by {diff:e}");
        // bfloat16 weights stay close, and a batch step gives each text its own bits.
        gpt.set_sampling_dtype(model::Dtype::Bf16);
        let half = gpt.forward_cached(&mut gpt.new_cache(), tokens);
        let diff = max_abs_diff(&half, &tape_logits[(t - 1) * v..]);
        assert!(diff < 0.05, "{stem}: bf16 logits differ from the tape's by {diff:e}");
        let mut batch = gpt.new_batch_cache(2);
        gpt.forward_text_into(&mut batch, 0, &tokens[..3]);
        gpt.forward_text_into(&mut batch, 1, &tokens[..5]);
        let step = gpt.forward_step_into(&mut batch, &[tokens[3], tokens[5]]).to_vec();
        for (s, len) in [(0, 4), (1, 6)] {
            let alone = gpt.forward_cached(&mut gpt.new_cache(), &tokens[..len]);
            assert_eq!(step[s * v..][..v].to_vec(), alone, "{stem}: batch text {s}");
        }
    }
}

#[test]
fn attention_traces_of_every_option_sum_to_one() {
    let golden = Golden::load_named("golden_all");
    assert_eq!(golden.config.arch, Arch::ALL);
    let gpt = golden_model(&golden);
    let trace = gpt.trace(&golden.tokens[..golden.t]);
    let t = golden.t;
    for layer in 0..trace.n_layer {
        for head in 0..trace.n_head {
            for row in trace.attention_map(layer, head).chunks(t) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "layer {layer} head {head}: weights sum to {sum}");
            }
        }
    }
}
