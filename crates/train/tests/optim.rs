//! The schedule, AdamW's decay groups and update, and gradient clipping, on hand-made
//! parameters (no model needed).

use tensor::{Grads, Tape, Tensor, TensorId};
use train::config::{OptimSection, Schedule};
use train::optim::{clip_grad_norm, clip_scale, decays, grad_norm, AdamW, AdamWConfig};
use train::schedule::{learning_rate, muon_learning_rate};

fn optim() -> OptimSection {
    OptimSection {
        learning_rate: 1e-3,
        min_lr: 1e-4,
        warmup_iters: 100,
        lr_decay_iters: 2000,
        ..OptimSection::default()
    }
}

#[test]
fn schedule_warms_up_linearly() {
    let o = optim();
    assert!((learning_rate(0, &o) - 1e-3 / 101.0).abs() < 1e-15);
    assert!((learning_rate(49, &o) - 1e-3 * 50.0 / 101.0).abs() < 1e-15);
    assert!((learning_rate(99, &o) - 1e-3 * 100.0 / 101.0).abs() < 1e-15);
    assert!((learning_rate(100, &o) - 1e-3).abs() < 1e-15, "peak right after warm-up");
}

#[test]
fn schedule_cosine_midpoint_and_floor() {
    let o = optim();
    let mid = (100 + 2000) / 2;
    assert!((learning_rate(mid, &o) - (1e-4 + 0.5 * (1e-3 - 1e-4))).abs() < 1e-12);
    assert!((learning_rate(2000, &o) - 1e-4).abs() < 1e-15);
    assert_eq!(learning_rate(2001, &o), 1e-4);
    assert_eq!(learning_rate(1_000_000, &o), 1e-4);
    let falling: Vec<f64> = (100..=2000).step_by(100).map(|i| learning_rate(i, &o)).collect();
    assert!(falling.windows(2).all(|w| w[1] < w[0]), "{falling:?}");
    let constant = OptimSection { decay_lr: false, ..o };
    assert_eq!(learning_rate(5, &constant), 1e-3);
}

#[test]
fn wsd_schedule_is_a_trapezoid() {
    let o = OptimSection { schedule: Schedule::Wsd, warmdown_iters: 400, ..optim() };
    // warm-up as the cosine's
    assert_eq!(learning_rate(0, &o), learning_rate(0, &optim()));
    assert_eq!(learning_rate(99, &o), learning_rate(99, &optim()));
    // stable at the peak up to the start of the warm-down, step 2000 - 400 = 1600
    for it in [100, 1000, 1600] {
        assert_eq!(learning_rate(it, &o), 1e-3, "step {it}");
    }
    // linear to min_lr at lr_decay_iters, then the floor
    assert!((learning_rate(1601, &o) - (1e-3 - 0.9e-3 / 400.0)).abs() < 1e-15);
    assert!((learning_rate(1800, &o) - (1e-4 + 0.5 * 0.9e-3)).abs() < 1e-15);
    assert!((learning_rate(1999, &o) - (1e-4 + 0.9e-3 / 400.0)).abs() < 1e-15);
    assert_eq!(learning_rate(2000, &o), 1e-4);
    assert_eq!(learning_rate(2001, &o), 1e-4);
    let falling: Vec<f64> = (1600..=2000).map(|i| learning_rate(i, &o)).collect();
    assert!(falling.windows(2).all(|w| w[1] < w[0]));
    assert_eq!(learning_rate(1700, &OptimSection { decay_lr: false, ..o.clone() }), 1e-3);
}

#[test]
fn muon_learning_rate_follows_the_schedule() {
    let o = OptimSection { muon_learning_rate: 0.02, ..optim() };
    assert!((muon_learning_rate(0, &o) - 0.02 / 101.0).abs() < 1e-15);
    assert!((muon_learning_rate(100, &o) - 0.02).abs() < 1e-15);
    assert!((muon_learning_rate(2000, &o) - 0.002).abs() < 1e-15, "the floor scales too");
}

/// A tape with a GPT's kinds of parameters: 2-D embeddings and weights, 1-D biases and
/// LayerNorm parameters.
fn toy_tape() -> Tape {
    let mut tape = Tape::new();
    tape.param("transformer.wte.weight", Tensor::filled(&[5, 4], 1.0));
    tape.param("transformer.wpe.weight", Tensor::filled(&[3, 4], 1.0));
    tape.param("transformer.h.0.ln_1.weight", Tensor::filled(&[4], 1.0));
    tape.param("transformer.h.0.ln_1.bias", Tensor::filled(&[4], 1.0));
    tape.param("transformer.h.0.attn.c_attn.weight", Tensor::filled(&[12, 4], 1.0));
    tape.param("transformer.h.0.attn.c_attn.bias", Tensor::filled(&[12], 1.0));
    tape
}

