//! Inference without the tape: the GPT run on new positions only, keeping every layer's
//! keys and values for the positions seen so far, so each new token costs one pass of
//! matrix-vector products plus one attention row, not a forward over the whole text.
//!
//! This is the sampling hot path at batch 1. The [`KvCache`] owns every buffer a decoding
//! step needs (the keys and values for block_size positions, and the activations of the
//! new rows), so after [`Gpt::new_cache`] a step allocates nothing (a prefill's parallel
//! attention takes a scratch row pair per thread). Weights are read in place from the
//! tape: a linear layer is `out[o] = bias[o] + w[o, :] · x`, each weight row contiguous.
//!
//! One recipe serves any number of new tokens: they go through the blocks together as an
//! (n, C) matrix, in the shape of the training forward (`Block::forward` in `gpt.rs`, line
//! for line, without dropout), with the kernels of `tensor::kernels`. One token (n = 1)
//! takes the matrix-vector products; several (a prompt, or the window re-fed after it
//! slid) read every weight once for all rows (the row kernels for a small model and few
//! rows, giving the bits of one token at a time; else one GEMM), and attention row i is
//! causal over the cache up to its own position.
//!
//! Every path is deterministic for any thread count: the GEMM, the row kernels and the
//! matrix-vector products split their work into fixed pieces, and attention splits by
//! head (one token) or by row (several), each computed whole on one thread.

use tensor::kernels::{attend, gelu_in_place, layernorm, linear, PARALLEL_MATVEC};
use tensor::Tape;

use crate::gpt::{Block, LayerNorm, Linear};
use crate::Gpt;

/// Keys and values of every layer for the positions seen so far, for incremental decoding.
pub struct KvCache {
    /// Positions filled so far.
    len: usize,
    /// Capacity in positions (the model's block_size).
    capacity: usize,
    /// Keys, (n_layer, block_size, C): position p of layer l at `(l·block_size + p)·C`.
    k: Vec<f32>,
    /// Values, laid out as the keys.
    v: Vec<f32>,
    /// The activations of the positions being fed.
    rows: Rows,
    /// Attention scores of each head over the positions so far (n_head, block_size).
    scores: Vec<f32>,
    /// Their softmax, the attention weights (n_head, block_size).
    probs: Vec<f32>,
    /// The zero shift of layer norms in a model without biases (C).
    zeros: Vec<f32>,
    /// The last position's logits (vocab_size).
    logits: Vec<f32>,
}

/// The activations of the n positions being fed, row-major, one row per position; each
/// buffer is sized for one position by [`Gpt::new_cache`], grows to the largest n fed and
/// is then reused.
#[derive(Default)]
struct Rows {
    /// The residual stream (n, C).
    x: Vec<f32>,
    /// A layer norm's output (n, C).
    normed: Vec<f32>,
    /// q, k, v side by side (n, 3C).
    qkv: Vec<f32>,
    /// The attention output, heads side by side (n, C).
    att: Vec<f32>,
    /// The MLP's hidden layer (n, 4C).
    hidden: Vec<f32>,
    /// A residual branch's output (n, C).
    branch: Vec<f32>,
}

impl Rows {
    /// Sizes every buffer for n positions of width c.
    fn resize(&mut self, n: usize, c: usize) {
        self.x.resize(n * c, 0.0);
        self.normed.resize(n * c, 0.0);
        self.qkv.resize(n * 3 * c, 0.0);
        self.att.resize(n * c, 0.0);
        self.hidden.resize(n * 4 * c, 0.0);
        self.branch.resize(n * c, 0.0);
    }
}

impl KvCache {
    /// Positions held so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions the cache holds (the model's block_size).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (keeping the buffers), to start a new text or to re-feed a
    /// window that has slid past block_size.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The rows being fed: q, k, v side by side (n, 3C) and the residual stream (n, C).
    pub(crate) fn fed_rows(&self) -> (&[f32], &[f32]) {
        (&self.rows.qkv, &self.rows.x)
    }

