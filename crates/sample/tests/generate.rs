//! Generation against the model itself: greedy decoding equals the argmax of the full
//! (training) forward step by step, the KV-cache path gives the full forward's logits,
//! the sliding window past block_size matches a recomputation on its window, seeded
//! sampling frequencies match the model's softmax, and scoring matches the full forward.

use model::sampling::{argmax, generate, log_softmax, sample_next, softmax, Decoder, SamplingParams};
use model::testing::{chi_square, ChiSquare};
use model::{Gpt, GptConfig};
use tensor::Rng;

fn tiny_config(block_size: usize) -> GptConfig {
    GptConfig {
        vocab_size: 23,
        block_size,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        dropout: 0.0,
        bias: true,
        arch: model::Arch::GPT2,
    }
}

/// A random tiny model whose token embedding (tied to the head) is scaled up by `scale`,
/// so that its next-token distributions are peaked rather than nearly uniform.
fn scaled_model(block_size: usize, seed: u64, scale: f32) -> Gpt {
    let mut gpt = Gpt::new(tiny_config(block_size), seed);
    let ids: Vec<_> =
        gpt.tape.params().filter(|(_, name, _)| name.ends_with("wte.weight")).map(|p| p.0).collect();
    assert_eq!(ids.len(), 1, "expected one token embedding parameter");
    for x in &mut gpt.tape.value_mut(ids[0]).data {
        *x *= scale;
    }
    gpt
}

/// A tiny model with strongly peaked logits, where near-ties are rare.
fn sharp_model(block_size: usize, seed: u64) -> Gpt {
    scaled_model(block_size, seed, 40.0)
}

