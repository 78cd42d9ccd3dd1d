//! Behaviour of the GPT: initialisation, the gradient check, dropout, the KV-cache path
//! against the full forward, and overfitting one batch.

use model::testing::randomise;
use model::{Gpt, GptConfig};
use tensor::{Grads, Rng};

fn tiny(bias: bool) -> GptConfig {
    GptConfig {
        vocab_size: 50,
        block_size: 12,
        n_layer: 2,
        n_head: 4,
        n_embd: 32,
        dropout: 0.0,
        bias,
        arch: model::Arch::GPT2,
    }
}

fn random_tokens(n: usize, vocab: usize, rng: &mut Rng) -> Vec<u32> {
    (0..n).map(|_| rng.below(vocab) as u32).collect()
}

fn std_of(data: &[f32]) -> f32 {
    let n = data.len() as f32;
    let mean = data.iter().sum::<f32>() / n;
    (data.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt()
}

#[test]
fn init_is_gpt2s_and_deterministic() {
    let config = GptConfig { n_embd: 64, ..tiny(true) };
    let a = Gpt::new(config.clone(), 7);
    let b = Gpt::new(config.clone(), 7);
    let c = Gpt::new(config.clone(), 8);
    let values = |g: &Gpt| g.tape.params().map(|(_, _, v)| v.clone()).collect::<Vec<_>>();
    assert_eq!(values(&a), values(&b), "same seed, same weights");
    assert_ne!(values(&a), values(&c), "another seed, other weights");
    let proj_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
    for (_, name, value) in a.tape.params() {
        let std = std_of(&value.data);
        if name.contains("ln_") {
            let expected = if name.ends_with(".weight") { 1.0 } else { 0.0 };
            assert!(value.data.iter().all(|&v| v == expected), "{name} starts at {expected}");
        } else if name.ends_with(".bias") {
            assert!(value.data.iter().all(|&v| v == 0.0), "{name} starts at 0");
        } else if name.ends_with("c_proj.weight") {
            assert!((std - proj_std).abs() < 0.15 * proj_std, "{name}: std {std}, want {proj_std}");
        } else {
            assert!((std - 0.02).abs() < 0.15 * 0.02, "{name}: std {std}, want 0.02");
        }
    }
    assert_eq!(a.tape.params().map(|(_, _, v)| v.numel()).sum::<usize>(), config.num_params());
}

#[test]
fn check_grads_names_a_detached_or_broken_parameter() {
    let config = tiny(false);
    let mut gpt = Gpt::new(config.clone(), 1);
    let mut rng = Rng::seeded(2);
    let tokens = random_tokens(2 * 8, config.vocab_size, &mut rng);
    let targets = random_tokens(2 * 8, config.vocab_size, &mut rng);
    let out = gpt.forward(&tokens, Some(&targets), 2, 8, None);
    let mut grads = Grads::new();
    gpt.backward(out.loss.expect("loss"), &mut grads);
    gpt.check_grads(&grads).expect("a healthy model passes");

    let (id, name) = gpt.tape.params().nth(4).map(|(id, name, _)| (id, name.to_string())).expect("5 params");
    grads.get_mut(id).fill(0.0);
    let err = gpt.check_grads(&grads).expect_err("a zero gradient is caught");
    assert!(err.contains(&name) && err.contains("all-zero"), "{err}");
    grads.get_mut(id)[3] = f32::NAN;
    let err = gpt.check_grads(&grads).expect_err("a NaN is caught");
    assert!(err.contains(&name) && err.contains("non-finite"), "{err}");
}

#[test]
fn a_params_only_store_gives_the_same_parameter_gradients_in_fewer_buffers() {
    let config = GptConfig { dropout: 0.1, ..tiny(true) };
    let mut rng = Rng::seeded(5);
    let batches: Vec<(Vec<u32>, Vec<u32>)> = (0..6)
        .map(|_| {
            (
                random_tokens(3 * 10, config.vocab_size, &mut rng),
                random_tokens(3 * 10, config.vocab_size, &mut rng),
            )
        })
        .collect();
    // Three steps of two micro-batches each (the second backward adds to the first), with
    // dropout; the same parameters for both stores, as no update is made.
    let run = |mut grads: Grads| {
        let mut gpt = Gpt::new(config.clone(), 6);
        let mut dropout = Rng::seeded(7);
        let mut held = Vec::new();
        for step in batches.chunks(2) {
            grads.zero();
            for (x, y) in step {
                let out = gpt.forward(x, Some(y), 3, 10, Some(&mut dropout));
                gpt.backward(out.loss.expect("loss"), &mut grads);
            }
            held.push(grads.held_values());
        }
        let bits = |id| grads.get(id).iter().map(|g| g.to_bits()).collect::<Vec<_>>();
        let params: Vec<Vec<u32>> = gpt.tape.params().map(|(id, _, _)| bits(id)).collect();
        let activations_with_a_gradient = (gpt.tape.n_params()..gpt.tape.len())
            .filter(|&i| !grads.get(tensor::TensorId(i)).is_empty())
            .count();
        (params, activations_with_a_gradient, held)
    };
    let (all_params, all_activations, all_held) = run(Grads::new());
    let (params, activations, held) = run(Grads::params_only());
    assert_eq!(params, all_params, "the same bits for every parameter gradient");
    assert!(all_activations > 20, "a plain store keeps activation gradients ({all_activations})");
    assert_eq!(activations, 0, "a params-only store keeps none after backward");
    assert_eq!(held[1], held[2], "later steps reuse the buffers of the first: {held:?}");
    assert!(held[2] < all_held[2], "fewer values held: {} against {}", held[2], all_held[2]);
}

#[test]
fn no_bias_model_has_no_bias_parameters() {
    let config = tiny(false);
    let mut gpt = Gpt::new(config.clone(), 3);
    assert!(gpt.param_names().iter().all(|n| !n.ends_with(".bias")));
    let mut rng = Rng::seeded(4);
    let tokens = random_tokens(8, config.vocab_size, &mut rng);
    let targets = random_tokens(8, config.vocab_size, &mut rng);
    let out = gpt.forward(&tokens, Some(&targets), 1, 8, None);
    let loss = gpt.tape.data(out.loss.expect("loss"))[0];
    // Near-uniform predictions at init: loss ≈ ln(vocab).
    assert!((loss - (config.vocab_size as f32).ln()).abs() < 0.1, "initial loss {loss}");
}

#[test]
fn dropout_applies_only_with_an_rng_and_is_seeded() {
    let config = GptConfig { dropout: 0.2, ..tiny(true) };
    let mut gpt = Gpt::new(config.clone(), 5);
    let tokens = random_tokens(2 * 12, config.vocab_size, &mut Rng::seeded(6));
    let mut loss_with = |rng: Option<&mut Rng>| {
        let out = gpt.forward(&tokens, Some(&tokens), 2, 12, rng);
        gpt.tape.data(out.loss.expect("loss"))[0]
    };
    let plain = loss_with(None);
    let dropped = loss_with(Some(&mut Rng::seeded(9)));
    let again = loss_with(Some(&mut Rng::seeded(9)));
    assert_ne!(plain, dropped, "dropout changes the loss");
    assert_eq!(dropped, again, "the same dropout seed gives the same loss");
    assert_eq!(plain, loss_with(None), "no rng, no dropout");
}

#[test]
#[should_panic(expected = "block_size")]
fn forward_refuses_a_sequence_longer_than_the_context() {
    let config = tiny(true);
    let mut gpt = Gpt::new(config.clone(), 1);
    let t = config.block_size + 1;
    gpt.forward(&vec![0; t], None, 1, t, None);
}

#[test]
#[should_panic(expected = "out of range")]
fn forward_refuses_a_token_outside_the_vocabulary() {
    let config = tiny(true);
    let mut gpt = Gpt::new(config.clone(), 1);
    gpt.forward(&[1, 2, config.vocab_size as u32], None, 1, 3, None);
}

/// Logits of every position of every sequence from the training forward: (b, t, vocab).
fn full_logits(gpt: &mut Gpt, tokens: &[u32], b: usize, t: usize) -> Vec<f32> {
    let out = gpt.forward(tokens, None, b, t, None);
    gpt.tape.data(out.logits).to_vec()
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(diff < 1e-4, "{what}: max |diff| {diff:e}");
}

#[test]
fn cached_logits_equal_the_full_forward_at_every_position() {
    // The last model is wide and long enough that its matrix-vector products, a step's
    // attention heads and a prefill's attention rows all run in parallel.
    let wide = GptConfig { block_size: 96, n_layer: 1, n_head: 3, n_embd: 192, ..tiny(true) };
    // Every architecture option on, narrow and wide.
    let all = |config: &GptConfig| GptConfig { arch: model::Arch::ALL, ..config.clone() };
    for config in [tiny(true), tiny(false), wide.clone(), all(&tiny(false)), all(&wide)] {
        let (bias, c) = (config.bias, config.n_embd);
        let (v, t) = (config.vocab_size, config.block_size);
        let mut gpt = Gpt::new(config.clone(), 11);
        randomise(&mut gpt, 12);
        let tokens = random_tokens(2 * t, v, &mut Rng::seeded(13));
        let full = full_logits(&mut gpt, &tokens, 2, t);

        // Both sequences of the batch, one token at a time, reusing one cache.
        let mut cache = gpt.new_cache();
        for seq in 0..2 {
            cache.clear();
            for pos in 0..t {
                let logits = gpt.forward_cached(&mut cache, &tokens[seq * t + pos..][..1]);
                let want = &full[(seq * t + pos) * v..][..v];
                assert_close(&logits, want, &format!("C {c}, bias {bias}, sequence {seq}, position {pos}"));
            }
            assert_eq!(cache.len(), t);
        }

        // A prompt fed at once, then one token per step.
        let mut cache = gpt.new_cache();
        let prompt = if t > 40 { 20 } else { 5 };
        let logits = gpt.forward_cached(&mut cache, &tokens[..prompt]);
        assert_close(&logits, &full[(prompt - 1) * v..][..v], &format!("after a {prompt}-token prompt"));
        for pos in prompt..t {
            let logits = gpt.forward_cached_into(&mut cache, &tokens[pos..pos + 1]);
            assert_close(logits, &full[pos * v..][..v], &format!("position {pos} after a prompt"));
        }
    }
}

#[test]
#[should_panic(expected = "exceed block_size")]
fn forward_cached_refuses_to_overflow_the_cache() {
    let gpt = Gpt::new(tiny(true), 1);
    let mut cache = gpt.new_cache();
    gpt.forward_cached(&mut cache, &vec![1; gpt.config.block_size]);
    gpt.forward_cached(&mut cache, &[1]);
}

#[test]
fn overfits_one_batch() {
    let config = GptConfig {
        vocab_size: 16,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
        dropout: 0.0,
        bias: true,
        arch: model::Arch::GPT2,
    };
    let (b, t) = (2, 8);
    let mut gpt = Gpt::new(config.clone(), 21);
    let mut rng = Rng::seeded(22);
    let tokens = random_tokens(b * t, config.vocab_size, &mut rng);
    let targets = random_tokens(b * t, config.vocab_size, &mut rng);

    // Plain Adam (no weight decay, no bias correction needed for this check).
    let (lr, beta1, beta2, eps) = (1e-2f32, 0.9f32, 0.99f32, 1e-8f32);
    let ids: Vec<_> = gpt.tape.params().map(|(id, _, v)| (id, v.numel())).collect();
    let mut m: Vec<Vec<f32>> = ids.iter().map(|&(_, n)| vec![0.0; n]).collect();
    let mut s: Vec<Vec<f32>> = ids.iter().map(|&(_, n)| vec![0.0; n]).collect();
    let mut grads = Grads::new();
    let mut losses = Vec::new();
    for _ in 0..300 {
        let out = gpt.forward(&tokens, Some(&targets), b, t, None);
        let loss = out.loss.expect("loss");
        losses.push(gpt.tape.data(loss)[0]);
        grads.zero();
        gpt.backward(loss, &mut grads);
        for (i, &(id, _)) in ids.iter().enumerate() {
            let g = grads.get(id).to_vec();
            let p = &mut gpt.tape.value_mut(id).data;
            for j in 0..g.len() {
                m[i][j] = beta1 * m[i][j] + (1.0 - beta1) * g[j];
                s[i][j] = beta2 * s[i][j] + (1.0 - beta2) * g[j] * g[j];
                p[j] -= lr * m[i][j] / (s[i][j].sqrt() + eps);
            }
        }
    }
    let last = *losses.last().expect("300 steps");
    assert!(last < 0.1, "loss after 300 steps: {last} (first {})", losses[0]);
}