    /// Layer `layer`'s keys for the first `positions` positions, (positions, C).
    pub(crate) fn keys(&self, layer: usize, positions: usize) -> &[f32] {
        let c = self.zeros.len();
        &self.k[layer * self.capacity * c..][..positions * c]
    }
}

impl Gpt {
    /// An empty cache for up to block_size positions.
    pub fn new_cache(&self) -> KvCache {
        let cfg = &self.config;
        let (c, t) = (cfg.n_embd, cfg.block_size);
        let mut rows = Rows::default();
        rows.resize(1, c);
        KvCache {
            len: 0,
            capacity: t,
            k: vec![0.0; cfg.n_layer * t * c],
            v: vec![0.0; cfg.n_layer * t * c],
            rows,
            scores: vec![0.0; cfg.n_head * t],
            probs: vec![0.0; cfg.n_head * t],
            zeros: vec![0.0; c],
            logits: vec![0.0; cfg.vocab_size],
        }
    }

    /// Inference without the tape: feeds `tokens` (one or more, continuing the cache) and
    /// returns the logits (vocab_size) of the last position. Panics past block_size.
    pub fn forward_cached(&self, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
        self.forward_cached_into(cache, tokens).to_vec()
    }

    /// As [`Gpt::forward_cached`], returning the logits in the cache's own buffer, so a
    /// decoding loop allocates nothing per token.
    pub fn forward_cached_into<'c>(&self, cache: &'c mut KvCache, tokens: &[u32]) -> &'c [f32] {
        let cfg = &self.config;
        assert!(!tokens.is_empty(), "Gpt::forward_cached: no tokens to feed");
        assert_eq!(cache.capacity, cfg.block_size, "Gpt::forward_cached: the cache belongs to another model");
        assert!(
            cache.len + tokens.len() <= cfg.block_size,
            "Gpt::forward_cached: {} cached positions + {} new tokens exceed block_size = {}; clear the cache and re-feed the last window",
            cache.len,
            tokens.len(),
            cfg.block_size
        );
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            panic!(
                "Gpt::forward_cached: token {token} is outside the vocabulary (vocab_size = {})",
                cfg.vocab_size
            );
        }
        if tokens.len() > 1 || 4 * cfg.n_embd * cfg.n_embd >= PARALLEL_MATVEC {
            // Several rows' products and the large matrix-vector products fork onto
            // rayon's pool: entering the pool once per call, not once per product, saves a
            // cross-thread hand-off each time, and `on_pool` keeps the other workers awake
            // between products.
            tensor::on_pool(|| self.forward_rows(cache, tokens, &mut |_, _| {}));
        } else {
            self.forward_rows(cache, tokens, &mut |_, _| {});
        }
        &cache.logits
    }

    /// Runs n tokens at positions `cache.len..cache.len + n` through every block as one
    /// (n, C) matrix, the recipe of [`Gpt::forward`] on new positions only: their keys and
    /// values go into the cache, the last position's logits into `cache.logits`.
    /// `after_block(l, cache)` runs after block l, while the cache's rows hold that
    /// block's q/k/v and output (what `inspect.rs` reads; sampling passes a no-op).
    pub(crate) fn forward_rows(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        after_block: &mut dyn FnMut(usize, &KvCache),
    ) {
        let (n, c) = (tokens.len(), self.config.n_embd);
        let layers = &self.layers;
        let pos0 = cache.len;
        cache.rows.resize(n, c);
        let (wte, wpe) = (self.tape.data(layers.wte), self.tape.data(layers.wpe));
        for (i, (x, &token)) in cache.rows.x.chunks_exact_mut(c).zip(tokens).enumerate() {
            let (t, p) = (&wte[token as usize * c..][..c], &wpe[(pos0 + i) * c..][..c]);
            x.iter_mut().zip(t.iter().zip(p)).for_each(|(x, (t, p))| *x = t + p);
            // (n, C)
        }
        for (l, block) in layers.h.iter().enumerate() {
            block.forward_cached(self, cache, l); // (n, C)
            after_block(l, cache);
        }
        cache.len += n;
        let last = (n - 1) * c..n * c;
        let rows = &mut cache.rows;
        let normed = &mut rows.normed[last.clone()];
        layers.ln_f.forward_cached(&self.tape, normed, &rows.x[last], &cache.zeros); // (1, C)
        linear(&mut cache.logits, normed, wte, None, 1); // (1, V), head tied to wte
    }
}

