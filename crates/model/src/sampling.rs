//! Choosing the next token from logits (temperature, top-k, top-p) and generating text
//! with the KV cache, sliding the window once the text outgrows block_size.
//!
//! Probabilities are computed in `f64` from `logits / temperature` minus their maximum
//! (the stable softmax), so a peaked or very low-temperature distribution neither
//! overflows nor rounds its tail to nonsense.
//!
//! The sliding window: learned position embeddings tie every cached key and value to its
//! absolute position, so a full cache cannot simply drop its oldest entry. When the
//! window holds block_size tokens and one more arrives, [`Decoder`] rebuilds the cache
//! from the last `block_size / 2` tokens (re-fed through `forward_cached`) and continues
//! one token at a time. The model therefore always sees between block_size/2 and block_size of the
//! latest tokens, and a long generation costs about one extra forward position per new
//! token rather than a full forward over block_size tokens at every step.

use tensor::Rng;

use crate::{Gpt, KvCache};

/// How to pick each next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy (argmax); 1 samples the model's distribution as is.
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p (nucleus).
    pub top_p: Option<f32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.8, top_k: None, top_p: None }
    }
}

impl SamplingParams {
    /// Temperature finite and ≥ 0, top-k ≥ 1, top-p in (0, 1]. The error is one sentence
    /// naming the value and the allowed range.
    pub fn validate(&self) -> Result<(), String> {
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!(
                "temperature must be a finite number ≥ 0 (0 is greedy, 1 is the model's own distribution), got {t}"
            ));
        }
        if self.top_k == Some(0) {
            return Err("top-k must be at least 1 (1 is greedy; omit it to keep every token), got 0".into());
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(format!("top-p must be in (0, 1] (1 keeps every token), got {p}"));
            }
        }
        Ok(())
    }
}

/// The index of the largest logit; ties go to the lowest id. Panics on empty logits.
pub fn argmax(logits: &[f32]) -> u32 {
    assert!(!logits.is_empty(), "argmax: empty logits");
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// softmax(logits / temperature) in `f64`, stable (the maximum is subtracted first).
/// Panics when temperature is not > 0.
pub fn softmax(logits: &[f32], temperature: f32) -> Vec<f64> {
    assert!(temperature > 0.0, "softmax: temperature must be > 0, got {temperature}");
    let t = temperature as f64;
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let mut probs: Vec<f64> = logits.iter().map(|&x| ((x as f64 - max) / t).exp()).collect();
    let sum: f64 = probs.iter().sum();
    for p in &mut probs {
        *p /= sum;
    }
    probs
}

/// log softmax(logits) in `f64` (temperature 1): the log-probability of every token,
/// for scoring text.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let log_sum = logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&x| x as f64 - log_sum).collect()
}

/// The natural-log probability of `token` under softmax(logits) (temperature 1).
pub fn log_prob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let log_sum = logits.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln() + max;
    logits[token as usize] as f64 - log_sum
}

