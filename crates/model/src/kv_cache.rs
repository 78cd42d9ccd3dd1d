//! Inference without the tape: the GPT run on new positions only, keeping every layer's
//! keys and values for the positions seen so far, so each new token costs one pass of
//! matrix-vector products plus one attention row, not a forward over the whole text.
//!
//! This is the sampling hot path at batch 1. The [`KvCache`] owns every buffer a decoding
//! step needs (the keys and values for block_size positions, and scratch rows), so after
//! [`Gpt::new_cache`] a step allocates nothing (a prefill's parallel attention takes a
//! scratch row pair per thread). Weights are read in place from the tape: a linear layer
//! is `out[o] = bias[o] + w[o, :] · x`, each weight row contiguous.
//!
//! Several tokens fed at once (a prompt, or the window re-fed after it slid) go through
//! the blocks together as a small matrix ("prefill"): each linear layer reads every weight
//! once for all rows (with the row kernels of `rows.rs` for a small model and few rows,
//! giving the bits of one token at a time; else one GEMM), and attention row i is causal
//! over the cache up to its own position. A single token takes the matrix-vector path in
//! `rows.rs`.
//!
//! Every path is deterministic for any thread count: the GEMM, the row kernels and the
//! matrix-vector products split their work into fixed pieces, and attention splits by
//! head (a decoding step) or by row (a prefill), each computed whole on one thread.

use rayon::prelude::*;
use tensor::gemm::{gemm, Mat};

use crate::gpt::{Block, LayerNorm, Linear};
use crate::rows::{
    attend, attend_heads, gelu_in_place, layernorm, matmul_rows, matvec, FEW_ROWS, PARALLEL_MATVEC,
};
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
    /// The residual stream of the current position (C).
    x: Vec<f32>,
    /// A layer norm's output (C).
    normed: Vec<f32>,
    /// q, k, v of the current position (3C).
    qkv: Vec<f32>,
    /// The attention output, heads side by side (C).
    att: Vec<f32>,
    /// Attention scores of each head over the positions so far (n_head, block_size).
    scores: Vec<f32>,
    /// Their softmax, the attention weights (n_head, block_size).
    probs: Vec<f32>,
    /// The MLP's hidden layer (4C).
    hidden: Vec<f32>,
    /// The zero shift of layer norms in a model without biases (C).
    zeros: Vec<f32>,
    /// A residual branch's output (C).
    branch: Vec<f32>,
    /// The last position's logits (vocab_size).
    logits: Vec<f32>,
    /// Activations of several positions fed at once; grown on first use.
    rows: Rows,
}

/// The prefill's activations for n positions, row-major, one row per position; each
/// buffer grows to the largest n seen and is then reused.
#[derive(Default)]
struct Rows {
    /// The residual stream (n, C).
    x: Vec<f32>,
    /// A layer norm's output (n, C).
    normed: Vec<f32>,
    /// q, k, v side by side (n, 3C).
    qkv: Vec<f32>,
    /// The attention output (n, C).
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
}

/// Prefill rows per parallel attention task.
const ATTEND_ROWS: usize = 8;

impl Gpt {
    /// An empty cache for up to block_size positions.
    pub fn new_cache(&self) -> KvCache {
        let cfg = &self.config;
        let (c, t) = (cfg.n_embd, cfg.block_size);
        KvCache {
            len: 0,
            capacity: t,
            k: vec![0.0; cfg.n_layer * t * c],
            v: vec![0.0; cfg.n_layer * t * c],
            x: vec![0.0; c],
            normed: vec![0.0; c],
            qkv: vec![0.0; 3 * c],
            att: vec![0.0; c],
            scores: vec![0.0; cfg.n_head * t],
            probs: vec![0.0; cfg.n_head * t],
            hidden: vec![0.0; 4 * c],
            zeros: vec![0.0; c],
            branch: vec![0.0; c],
            logits: vec![0.0; cfg.vocab_size],
            rows: Rows::default(),
        }
    }

    /// Inference without the tape: feeds `tokens` (one or more, continuing the cache) and
    /// returns the logits (vocab_size) of the last position. Panics past block_size.
    pub fn forward_cached(&self, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
        self.forward_cached_into(cache, tokens).to_vec()
    }