impl Block {
    /// x + attn(ln_1(x)), then + mlp(ln_2(x)), for the n positions in `cache.rows`
    /// (following the `cache.len` cached ones), whose keys and values go into layer
    /// `layer`'s part of the cache. x: (n, C) → (n, C). [`Block::forward`] without dropout.
    fn forward_cached(&self, gpt: &Gpt, cache: &mut KvCache, layer: usize) {
        let (tape, n_head) = (&gpt.tape, gpt.config.n_head);
        let KvCache { len, capacity, k, v, rows, scores, probs, zeros, .. } = cache;
        let Rows { x, normed, qkv, att, hidden, branch } = rows;
        let c = zeros.len();
        let n = x.len() / c;
        self.ln_1.forward_cached(tape, normed, x, zeros); // (n, C)
        self.attn.c_attn.forward_cached(tape, qkv, normed, n); // (n, 3C)
        let layer_kv = layer * *capacity * c;
        for (i, qkv) in qkv.chunks_exact(3 * c).enumerate() {
            let at = layer_kv + (*len + i) * c;
            k[at..][..c].copy_from_slice(&qkv[c..2 * c]);
            v[at..][..c].copy_from_slice(&qkv[2 * c..]);
        }
        let seen = layer_kv..layer_kv + (*len + n) * c;
        let kv = (&k[seen.clone()], &v[seen]); // (len + n, C) each
        attend(att, qkv, kv, (n, n_head), (scores, probs)); // (n, C)
        self.attn.c_proj.forward_cached(tape, branch, att, n); // (n, C)
        x.iter_mut().zip(branch.iter()).for_each(|(x, y)| *x += y); // (n, C)
        self.ln_2.forward_cached(tape, normed, x, zeros); // (n, C)
        self.mlp.c_fc.forward_cached(tape, hidden, normed, n); // (n, 4C)
        gelu_in_place(hidden); // (n, 4C)
        self.mlp.c_proj.forward_cached(tape, branch, hidden, n); // (n, C)
        x.iter_mut().zip(branch.iter()).for_each(|(x, y)| *x += y); // (n, C)
    }
}

impl Linear {
    /// n rows through the layer without the tape: out (n, oc) = x (n, c) · weightᵀ + bias.
    fn forward_cached(&self, tape: &Tape, out: &mut [f32], x: &[f32], n: usize) {
        let bias = self.bias.map(|b| tape.data(b));
        linear(out, x, tape.data(self.weight), bias, n);
    }
}

impl LayerNorm {
    /// Each row of x (n, C) normalised without the tape; `zeros` (C) stands in for the
    /// shift of a model without biases.
    fn forward_cached(&self, tape: &Tape, out: &mut [f32], x: &[f32], zeros: &[f32]) {
        let shift = self.bias.map_or(zeros, |b| tape.data(b));
        layernorm(out, x, (tape.data(self.weight), shift));
    }
}

#[cfg(test)]
mod tests {
    use tensor::Rng;

    use crate::sampling::{generate, SamplingParams};
    use crate::{Gpt, GptConfig};

    /// A model with large random weights (see `testing::randomise`).
    fn random_model(config: GptConfig, seed: u64) -> Gpt {
        let mut gpt = Gpt::new(config, seed);
        crate::testing::randomise(&mut gpt, seed + 1);
        gpt
    }