fn grads_of(tape: &Tape, value: f32) -> Grads {
    let mut grads = Grads::new();
    for (id, _, t) in tape.params() {
        grads.slot(id, t.numel()).fill(value);
    }
    grads
}

#[test]
fn decay_groups_follow_nanogpt() {
    let tape = toy_tape();
    let opt = AdamW::new(&tape, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    assert_eq!(opt.decay_mask(), &[true, true, false, false, true, false]);
    assert!(decays(&[3, 4]) && !decays(&[4]));
}

#[test]
fn zero_gradient_update_is_pure_weight_decay() {
    let mut tape = toy_tape();
    let grads = grads_of(&tape, 0.0);
    let mut opt = AdamW::new(&tape, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    opt.update(&mut tape, &grads, 0.5, 1.0);
    assert_eq!(tape.data(TensorId(0))[0], 1.0 - 0.5 * 0.1, "wte decays");
    assert_eq!(tape.data(TensorId(1))[0], 1.0 - 0.5 * 0.1, "wpe decays, as in nanoGPT");
    assert_eq!(tape.data(TensorId(2))[0], 1.0, "LayerNorm weight does not decay");
    assert_eq!(tape.data(TensorId(5))[0], 1.0, "bias does not decay");
}

#[test]
fn adamw_matches_the_textbook_update() {
    // Two steps with gradient g on a non-decayed scalar-like parameter, computed in f64.
    let mut tape = toy_tape();
    let (b1, b2, eps, lr) = (0.9f64, 0.95f64, 1e-8f64, 1e-2f64);
    let mut opt = AdamW::new(&tape, AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 });
    let (mut p, mut m, mut v) = (1.0f64, 0.0f64, 0.0f64);
    for (t, g) in [(1, 0.3f64), (2, -0.7f64)] {
        let grads = grads_of(&tape, g as f32);
        opt.update(&mut tape, &grads, lr as f32, 1.0);
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let m_hat = m / (1.0 - b1.powi(t));
        let v_hat = v / (1.0 - b2.powi(t));
        p -= lr * m_hat / (v_hat.sqrt() + eps);
    }
    let got = tape.data(TensorId(3))[0] as f64;
    assert!((got - p).abs() < 1e-6, "got {got}, expected {p}");
    assert_eq!(opt.step, 2);
}

#[test]
fn optimizer_state_round_trips() {
    let mut tape = toy_tape();
    let config = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let mut opt = AdamW::new(&tape, config);
    let grads = grads_of(&tape, 0.25);
    opt.update(&mut tape, &grads, 1e-3, 1.0);
    let mut other = AdamW::new(&tape, config);
    other.restore(&opt.state()).expect("same shapes");
    assert_eq!(other.state(), opt.state());
    let mut small = Tape::new();
    small.param("w", Tensor::zeros(&[2, 2]));
    assert!(AdamW::new(&small, config).restore(&opt.state()).is_err());
}

#[test]
fn global_norm_and_clipping() {
    let tape = toy_tape();
    let mut grads = grads_of(&tape, 2.0);
    let n: usize = tape.params().map(|(_, _, t)| t.numel()).sum();
    let expected = (4.0 * n as f64).sqrt();
    assert!((grad_norm(&tape, &grads) - expected).abs() < 1e-9);
    let before = clip_grad_norm(&tape, &mut grads, 1.0);
    assert!((before - expected).abs() < 1e-9);
    assert!((grad_norm(&tape, &grads) - 1.0).abs() < 1e-5, "clipped to max_norm");
    let unchanged = clip_grad_norm(&tape, &mut grads, 10.0);
    assert!((grad_norm(&tape, &grads) - unchanged).abs() < 1e-12, "below max_norm: untouched");
    assert_eq!(clip_scale(5.0, 0.0), 1.0, "0 disables clipping");
}

#[test]
fn clip_scale_inside_the_update_equals_clipping_first() {
    let config = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let (mut a, mut b) = (toy_tape(), toy_tape());
    let mut grads = grads_of(&a, 3.0);
    let scale = clip_scale(grad_norm(&a, &grads), 1.0);
    AdamW::new(&a, config).update(&mut a, &grads, 1e-3, scale);
    clip_grad_norm(&b, &mut grads, 1.0);
    AdamW::new(&b, config).update(&mut b, &grads, 1e-3, 1.0);
    for i in 0..a.n_params() {
        let (x, y) = (a.data(TensorId(i)), b.data(TensorId(i)));
        assert!(x.iter().zip(y).all(|(x, y)| (x - y).abs() < 1e-7), "parameter {i}");
    }
}

/// Parameters of several sizes around the optimizer's chunk (16384 values), with varied
/// gradients, and a scalar f64 reference for the norm.
fn varied(sizes: &[usize]) -> (Tape, Grads, f64) {
    let mut rng = tensor::Rng::seeded(11);
    let mut tape = Tape::new();
    for (i, &n) in sizes.iter().enumerate() {
        tape.param(&format!("w{i}"), Tensor::randn(&[n, 1], 1.0, &mut rng));
    }
    let mut grads = Grads::new();
    let mut squares = 0.0f64;
    for (id, _, t) in tape.params() {
        let g = Tensor::randn(&[t.numel()], 0.1, &mut rng);
        squares += g.data.iter().map(|&x| x as f64 * x as f64).sum::<f64>();
        grads.slot(id, t.numel()).copy_from_slice(&g.data);
    }
    (tape, grads, squares.sqrt())
}

#[test]
fn norm_and_update_over_several_chunks_match_plain_loops() {
    let (mut tape, grads, norm) = varied(&[3, 16384, 40000, 7]);
    assert!((grad_norm(&tape, &grads) - norm).abs() < 1e-9 * norm, "the norm over chunks");

    let config = AdamWConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 };
    let before: Vec<Vec<f32>> = tape.params().map(|(_, _, t)| t.data.clone()).collect();
    let mut opt = AdamW::new(&tape, config);
    let (lr, scale) = (1e-3f32, 0.5f32);
    opt.update(&mut tape, &grads, lr, scale);
    // One step from zero moments: m = (1 − β1)·g, v = (1 − β2)·g², bias-corrected.
    let step_size = (lr as f64 / (1.0 - 0.9f32 as f64)) as f32;
    let inv_bias2_sqrt = (1.0 / (1.0 - 0.99f32 as f64).sqrt()) as f32;
    for (i, p0) in before.iter().enumerate() {
        let g = grads.get(TensorId(i));
        for (j, (&p, &p0)) in tape.data(TensorId(i)).iter().zip(p0).enumerate() {
            let g = g[j] * scale;
            let (m, v) = ((1.0 - 0.9f32) * g, (1.0 - 0.99f32) * g * g);
            let expected = p0 * (1.0 - lr * 0.1) - step_size * m / (v.sqrt() * inv_bias2_sqrt + 1e-8);
            assert_eq!(p.to_bits(), expected.to_bits(), "parameter {i}, value {j}");
        }
    }
}