/// The `limit` most likely token ids (all when `None`), most likely first; equal
/// probabilities keep id order. A limit selects before sorting, so top-k over a large
/// vocabulary sorts only k ids.
fn ranked(probs: &[f64], limit: Option<usize>) -> Vec<u32> {
    let order = |a: &u32, b: &u32| probs[*b as usize].total_cmp(&probs[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..probs.len() as u32).collect();
    if let Some(k) = limit.filter(|&k| k > 0 && k < ids.len()) {
        ids.select_nth_unstable_by(k - 1, order);
        ids.truncate(k);
    }
    ids.sort_unstable_by(order);
    ids
}

/// The `n` most likely next tokens and their probabilities under softmax(logits /
/// temperature), most likely first. Temperature 0 shows the model's own distribution
/// (temperature 1): greedy decoding simply takes the first row.
pub fn top_n(logits: &[f32], temperature: f32, n: usize) -> Vec<(u32, f32)> {
    let t = if temperature > 0.0 { temperature } else { 1.0 };
    let probs = softmax(logits, t);
    ranked(&probs, Some(n)).into_iter().take(n).map(|id| (id, probs[id as usize] as f32)).collect()
}

/// The tokens `sample_next` may draw and their renormalised probabilities, most likely
/// first: softmax(logits / temperature), then the k most likely (top-k), then the
/// smallest prefix whose probability reaches p (top-p, at least one token). Temperature
/// 0 leaves the argmax alone, with probability 1.
pub fn candidates(logits: &[f32], params: &SamplingParams) -> Vec<(u32, f64)> {
    if params.temperature <= 0.0 {
        return vec![(argmax(logits), 1.0)];
    }
    let probs = softmax(logits, params.temperature);
    let top_k = params.top_k.map(|k| k.max(1));
    let mut kept: Vec<(u32, f64)> =
        ranked(&probs, top_k).into_iter().map(|id| (id, probs[id as usize])).collect();
    renormalise(&mut kept);
    if let Some(p) = params.top_p {
        let mut cumulative = 0.0;
        let mut n = 0;
        for &(_, q) in &kept {
            cumulative += q;
            n += 1;
            if cumulative >= p as f64 {
                break;
            }
        }
        kept.truncate(n.max(1));
        renormalise(&mut kept);
    }
    kept
}

fn renormalise(kept: &mut [(u32, f64)]) {
    let total: f64 = kept.iter().map(|&(_, q)| q).sum();
    for (_, q) in kept.iter_mut() {
        *q /= total;
    }
}

/// Uniform in [0, 1) with 53 random bits.
fn uniform_f64(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// One draw from `(token, probability)` pairs whose probabilities sum to 1.
fn draw(dist: impl Iterator<Item = (u32, f64)>, rng: &mut Rng) -> u32 {
    let u = uniform_f64(rng);
    let mut cumulative = 0.0;
    let mut last = 0;
    for (id, q) in dist {
        cumulative += q;
        last = id;
        if u < cumulative {
            return id;
        }
    }
    // Rounding left u just past the final cumulative sum: the last token is the draw.
    last
}

/// Picks the next token from one position's logits.
pub fn sample_next(logits: &[f32], params: &SamplingParams, rng: &mut Rng) -> u32 {
    if params.temperature <= 0.0 || params.top_k == Some(1) {
        return argmax(logits);
    }
    if params.top_k.is_none() && params.top_p.is_none() {
        // No filtering: draw in id order from the full distribution, no sort needed.
        let probs = softmax(logits, params.temperature);
        return draw(probs.iter().enumerate().map(|(i, &q)| (i as u32, q)), rng);
    }
    draw(candidates(logits, params).into_iter(), rng)
}

/// Incremental decoding over the KV cache with the sliding window described at the top
/// of this file: holds the tokens the cache has seen and the logits of the next token,
/// of one text or of a batch of texts decoded together ([`Decoder::batch`]).
pub struct Decoder<'a> {
    gpt: &'a Gpt,
    cache: KvCache,
    /// Each text's tokens, at positions 0.., oldest first.
    windows: Vec<Vec<u32>>,
    /// Each text's logits for its next token (texts, vocab_size).
    logits: Vec<f32>,
}

impl<'a> Decoder<'a> {
    /// Feeds the prompt (its last block_size tokens when it is longer) into a fresh
    /// cache. Panics when the prompt is empty: the model needs one token to predict from.
    pub fn new(gpt: &'a Gpt, prompt: &[u32]) -> Decoder<'a> {
        Decoder::batch(gpt, prompt, 1)
    }

    /// `texts` texts that all start from `prompt`, decoded together: each step feeds the
    /// next token of every text as one batch ([`Gpt::forward_step_into`]), and each text's
    /// logits are those a decoder of its own would give. Panics when the prompt is empty
    /// or `texts` is 0.
    pub fn batch(gpt: &'a Gpt, prompt: &[u32], texts: usize) -> Decoder<'a> {
        assert!(
            !prompt.is_empty(),
            "Decoder::new: the prompt is empty; start from a token such as a newline"
        );
        let block_size = gpt.config.block_size;
        let window = &prompt[prompt.len().saturating_sub(block_size)..];
        let mut cache = gpt.new_batch_cache(texts);
        let mut logits = Vec::with_capacity(texts * gpt.config.vocab_size);
        for text in 0..texts {
            logits.extend_from_slice(gpt.forward_text_into(&mut cache, text, window));
        }
        Decoder { gpt, cache, windows: vec![window.to_vec(); texts], logits }
    }

    /// The logits (vocab_size) of the token after the (first text's) window.
    pub fn logits(&self) -> &[f32] {
        self.text_logits(0)
    }

    /// The logits (vocab_size) of the token after text `text`'s window.
    pub fn text_logits(&self, text: usize) -> &[f32] {
        let v = self.gpt.config.vocab_size;
        &self.logits[text * v..][..v]
    }

    /// The tokens the model currently conditions on (for the first text), at positions
    /// 0.., oldest first.
    pub fn window(&self) -> &[u32] {
        &self.windows[0]
    }

    /// Appends a token: one incremental step, or, when the window is full, a rebuild of
    /// the cache from the last block_size / 2 tokens (the new one included).
    pub fn push(&mut self, token: u32) {
        self.push_each(&[token]);
    }

    /// Appends `tokens[s]` to text s, for every text: one step of the whole batch, or,
    /// when the windows are full (they fill together), a rebuild of each text's cache from
    /// its last block_size / 2 tokens, one text after another.
    pub fn push_each(&mut self, tokens: &[u32]) {
        assert_eq!(tokens.len(), self.windows.len(), "Decoder::push_each: one token per text");
        let block_size = self.gpt.config.block_size;
        self.windows.iter_mut().zip(tokens).for_each(|(w, &t)| w.push(t));
        if self.windows[0].len() <= block_size {
            let logits = self.gpt.forward_step_into(&mut self.cache, tokens);
            self.logits.copy_from_slice(logits);
            return;
        }
        let keep = (block_size / 2).max(1);
        let v = self.gpt.config.vocab_size;
        for (text, window) in self.windows.iter_mut().enumerate() {
            window.drain(..window.len() - keep);
            self.cache.clear_text(text);
            let logits = self.gpt.forward_text_into(&mut self.cache, text, window);
            self.logits[text * v..][..v].copy_from_slice(logits);
        }
    }
}

/// Generates up to `max_new_tokens` after `prompt` (which must not be empty), calling
/// `on_token` with each new token as soon as it is chosen (it returns false to stop early,
/// when the output is closed), and keeping none of them: memory
/// stays that of the model and its KV cache however many tokens are asked for. Only the
/// first `allowed` ids may be drawn (a tokenizer smaller than the model's vocabulary, as in
/// a GPT-2 whose vocabulary was padded, gives the model ids with no text: they are never
/// chosen). Texts longer than block_size slide the window as [`Decoder`] describes.
///
/// The whole loop runs as one task on rayon's pool (`tensor::on_pool`), so the other
/// workers stay awake (spinning) from token to token: waking them for each token, and
/// again for each window rebuild, would cost about as much as a small model's step. So
/// `on_token` runs on a pool thread too: it should be quick, and must not wait for other
/// work on the same pool.
pub fn stream(
    gpt: &Gpt,
    prompt: &[u32],
    max_new_tokens: u64,
    allowed: usize,
    params: &SamplingParams,
    rng: &mut Rng,
    on_token: &mut (dyn FnMut(u32) -> bool + Send),
) {
    if max_new_tokens == 0 {
        return;
    }
    let allowed = allowed.clamp(1, gpt.config.vocab_size);
    tensor::on_pool(|| {
        let mut decoder = Decoder::new(gpt, prompt);
        for n in 1..=max_new_tokens {
            let token = sample_next(&decoder.logits()[..allowed], params, rng);
            if !on_token(token) || n == max_new_tokens {
                break;
            }
            decoder.push(token);
        }
    })
}

/// [`stream`] over the whole vocabulary, also returning the new tokens (for a bounded
/// `max_new_tokens`: the tokens are kept).
pub fn generate(
    gpt: &Gpt,
    prompt: &[u32],
    max_new_tokens: usize,
    params: &SamplingParams,
    rng: &mut Rng,
    on_token: &mut (dyn FnMut(u32) + Send),
) -> Vec<u32> {
    let mut new_tokens = Vec::new();
    let vocab_size = gpt.config.vocab_size;
    stream(gpt, prompt, max_new_tokens as u64, vocab_size, params, rng, &mut |token| {
        on_token(token);
        new_tokens.push(token);
        true
    });
    new_tokens
}

/// The random stream each of `n` samples starts from when they are generated one after
/// another from `rng` ([`generate`] each, `max_new_tokens` tokens): [`sample_next`] draws
/// one number per token unless it is greedy, so sample i starts i·max_new_tokens draws in.
pub fn sample_streams(rng: &Rng, n: usize, max_new_tokens: usize, params: &SamplingParams) -> Vec<Rng> {
    let greedy = params.temperature <= 0.0 || params.top_k == Some(1);
    let draws = if greedy { 0 } else { max_new_tokens };
    let mut next = rng.clone();
    (0..n)
        .map(|_| {
            let start = next.clone();
            (0..draws).for_each(|_| {
                next.next_u64();
            });
            start
        })
        .collect()
}

/// [`generate`] for `rngs.len()` samples at once, sample s drawing from `rngs[s]`: one
/// batch per step ([`Decoder::batch`]), each weight read once for all samples, and each
/// sample's tokens those [`generate`] gives from the same stream. `on_token(s, token)`
/// sees each new token (every sample's, step by step). Returns the new tokens per sample.
pub fn generate_batch(
    gpt: &Gpt,
    prompt: &[u32],
    max_new_tokens: usize,
    params: &SamplingParams,
    rngs: &mut [Rng],
    on_token: &mut (dyn FnMut(usize, u32) + Send),
) -> Vec<Vec<u32>> {
    let mut texts = vec![Vec::with_capacity(max_new_tokens); rngs.len()];
    if max_new_tokens == 0 || rngs.is_empty() {
        return texts;
    }
    tensor::on_pool(|| {
        let mut decoder = Decoder::batch(gpt, prompt, rngs.len());
        let mut tokens = vec![0; rngs.len()];
        loop {
            for (s, (rng, text)) in rngs.iter_mut().zip(&mut texts).enumerate() {
                tokens[s] = sample_next(decoder.text_logits(s), params, rng);
                on_token(s, tokens[s]);
                text.push(tokens[s]);
            }
            if texts[0].len() == max_new_tokens {
                return texts;
            }
            decoder.push_each(&tokens);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{chi_square, ChiSquare};

    fn params(temperature: f32, top_k: Option<usize>, top_p: Option<f32>) -> SamplingParams {
        SamplingParams { temperature, top_k, top_p }
    }

    /// Logits whose softmax is exactly `probs`.
    fn logits_of(probs: &[f64]) -> Vec<f32> {
        probs.iter().map(|p| p.ln() as f32).collect()
    }

    #[test]
    fn argmax_ties_go_to_the_lowest_id() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[5.0]), 0);
        assert_eq!(argmax(&[-1.0, -1.0]), 0);
    }

    #[test]
    fn temperature_zero_is_argmax_and_uses_no_randomness() {
        let logits = [0.1, 2.0, 2.0, -3.0];
        let mut rng = Rng::seeded(1);
        let before = rng.clone();
        for _ in 0..10 {
            assert_eq!(sample_next(&logits, &params(0.0, None, None), &mut rng), 1);
        }
        assert_eq!(rng, before);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut rng = Rng::seeded(2);
        let logits = [0.3, -1.0, 0.9, 0.89, 0.0];
        for t in [0.5, 1.0, 3.0] {
            for _ in 0..50 {
                assert_eq!(sample_next(&logits, &params(t, Some(1), None), &mut rng), 2);
            }
        }
    }

    #[test]
    fn softmax_is_stable_for_huge_logits() {
        let probs = softmax(&[1000.0, 1000.0, -1000.0], 1.0);
        assert!((probs[0] - 0.5).abs() < 1e-12 && (probs[1] - 0.5).abs() < 1e-12);
        assert_eq!(probs[2], 0.0);
        let sharp = softmax(&[1.0, 0.0], 1e-3);
        assert!(sharp[0] == 1.0 && sharp[1] == 0.0);
    }

    #[test]
    fn log_prob_matches_log_of_softmax() {
        let logits = [0.5, -0.25, 2.0, 1.0];
        let probs = softmax(&logits, 1.0);
        let all = log_softmax(&logits);
        for (i, p) in probs.iter().enumerate() {
            assert!((log_prob(&logits, i as u32) - p.ln()).abs() < 1e-12);
            assert!((all[i] - p.ln()).abs() < 1e-12);
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_set_reaching_p() {
        // Probabilities 0.15, 0.5, 0.1, 0.25: ranked 1, 3, 0, 2.
        let logits = logits_of(&[0.15, 0.5, 0.1, 0.25]);
        let ids = |p: f32| -> Vec<u32> {
            candidates(&logits, &params(1.0, None, Some(p))).iter().map(|c| c.0).collect()
        };
        assert_eq!(ids(0.01), vec![1]);
        assert_eq!(ids(0.5), vec![1]);
        assert_eq!(ids(0.6), vec![1, 3]);
        assert_eq!(ids(0.8), vec![1, 3, 0]);
        assert_eq!(ids(0.95), vec![1, 3, 0, 2]);
        assert_eq!(ids(1.0), vec![1, 3, 0, 2]);
        let kept = candidates(&logits, &params(1.0, None, Some(0.6)));
        assert!((kept[0].1 - 0.5 / 0.75).abs() < 1e-9);
        assert!((kept[1].1 - 0.25 / 0.75).abs() < 1e-9);
    }

    #[test]
    fn top_k_then_top_p_work_on_the_renormalised_top_k() {
        let logits = logits_of(&[0.15, 0.5, 0.1, 0.25]);
        // top-2 leaves 0.5/0.75 and 0.25/0.75; p = 0.6 then keeps only the first.
        let kept = candidates(&logits, &params(1.0, Some(2), Some(0.6)));
        assert_eq!(kept, vec![(1, 1.0)]);
        let kept = candidates(&logits, &params(1.0, Some(3), None));
        assert_eq!(kept.iter().map(|c| c.0).collect::<Vec<_>>(), vec![1, 3, 0]);
        assert!((kept.iter().map(|c| c.1).sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn top_k_selects_the_same_tokens_as_a_full_sort() {
        let mut rng = Rng::seeded(4);
        // Rounded values make many exact ties, which must still break towards low ids.
        let logits: Vec<f32> = (0..1000).map(|_| (rng.normal() * 4.0).round() / 2.0).collect();
        let all = candidates(&logits, &params(1.0, None, None));
        let top = candidates(&logits, &params(1.0, Some(50), None));
        let ids = |c: &[(u32, f64)]| c.iter().map(|x| x.0).collect::<Vec<_>>();
        assert_eq!(ids(&top), ids(&all[..50]));
    }

    #[test]
    fn top_p_never_draws_outside_its_set() {
        let logits = logits_of(&[0.15, 0.5, 0.1, 0.25]);
        let mut rng = Rng::seeded(9);
        for _ in 0..2000 {
            let id = sample_next(&logits, &params(1.0, None, Some(0.6)), &mut rng);
            assert!(id == 1 || id == 3, "drew {id} outside the nucleus {{1, 3}}");
        }
    }

    #[test]
    fn top_n_ranks_and_ties_by_id() {
        let rows = top_n(&[1.0, 3.0, 3.0, 0.0], 1.0, 3);
        assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        assert!((rows[0].1 - rows[1].1).abs() < 1e-7);
        assert_eq!(top_n(&[1.0, 2.0], 0.0, 5), top_n(&[1.0, 2.0], 1.0, 5));
    }

    #[test]
    fn same_seed_same_draws() {
        let logits = [0.2, 0.1, -0.3, 0.7, 0.0];
        let p = params(0.8, Some(4), Some(0.9));
        let run = |seed| {
            let mut rng = Rng::seeded(seed);
            (0..100).map(|_| sample_next(&logits, &p, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn frequencies_at_temperature_one_match_softmax() {
        let logits = [1.5, 0.2, -0.4, 0.9, 0.0, -2.0, 2.1, -1.0];
        let probs = softmax(&logits, 1.0);
        let mut rng = Rng::seeded(2024);
        let mut counts = vec![0; logits.len()];
        for _ in 0..20_000 {
            counts[sample_next(&logits, &params(1.0, None, None), &mut rng) as usize] += 1;
        }
        let ChiSquare { stat, bound, .. } = chi_square(&counts, &probs);
        assert!(stat < bound, "χ² = {stat:.1} ≥ {bound:.1}: counts {counts:?}, probs {probs:?}");
        // The same test rejects the distribution of another temperature.
        let wrong = chi_square(&counts, &softmax(&logits, 0.7)).stat;
        assert!(wrong > bound, "χ² against T = 0.7 is only {wrong:.1}");
    }

    #[test]
    fn frequencies_with_top_k_and_temperature_match_candidates() {
        let logits = [1.5, 0.2, -0.4, 0.9, 0.0, -2.0, 2.1, -1.0];
        let p = params(0.7, Some(5), Some(0.95));
        let mut probs = vec![0.0; logits.len()];
        for (id, q) in candidates(&logits, &p) {
            probs[id as usize] = q;
        }
        let mut rng = Rng::seeded(7);
        let mut counts = vec![0; logits.len()];
        for _ in 0..20_000 {
            counts[sample_next(&logits, &p, &mut rng) as usize] += 1;
        }
        for (id, &c) in counts.iter().enumerate() {
            assert!(probs[id] > 0.0 || c == 0, "token {id} drawn {c} times but filtered out");
        }
        let ChiSquare { stat, bound, .. } = chi_square(&counts, &probs);
        assert!(stat < bound, "χ² = {stat:.1} ≥ {bound:.1}: counts {counts:?}, probs {probs:?}");
    }

    #[test]
    fn validate_names_each_bad_value() {
        assert!(SamplingParams::default().validate().is_ok());
        assert!(params(-0.1, None, None).validate().unwrap_err().contains("temperature"));
        assert!(params(f32::NAN, None, None).validate().unwrap_err().contains("temperature"));
        assert!(params(1.0, Some(0), None).validate().unwrap_err().contains("top-k"));
        assert!(params(1.0, None, Some(0.0)).validate().unwrap_err().contains("top-p"));
        assert!(params(1.0, None, Some(1.5)).validate().unwrap_err().contains("top-p"));
        assert!(params(0.0, Some(1), Some(1.0)).validate().is_ok());
    }
}