    /// As [`Gpt::forward_cached`], returning the logits in the cache's own buffer, so a
    /// decoding loop allocates nothing per token. Several tokens are fed as one prefill.
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
        let mut feed = || {
            if let [token] = tokens {
                self.step(cache, *token);
            } else {
                self.prefill(cache, tokens);
            }
            let layers = &self.layers;
            layernorm(&mut cache.normed, &cache.x, self.norm_params(&layers.ln_f, &cache.zeros));
            matvec(&mut cache.logits, self.tape.data(layers.wte), None, &cache.normed);
        };
        if tokens.len() > 1 || 4 * cfg.n_embd * cfg.n_embd >= PARALLEL_MATVEC {
            // The prefill's products and the large matrix-vector products fork onto
            // rayon's pool: entering the pool once per call, not once per product, saves a
            // cross-thread hand-off each time, and `on_pool` keeps the other workers awake
            // between products.
            tensor::on_pool(feed);
        } else {
            feed();
        }
        &cache.logits
    }

    /// Runs one token at position `cache.len` through every block, leaving the final
    /// residual stream in `cache.x` and its keys and values in the cache.
    fn step(&self, cache: &mut KvCache, token: u32) {
        let cfg = &self.config;
        let (c, block) = (cfg.n_embd, cfg.block_size);
        let pos = cache.len;
        let wte = &self.tape.data(self.layers.wte)[token as usize * c..][..c];
        let wpe = &self.tape.data(self.layers.wpe)[pos * c..][..c];
        cache.x.iter_mut().zip(wte.iter().zip(wpe)).for_each(|(x, (t, p))| *x = t + p);

        for (l, layer) in self.layers.h.iter().enumerate() {
            // x = x + c_proj(attention(c_attn(ln_1(x))))
            layernorm(&mut cache.normed, &cache.x, self.norm_params(&layer.ln_1, &cache.zeros));
            self.linear(&mut cache.qkv, &layer.attn.c_attn, &cache.normed); // q, k, v side by side
            let layer_kv = l * block * c;
            cache.k[layer_kv + pos * c..][..c].copy_from_slice(&cache.qkv[c..2 * c]);
            cache.v[layer_kv + pos * c..][..c].copy_from_slice(&cache.qkv[2 * c..]);
            let keys = &cache.k[layer_kv..][..(pos + 1) * c];
            let values = &cache.v[layer_kv..][..(pos + 1) * c];
            let scratch = (&mut cache.scores[..], &mut cache.probs[..], block);
            attend_heads(&mut cache.att, &cache.qkv[..c], (keys, values), cfg.n_head, scratch);
            self.linear(&mut cache.branch, &layer.attn.c_proj, &cache.att);
            cache.x.iter_mut().zip(&cache.branch).for_each(|(x, y)| *x += y);

            // x = x + mlp.c_proj(gelu(mlp.c_fc(ln_2(x))))
            layernorm(&mut cache.normed, &cache.x, self.norm_params(&layer.ln_2, &cache.zeros));
            self.linear(&mut cache.hidden, &layer.mlp.c_fc, &cache.normed);
            gelu_in_place(&mut cache.hidden);
            self.linear(&mut cache.branch, &layer.mlp.c_proj, &cache.hidden);
            cache.x.iter_mut().zip(&cache.branch).for_each(|(x, y)| *x += y);
        }
        cache.len += 1;
    }

    /// Runs n ≥ 2 tokens at positions `cache.len..cache.len + n` through every block as
    /// one (n, C) matrix, leaving the last position's residual stream in `cache.x` and all
    /// n positions' keys and values in the cache.
    fn prefill(&self, cache: &mut KvCache, tokens: &[u32]) {
        let cfg = &self.config;
        let (n, c, block) = (tokens.len(), cfg.n_embd, cfg.block_size);
        let pos0 = cache.len;
        cache.rows.resize(n, c);
        let wte = self.tape.data(self.layers.wte);
        let wpe = self.tape.data(self.layers.wpe);
        for (i, (x, &token)) in cache.rows.x.chunks_exact_mut(c).zip(tokens).enumerate() {
            let (t, p) = (&wte[token as usize * c..][..c], &wpe[(pos0 + i) * c..][..c]);
            x.iter_mut().zip(t.iter().zip(p)).for_each(|(x, (t, p))| *x = t + p);
        }

        for (l, layer) in self.layers.h.iter().enumerate() {
            let layer_kv = l * block * c;
            self.prefill_attention(cache, layer, layer_kv, n);
            self.prefill_mlp(cache, layer, n);
        }
        cache.x.copy_from_slice(&cache.rows.x[(n - 1) * c..]);
        cache.len += n;
    }

    /// x = x + c_proj(attention(c_attn(ln_1(x)))) for the prefill's n rows, writing their
    /// keys and values into the layer's slice of the cache (starting at `layer_kv`).
    fn prefill_attention(&self, cache: &mut KvCache, layer: &Block, layer_kv: usize, n: usize) {
        let cfg = &self.config;
        let c = cfg.n_embd;
        let pos0 = cache.len;
        let rows = &mut cache.rows;
        let norm = self.norm_params(&layer.ln_1, &cache.zeros);
        for (out, x) in rows.normed.chunks_exact_mut(c).zip(rows.x.chunks_exact(c)) {
            layernorm(out, x, norm);
        }
        self.linear_rows(&mut rows.qkv, &layer.attn.c_attn, &rows.normed, n); // (n, 3C)
        for (i, qkv) in rows.qkv.chunks_exact(3 * c).enumerate() {
            let at = layer_kv + (pos0 + i) * c;
            cache.k[at..][..c].copy_from_slice(&qkv[c..2 * c]);
            cache.v[at..][..c].copy_from_slice(&qkv[2 * c..]);
        }
        // Row i sees the cached positions and the new ones up to its own, pos0 + i. The rows
        // are independent: they go through the pool in blocks, each with its own scratch.
        let (k, v) = (&cache.k[layer_kv..], &cache.v[layer_kv..]);
        let capacity = cache.capacity;
        let rows_attend =
            |(scores, probs): &mut (Vec<f32>, Vec<f32>), i0: usize, att: &mut [f32], qkv: &[f32]| {
                for (i, (out, qkv)) in att.chunks_exact_mut(c).zip(qkv.chunks_exact(3 * c)).enumerate() {
                    let seen = (pos0 + i0 + i + 1) * c;
                    attend(out, &qkv[..c], &k[..seen], &v[..seen], cfg.n_head, (scores, probs));
                }
            };
        rows.att
            .par_chunks_mut(ATTEND_ROWS * c)
            .zip(rows.qkv.par_chunks(ATTEND_ROWS * 3 * c))
            .enumerate()
            .for_each_init(
                || (vec![0.0; capacity], vec![0.0; capacity]),
                |scratch, (b, (att, qkv))| rows_attend(scratch, b * ATTEND_ROWS, att, qkv),
            );
        self.linear_rows(&mut rows.branch, &layer.attn.c_proj, &rows.att, n); // (n, C)
        rows.x.iter_mut().zip(&rows.branch).for_each(|(x, y)| *x += y);
    }

    /// x = x + mlp.c_proj(gelu(mlp.c_fc(ln_2(x)))) for the prefill's n rows.
    fn prefill_mlp(&self, cache: &mut KvCache, layer: &Block, n: usize) {
        let c = self.config.n_embd;
        let rows = &mut cache.rows;
        let norm = self.norm_params(&layer.ln_2, &cache.zeros);
        for (out, x) in rows.normed.chunks_exact_mut(c).zip(rows.x.chunks_exact(c)) {
            layernorm(out, x, norm);
        }
        self.linear_rows(&mut rows.hidden, &layer.mlp.c_fc, &rows.normed, n); // (n, 4C)
        gelu_in_place(&mut rows.hidden);
        self.linear_rows(&mut rows.branch, &layer.mlp.c_proj, &rows.hidden, n); // (n, C)
        rows.x.iter_mut().zip(&rows.branch).for_each(|(x, y)| *x += y);
    }

    /// One position through a linear layer: out (oc) = w · x + bias.
    fn linear(&self, out: &mut [f32], layer: &Linear, x: &[f32]) {
        let bias = layer.bias.map(|b| self.tape.data(b));
        matvec(out, self.tape.data(layer.weight), bias, x);
    }

    /// n positions through a linear layer: out (n, oc) = x (n, c) · wᵀ + bias. A few rows
    /// through a small layer (oc·c below the size where a matrix-vector product goes
    /// parallel) take the row kernels (no packing, and the bits of one position at a
    /// time); otherwise one GEMM, as the tape's
    /// `matmul_forward` computes it, with the bias rows copied on this thread.
    fn linear_rows(&self, out: &mut [f32], layer: &Linear, x: &[f32], n: usize) {
        let (c, oc) = (x.len() / n, out.len() / n);
        if n <= FEW_ROWS && oc * c < PARALLEL_MATVEC {
            let bias = layer.bias.map(|b| self.tape.data(b));
            matmul_rows(out, self.tape.data(layer.weight), bias, x, n);
            return;
        }
        if let Some(bias) = layer.bias {
            let bias = self.tape.data(bias);
            out.chunks_exact_mut(oc).for_each(|row| row.copy_from_slice(bias));
        }
        let w = Mat::transposed(self.tape.data(layer.weight), c);
        gemm(n, c, oc, Mat::rows(x, c), w, out, layer.bias.is_some());
    }

    /// A layer norm's gain and shift (`zeros` when the model has no biases).
    fn norm_params<'a>(&'a self, norm: &LayerNorm, zeros: &'a [f32]) -> (&'a [f32], &'a [f32]) {
        (self.tape.data(norm.weight), norm.bias.map_or(zeros, |b| self.tape.data(b)))
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
        const { assert!(100 * 192 >= crate::rows::PARALLEL_ATTEND) };
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