    fn config(n_embd: usize, bias: bool) -> GptConfig {
        GptConfig { vocab_size: 37, block_size: 24, n_layer: 2, n_head: 4, n_embd, dropout: 0.0, bias }
    }

    #[test]
    fn prefill_gives_the_logits_of_feeding_tokens_one_at_a_time() {
        for bias in [true, false] {
            let gpt = random_model(config(32, bias), 3);
            let tokens: Vec<u32> = (0..24).map(|i| (i * 11 % 37) as u32).collect();
            let (mut one, mut batched) = (gpt.new_cache(), gpt.new_cache());
            // A prompt at once, a step, then a chunk continuing a non-empty cache.
            for range in [0..7, 7..8, 8..20, 20..24] {
                let mut want = Vec::new();
                for &token in &tokens[range.clone()] {
                    want = gpt.forward_cached(&mut one, &[token]);
                }
                let got = gpt.forward_cached(&mut batched, &tokens[range.clone()]);
                let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                assert!(
                    diff <= 1e-5 * scale,
                    "bias {bias}, tokens {range:?}: max |diff| {diff:e}, logits up to {scale}"
                );
                assert_eq!(batched.len(), one.len());
            }
            // The caches agree too: the next single step gives the same logits from both.
            batched.clear();
            one.clear();
            gpt.forward_cached(&mut batched, &tokens[..23]);
            tokens[..23].iter().for_each(|&t| drop(gpt.forward_cached(&mut one, &[t])));
            let (a, b) = (gpt.forward_cached(&mut batched, &[5]), gpt.forward_cached(&mut one, &[5]));
            let diff = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff <= 1e-4, "bias {bias}: a step after a prefill differs by {diff:e}");
        }
    }

    #[test]
    fn prefill_of_a_small_model_gives_the_bits_of_one_token_at_a_time() {
        // Small enough that the prefill's linear layers take the row kernels.
        let gpt = random_model(config(32, true), 4);
        let tokens: Vec<u32> = (0..20).map(|i| (i * 5 % 37) as u32).collect();
        let (mut one, mut batched) = (gpt.new_cache(), gpt.new_cache());
        let mut want = Vec::new();
        for &token in &tokens {
            want = gpt.forward_cached(&mut one, &[token]);
        }
        let got = gpt.forward_cached(&mut batched, &tokens);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "prefill and single steps differ");
    }

    #[test]
    fn cached_path_is_bit_identical_with_one_and_two_threads() {
        // Wide enough that the matrix-vector products and the prefill's GEMMs run in parallel,
        // and long enough that a step's attention splits its heads across threads.
        let gpt = random_model(GptConfig { block_size: 100, ..config(192, true) }, 5);
        const { assert!(100 * 192 >= tensor::kernels::PARALLEL_ATTEND) };
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
            pool.install(|| {
                let mut cache = gpt.new_cache();
                let prompt: Vec<u32> = (0..20).map(|i| (i * 7 % 37) as u32).collect();
                let mut logits = gpt.forward_cached(&mut cache, &prompt);
                // Single steps up to the last position: from position 86 on, a step's
                // attention heads run on different threads.
                for t in 0..80 {
                    logits.extend(gpt.forward_cached_into(&mut cache, &[t % 37]));
                }
                // Generation past block_size, so the window is rebuilt by a prefill.
                let params = SamplingParams { temperature: 1.0, top_k: None, top_p: None };
                let text = generate(&gpt, &prompt[..3], 130, &params, &mut Rng::seeded(9), &mut |_| {});
                (logits.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), text)
            })
        };
        let (one, two) = (run(1), run(2));
        assert!(one.0 == two.0, "cached logits differ between 1 and 2 threads");
        assert_eq!(one.1, two.1, "generated text differs between 1 and 2 threads");
    }
}