#[test]
fn muon_takes_the_blocks_matrices_and_keeps_its_momentum_in_m() {
    use train::{LearningRates, MuonConfig, Optimizer};
    let adamw = AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let muon = MuonConfig { momentum: 0.95, weight_decay: 0.5 };
    assert_eq!(train::muon::muon_blocks("transformer.h.0.attn.c_attn.weight", &[12, 4]), Some(3));
    assert_eq!(train::muon::muon_blocks("transformer.h.0.mlp.c_fc.weight", &[16, 4]), Some(1));
    assert_eq!(train::muon::muon_blocks("transformer.wte.weight", &[5, 4]), None);
    assert_eq!(train::muon::muon_blocks("transformer.h.0.ln_1.weight", &[4]), None);

    let mut tape = toy_tape();
    let mut opt = Optimizer::new(&tape, adamw, Some(muon));
    let owned: Vec<bool> =
        (0..tape.n_params()).map(|i| opt.muon.as_ref().is_some_and(|m| m.owns(TensorId(i)))).collect();
    assert_eq!(owned, [false, false, false, false, true, false], "only c_attn's weight");
    // A zero gradient: Muon's update is zero, so its parameter only decays, by lr·wd.
    let lr = LearningRates { adamw: 1e-3, muon: 0.1 };
    let (zero, half) = (grads_of(&tape, 0.0), grads_of(&tape, 0.5));
    opt.update(&mut tape, &zero, lr, 1.0);
    assert_eq!(tape.data(TensorId(4))[0], 1.0 - 0.1 * 0.5);
    opt.update(&mut tape, &half, lr, 1.0);

    let state = opt.state();
    assert_eq!(state.step, 2);
    assert_eq!((state.m[4].len(), state.v[4].len()), (48, 0), "momentum in m, v empty");
    assert!(state.m[4].iter().all(|&x| (x - 0.05 * 0.5).abs() < 1e-7), "buf = (1 − β)·g after one step");
    assert_eq!((state.m[0].len(), state.v[0].len()), (20, 20), "AdamW's moments");
    let mut other = Optimizer::new(&tape, adamw, Some(muon));
    other.restore(&state).expect("same layout");
    assert_eq!(other.state(), state);
    // An AdamW state does not fit a Muon run, nor the other way round.
    let plain = Optimizer::new(&tape, adamw, None).state();
    let e = Optimizer::new(&tape, adamw, Some(muon)).restore(&plain).expect_err("AdamW moments");
    assert!(e.contains("parameter 4 holds AdamW moments"), "{e}");
    assert!(Optimizer::new(&tape, adamw, None).restore(&state).is_err());
}