/// Logits of the last position from the training forward over `tokens` (≤ block_size).
fn full_forward_last(gpt: &mut Gpt, tokens: &[u32]) -> Vec<f32> {
    let (t, v) = (tokens.len(), gpt.config.vocab_size);
    let out = gpt.forward(tokens, None, 1, t, None);
    gpt.tape.data(out.logits)[(t - 1) * v..t * v].to_vec()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The largest and second-largest values.
fn top_two(logits: &[f32]) -> (f32, f32) {
    let mut sorted = logits.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    (sorted[0], sorted[1])
}

#[test]
fn greedy_generation_is_the_argmax_of_the_full_forward_at_every_step() {
    let mut gpt = sharp_model(24, 1);
    let prompt = [3, 1, 4, 1, 5];
    let greedy = SamplingParams { temperature: 0.0, top_k: None, top_p: None };
    let new = generate(&gpt, &prompt, 24 - prompt.len(), &greedy, &mut Rng::seeded(0), &mut |_| {});
    assert_eq!(new.len(), 24 - prompt.len());
    let mut text = prompt.to_vec();
    for (step, &token) in new.iter().enumerate() {
        let logits = full_forward_last(&mut gpt, &text);
        let expected = argmax(&logits);
        let (first, second) = top_two(&logits);
        // Rounding differences between the two paths may only flip a near-tie.
        assert!(
            token == expected || (first - second < 1e-4 && logits[token as usize] >= second),
            "step {step}: generated {token}, full forward's argmax is {expected} (logits {logits:?})"
        );
        text.push(token);
    }
}

#[test]
fn kv_cache_logits_equal_the_full_forward() {
    let mut gpt = sharp_model(16, 2);
    let tokens: Vec<u32> = (0..16).map(|i| (i * 5 + 2) % 23).collect();
    let mut decoder = Decoder::new(&gpt, &tokens[..3]);
    let mut cached = vec![decoder.logits().to_vec()];
    for &t in &tokens[3..] {
        decoder.push(t);
        cached.push(decoder.logits().to_vec());
    }
    for (i, logits) in cached.iter().enumerate() {
        let full = full_forward_last(&mut gpt, &tokens[..i + 3]);
        let diff = max_abs_diff(logits, &full);
        assert!(diff < 1e-3, "position {}: cached and full logits differ by {diff}", i + 2);
    }
}

#[test]
fn sliding_window_matches_recomputation_on_the_window() {
    let block_size = 8;
    let mut gpt = sharp_model(block_size, 3);
    let prompt = [1, 2, 3];
    let params = SamplingParams { temperature: 1.0, top_k: None, top_p: None };
    let mut rng = Rng::seeded(11);
    let mut decoder = Decoder::new(&gpt, &prompt);
    let mut text = prompt.to_vec();
    let mut checks: Vec<(Vec<u32>, Vec<f32>)> = Vec::new();
    for _ in 0..5 * block_size {
        let token = sample_next(decoder.logits(), &params, &mut rng);
        assert!((token as usize) < gpt.config.vocab_size);
        text.push(token);
        decoder.push(token);
        let window = decoder.window().to_vec();
        assert!(window.len() <= block_size && window.len() >= block_size / 2);
        assert!(text.ends_with(&window), "the window must be the latest tokens");
        checks.push((window, decoder.logits().to_vec()));
    }
    for (step, (window, logits)) in checks.iter().enumerate() {
        let full = full_forward_last(&mut gpt, window);
        let diff = max_abs_diff(logits, &full);
        assert!(diff < 1e-3, "step {step}: window {window:?}, logits differ by {diff}");
    }
}

#[test]
fn long_generation_past_block_size_gives_valid_tokens() {
    let gpt = sharp_model(8, 4);
    let prompt: Vec<u32> = (0..20).map(|i| i % 23).collect(); // longer than block_size
    let params = SamplingParams { temperature: 0.9, top_k: Some(10), top_p: Some(0.95) };
    let mut streamed = Vec::new();
    let new = generate(&gpt, &prompt, 50, &params, &mut Rng::seeded(5), &mut |t| streamed.push(t));
    assert_eq!(new.len(), 50);
    assert_eq!(new, streamed, "on_token sees every token, in order");
    assert!(new.iter().all(|&t| (t as usize) < 23));
}

#[test]
fn same_seed_same_text() {
    let gpt = sharp_model(16, 6);
    let params = SamplingParams::default();
    let run = |seed| generate(&gpt, &[7], 40, &params, &mut Rng::seeded(seed), &mut |_| {});
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}

#[test]
fn top_k_one_generates_the_greedy_text() {
    let gpt = sharp_model(16, 7);
    let greedy = SamplingParams { temperature: 0.0, top_k: None, top_p: None };
    let top1 = SamplingParams { temperature: 1.3, top_k: Some(1), top_p: None };
    let a = generate(&gpt, &[2, 9], 30, &greedy, &mut Rng::seeded(1), &mut |_| {});
    let b = generate(&gpt, &[2, 9], 30, &top1, &mut Rng::seeded(2), &mut |_| {});
    assert_eq!(a, b);
}

#[test]
fn sampling_frequencies_match_the_models_softmax() {
    let mut gpt = scaled_model(16, 8, 8.0);
    let context = [4, 8, 15, 16];
    let logits = full_forward_last(&mut gpt, &context);
    let probs = softmax(&logits, 1.0);
    let params = SamplingParams { temperature: 1.0, top_k: None, top_p: None };
    let decoder = Decoder::new(&gpt, &context);
    let mut rng = Rng::seeded(2025);
    let n = 20_000;
    let mut counts = vec![0usize; probs.len()];
    for _ in 0..n {
        counts[sample_next(decoder.logits(), &params, &mut rng) as usize] += 1;
    }
    let ChiSquare { stat, bound, df } = chi_square(&counts, &probs);
    assert!(df >= 2, "the distribution is too peaked for a useful test: {probs:?}");
    assert!(stat < bound, "χ² = {stat:.1} ≥ {bound:.1} (df {df}): counts {counts:?}, probs {probs:?}");
    eprintln!("χ² = {stat:.1} < {bound:.1} (df {df})");
}

#[test]
fn scores_are_the_full_forwards_log_probabilities() {
    let mut gpt = sharp_model(16, 9);
    let context = [0u32];
    let text: Vec<u32> = vec![5, 6, 7, 8, 9, 10, 11];
    let scores = sample::score(&gpt, &context, &text);
    let mut all = context.to_vec();
    for (i, &token) in text.iter().enumerate() {
        let expected = log_softmax(&full_forward_last(&mut gpt, &all))[token as usize];
        assert!((scores[i] - expected).abs() < 1e-3, "token {i}: score {} vs {expected}", scores[i]);
        all.push(token);
    }
}
