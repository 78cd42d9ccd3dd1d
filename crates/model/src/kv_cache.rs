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
//! A cache may hold several texts (a batch, [`Gpt::new_batch_cache`]): one step then feeds
//! the next token of each as one (N, C) matrix, and every linear layer reads each weight
//! once for all N rows ([`linear_rows`]), computing each row with the bits of the
//! matrix-vector product it would get alone, so each text's logits are those of decoding
//! it by itself. Its prompt, and a window re-fed after it slid, go through one text at a time.
//!
//! The weights the products stream (every linear layer's and the tied head) are read in
//! `f32` from the tape, or from bfloat16 copies ([`Gpt::set_sampling_dtype`]) at half the
//! bytes; the recipe is the same, it asks [`Gpt::weights`] for each matrix.
//!
//! Every path is deterministic for any thread count: the GEMM, the row kernels and the
//! matrix-vector products split their work into fixed pieces, and attention splits by
//! head (one token) or by row (several), each computed whole on one thread.

use std::fmt;

use tensor::kernels::{
    attend, gelu_in_place, layernorm, linear, linear_rows, qk_norm_in_place, relu2_in_place, rmsnorm,
    rope_angles, rotate_qk, to_bf16, Weights, PARALLEL_MATVEC,
};
use tensor::{Tape, TensorId};

use crate::gpt::{Block, LayerNorm, Linear};
use crate::{Activation, Gpt, Norm, Position};

/// The number format of the weights the KV-cache path streams.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Dtype {
    /// The trained `f32` weights, read in place.
    #[default]
    F32,
    /// bfloat16 copies, rounded to nearest even: half the bytes, each weight within 2⁻⁸
    /// of itself (relative); products still accumulate in `f32`.
    Bf16,
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
        })
    }
}

/// Keys and values of every layer for the positions seen so far, for incremental decoding,
/// of one text or of a batch of texts decoded together.
pub struct KvCache {
    /// Positions filled so far, per text.
    lens: Vec<usize>,
    /// Capacity in positions (the model's block_size).
    capacity: usize,
    /// Keys, (texts, n_layer, block_size, C): position p of layer l of text s at
    /// `((s·n_layer + l)·block_size + p)·C`.
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
    /// One head's values (hs), scratch for QK-norm.
    head: Vec<f32>,
    /// cos and sin of one position's rotary angles (hs/2 each).
    angles: (Vec<f32>, Vec<f32>),
    /// Each text's logits for its next token (texts, vocab_size).
    logits: Vec<f32>,
}

/// What the rows being fed are: `new` positions of one text, or one step of every text
/// of the batch (row s is text s's next position).
#[derive(Copy, Clone, Debug)]
pub(crate) enum Feed {
    Positions { text: usize },
    Step,
}

impl Feed {
    /// Row i's text and position.
    fn at(self, i: usize, lens: &[usize]) -> (usize, usize) {
        match self {
            Feed::Positions { text } => (text, lens[text] + i),
            Feed::Step => (i, lens[i]),
        }
    }
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
    /// Positions held so far (of the first text).
    pub fn len(&self) -> usize {
        self.lens[0]
    }

    pub fn is_empty(&self) -> bool {
        self.lens[0] == 0
    }

    /// The most positions the cache holds (the model's block_size).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many texts the cache holds.
    pub fn texts(&self) -> usize {
        self.lens.len()
    }

    /// Forgets every position of every text (keeping the buffers), to start again.
    pub fn clear(&mut self) {
        self.lens.fill(0);
    }

    /// Forgets every position of text `text`, to re-feed a window that has slid past
    /// block_size.
    pub fn clear_text(&mut self, text: usize) {
        self.lens[text] = 0;
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
    /// Keeps the weights the KV-cache path streams in `dtype`: bfloat16 copies are made
    /// now (of the current weights: call again after changing them), `f32` drops them.
    pub fn set_sampling_dtype(&mut self, dtype: Dtype) {
        self.half.clear();
        if dtype == Dtype::Bf16 {
            let layers = &self.layers;
            let blocks = layers.h.iter();
            let linears = blocks.flat_map(|b| [&b.attn.c_attn, &b.attn.c_proj, &b.mlp.c_fc, &b.mlp.c_proj]);
            for id in linears.map(|l| l.weight).chain([layers.head]) {
                self.half.insert(id, to_bf16(self.tape.data(id)));
            }
        }
    }

    /// The dtype the KV-cache path reads its weights in.
    pub fn sampling_dtype(&self) -> Dtype {
        if self.half.is_empty() {
            Dtype::F32
        } else {
            Dtype::Bf16
        }
    }

    /// Weight matrix `id` as the KV-cache path reads it (its bfloat16 copy, if any).
    fn weights(&self, id: TensorId) -> Weights<'_> {
        match self.half.get(&id) {
            Some(half) => Weights::Bf16(half),
            None => Weights::F32(self.tape.data(id)),
        }
    }

    /// An empty cache for up to block_size positions of one text.
    pub fn new_cache(&self) -> KvCache {
        self.new_batch_cache(1)
    }

    /// An empty cache for up to block_size positions of each of `texts` texts, decoded
    /// together. Panics when `texts` is 0.
    pub fn new_batch_cache(&self, texts: usize) -> KvCache {
        assert!(texts > 0, "Gpt::new_batch_cache: a cache holds at least one text");
        let cfg = &self.config;
        let (c, t) = (cfg.n_embd, cfg.block_size);
        let mut rows = Rows::default();
        rows.resize(1, c);
        KvCache {
            lens: vec![0; texts],
            capacity: t,
            k: vec![0.0; texts * cfg.n_layer * t * c],
            v: vec![0.0; texts * cfg.n_layer * t * c],
            rows,
            scores: vec![0.0; cfg.n_head * t],
            probs: vec![0.0; cfg.n_head * t],
            zeros: vec![0.0; c],
            head: vec![0.0; cfg.head_size()],
            angles: (vec![0.0; cfg.head_size() / 2], vec![0.0; cfg.head_size() / 2]),
            logits: vec![0.0; texts * cfg.vocab_size],
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
        self.forward_text_into(cache, 0, tokens)
    }

    /// As [`Gpt::forward_cached_into`], for text `text` of a batch cache: feeds its
    /// `tokens` and returns its logits (vocab_size) for the next token.
    pub fn forward_text_into<'c>(&self, cache: &'c mut KvCache, text: usize, tokens: &[u32]) -> &'c [f32] {
        assert!(text < cache.texts(), "Gpt::forward_cached: text {text} of a cache of {}", cache.texts());
        self.check_feed(cache, tokens, cache.lens[text]);
        self.feed(cache, tokens, Feed::Positions { text });
        let v = self.config.vocab_size;
        &cache.logits[text * v..][..v]
    }

    /// One step of every text in a batch cache: `tokens[s]` continues text s. Returns the
    /// logits (texts, vocab_size); each text's row has the bits feeding it alone would give.
    pub fn forward_step_into<'c>(&self, cache: &'c mut KvCache, tokens: &[u32]) -> &'c [f32] {
        assert_eq!(tokens.len(), cache.texts(), "Gpt::forward_step: one token per text of the cache");
        let longest = cache.lens.iter().copied().max().unwrap_or(0);
        self.check_feed(cache, &tokens[..1], longest);
        self.feed(cache, tokens, Feed::Step);
        &cache.logits
    }

    /// Panics unless `tokens` (fed after `len` cached positions) fit the cache and the
    /// vocabulary.
    fn check_feed(&self, cache: &KvCache, tokens: &[u32], len: usize) {
        let cfg = &self.config;
        assert!(!tokens.is_empty(), "Gpt::forward_cached: no tokens to feed");
        assert_eq!(cache.capacity, cfg.block_size, "Gpt::forward_cached: the cache belongs to another model");
        assert!(
            len + tokens.len() <= cfg.block_size,
            "Gpt::forward_cached: {len} cached positions + {} new tokens exceed block_size = {}; clear the cache and re-feed the last window",
            tokens.len(),
            cfg.block_size
        );
        if let Some(&token) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            panic!(
                "Gpt::forward_cached: token {token} is outside the vocabulary (vocab_size = {})",
                cfg.vocab_size
            );
        }
    }

    /// Runs the rows on the pool when they fork (several rows, or large products).
    fn feed(&self, cache: &mut KvCache, tokens: &[u32], feed: Feed) {
        if tokens.len() > 1 || 4 * self.config.n_embd * self.config.n_embd >= PARALLEL_MATVEC {
            // Several rows' products and the large matrix-vector products fork onto
            // rayon's pool: entering the pool once per call, not once per product, saves a
            // cross-thread hand-off each time, and `on_pool` keeps the other workers awake
            // between products.
            tensor::on_pool(|| self.forward_rows(cache, tokens, feed, &mut |_, _| {}));
        } else {
            self.forward_rows(cache, tokens, feed, &mut |_, _| {});
        }
    }

    /// The first block's input for `token` at position `pos`: its embedding, plus the
    /// position's row of the table with learned positions. x: (C).
    pub(crate) fn embed(&self, x: &mut [f32], token: u32, pos: usize) {
        let c = x.len();
        let t = &self.tape.data(self.layers.wte)[token as usize * c..][..c];
        match self.layers.wpe {
            Some(wpe) => {
                let p = &self.tape.data(wpe)[pos * c..][..c];
                x.iter_mut().zip(t.iter().zip(p)).for_each(|(x, (t, p))| *x = t + p);
            }
            None => x.copy_from_slice(t),
        }
    }

    /// Runs n tokens through every block as one (n, C) matrix, the recipe of
    /// [`Gpt::forward`] on new positions only: their keys and values go into the cache,
    /// the logits of each text's last new position into `cache.logits`.
    /// `after_block(l, cache)` runs after block l, while the cache's rows hold that
    /// block's q/k/v and output (what `inspect.rs` reads; sampling passes a no-op).
    pub(crate) fn forward_rows(
        &self,
        cache: &mut KvCache,
        tokens: &[u32],
        feed: Feed,
        after_block: &mut dyn FnMut(usize, &KvCache),
    ) {
        let (n, c, v) = (tokens.len(), self.config.n_embd, self.config.vocab_size);
        let layers = &self.layers;
        cache.rows.resize(n, c);
        for (i, (x, &token)) in cache.rows.x.chunks_exact_mut(c).zip(tokens).enumerate() {
            let (_, pos) = feed.at(i, &cache.lens);
            self.embed(x, token, pos); // (n, C)
        }
        for (l, block) in layers.h.iter().enumerate() {
            block.forward_cached(self, cache, l, feed); // (n, C)
            after_block(l, cache);
        }
        let rows = &mut cache.rows;
        let head = self.weights(layers.head); // wte when tied
        match feed {
            Feed::Positions { text } => {
                cache.lens[text] += n;
                let last = (n - 1) * c..n * c;
                let normed = &mut rows.normed[last.clone()];
                layers.ln_f.forward_cached(&self.tape, normed, &rows.x[last], &cache.zeros); // (1, C)
                linear(&mut cache.logits[text * v..][..v], normed, head, None, 1);
                // (1, V)
            }
            Feed::Step => {
                cache.lens.iter_mut().for_each(|len| *len += 1);
                layers.ln_f.forward_cached(&self.tape, &mut rows.normed, &rows.x, &cache.zeros); // (n, C)
                linear_rows(&mut cache.logits, &rows.normed, head, None, n); // (n, V)
            }
        }
    }
}

impl Block {
    /// x + attn(ln_1(x)), then + mlp(ln_2(x)), for the n rows in `cache.rows` (each after
    /// its text's cached positions), whose keys and values go into layer `layer`'s part of
    /// the cache. x: (n, C) → (n, C). [`Block::forward`] without dropout.
    fn forward_cached(&self, gpt: &Gpt, cache: &mut KvCache, layer: usize, feed: Feed) {
        let (n_head, n_layer, arch) = (gpt.config.n_head, gpt.config.n_layer, gpt.config.arch);
        let KvCache { lens, capacity, k, v, rows, scores, probs, zeros, head, angles, .. } = cache;
        let Rows { x, normed, qkv, att, hidden, branch } = rows;
        let c = zeros.len();
        let n = x.len() / c;
        // Text s's keys (or values) of this layer start here.
        let layer_kv = |s: usize| (s * n_layer + layer) * *capacity * c;
        self.ln_1.forward_cached(&gpt.tape, normed, x, zeros); // (n, C)
        self.attn.c_attn.forward_cached(gpt, qkv, normed, feed); // (n, 3C)
        if arch.qk_norm {
            qk_norm_in_place(qkv, n_head, head); // (n, 3C)
        }
        if arch.position == Position::Rope {
            for (i, row) in qkv.chunks_exact_mut(3 * c).enumerate() {
                let (cos, sin) = (&mut angles.0, &mut angles.1);
                rope_angles(feed.at(i, lens).1, cos, sin);
                rotate_qk(row, n_head, cos, sin, false); // (1, 3C)
            }
        }
        for (i, qkv) in qkv.chunks_exact(3 * c).enumerate() {
            let (s, pos) = feed.at(i, lens);
            let at = layer_kv(s) + pos * c;
            k[at..][..c].copy_from_slice(&qkv[c..2 * c]);
            v[at..][..c].copy_from_slice(&qkv[2 * c..]);
        }
        match feed {
            Feed::Positions { text } => {
                let seen = layer_kv(text)..layer_kv(text) + (lens[text] + n) * c;
                let kv = (&k[seen.clone()], &v[seen]); // (len + n, C) each
                attend(att, qkv, kv, (n, n_head), (scores, probs)); // (n, C)
            }
            Feed::Step => {
                // Each text's row over its own cache, as it would be attended alone.
                for (s, (att, qkv)) in att.chunks_exact_mut(c).zip(qkv.chunks_exact(3 * c)).enumerate() {
                    let seen = layer_kv(s)..layer_kv(s) + (lens[s] + 1) * c;
                    let kv = (&k[seen.clone()], &v[seen]); // (len + 1, C) each
                    attend(att, qkv, kv, (1, n_head), (&mut scores[..], &mut probs[..]));
                    // (1, C)
                }
            }
        }
        self.attn.c_proj.forward_cached(gpt, branch, att, feed); // (n, C)
        x.iter_mut().zip(branch.iter()).for_each(|(x, y)| *x += y); // (n, C)
        self.ln_2.forward_cached(&gpt.tape, normed, x, zeros); // (n, C)
        self.mlp.c_fc.forward_cached(gpt, hidden, normed, feed); // (n, 4C)
        match arch.activation {
            Activation::Gelu => gelu_in_place(hidden),   // (n, 4C)
            Activation::Relu2 => relu2_in_place(hidden), // (n, 4C)
        }
        self.mlp.c_proj.forward_cached(gpt, branch, hidden, feed); // (n, C)
        x.iter_mut().zip(branch.iter()).for_each(|(x, y)| *x += y); // (n, C)
    }
}

impl Linear {
    /// n rows through the layer without the tape: out (n, oc) = x (n, c) · weightᵀ + bias.
    /// A batch step's rows each get the bits of a matrix-vector product of their own.
    fn forward_cached(&self, gpt: &Gpt, out: &mut [f32], x: &[f32], feed: Feed) {
        let n = x.len() / gpt.tape.shape(self.weight)[1];
        let bias = self.bias.map(|b| gpt.tape.data(b));
        let weights = gpt.weights(self.weight);
        match feed {
            Feed::Positions { .. } => linear(out, x, weights, bias, n),
            Feed::Step => linear_rows(out, x, weights, bias, n),
        }
    }
}

impl LayerNorm {
    /// Each row of x (n, C) normalised without the tape; `zeros` (C) stands in for the
    /// shift of a layer norm in a model without biases.
    fn forward_cached(&self, tape: &Tape, out: &mut [f32], x: &[f32], zeros: &[f32]) {
        match self.kind {
            Norm::LayerNorm => {
                let shift = self.bias.map_or(zeros, |b| tape.data(b));
                layernorm(out, x, (tape.data(self.weight), shift));
            }
            Norm::RmsNorm => rmsnorm(out, x, tape.data(self.weight)),
        }
    }
}

#[cfg(test)]
mod tests {
    use tensor::Rng;

    use crate::sampling::{generate, generate_batch, sample_streams, SamplingParams};
    use crate::{Dtype, Gpt, GptConfig};

    /// A model with large random weights (see `testing::randomise`).
    fn random_model(config: GptConfig, seed: u64) -> Gpt {
        let mut gpt = Gpt::new(config, seed);
        crate::testing::randomise(&mut gpt, seed + 1);
        gpt
    }

    fn config(n_embd: usize, bias: bool) -> GptConfig {
        GptConfig {
            vocab_size: 37,
            block_size: 24,
            n_layer: 2,
            n_head: 4,
            n_embd,
            dropout: 0.0,
            bias,
            arch: crate::Arch::GPT2,
        }
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

    #[test]
    fn batched_samples_equal_the_samples_generated_one_after_another() {
        // Wide enough that the products split across threads (in tiles, for the batch),
        // and long enough that the windows slide twice.
        let mut gpt = random_model(GptConfig { block_size: 16, ..config(192, true) }, 6);
        const { assert!(4 * 192 * 192 >= super::PARALLEL_MATVEC) };
        let prompt = [1, 2, 3];
        for dtype in [Dtype::F32, Dtype::Bf16] {
            gpt.set_sampling_dtype(dtype);
            for params in [
                SamplingParams { temperature: 1.0, top_k: None, top_p: None },
                SamplingParams { temperature: 0.0, top_k: None, top_p: None },
                SamplingParams { temperature: 0.8, top_k: Some(5), top_p: Some(0.9) },
            ] {
                let mut rng = Rng::seeded(11);
                let alone: Vec<Vec<u32>> =
                    (0..5).map(|_| generate(&gpt, &prompt, 30, &params, &mut rng, &mut |_| {})).collect();
                let mut rngs = sample_streams(&Rng::seeded(11), 5, 30, &params);
                let batched = generate_batch(&gpt, &prompt, 30, &params, &mut rngs, &mut |_, _| {});
                assert_eq!(batched, alone, "{dtype}, {params:?}");
                if params.temperature > 0.0 {
                    assert!(alone.iter().any(|t| t != &alone[0]), "the samples should differ");
                }
            }
        }
    }

    #[test]
    fn batched_logits_have_the_bits_of_one_text_at_a_time() {
        let gpt = random_model(config(192, false), 7);
        let texts = [[3u32, 9, 4, 30], [3, 1, 1, 2], [3, 36, 0, 5]];
        let mut batch = gpt.new_batch_cache(3);
        for (s, text) in texts.iter().enumerate() {
            gpt.forward_text_into(&mut batch, s, &text[..1]);
        }
        let mut alone: Vec<_> = texts.iter().map(|t| (gpt.new_cache(), t)).collect();
        alone.iter_mut().for_each(|(cache, t)| drop(gpt.forward_cached(cache, &t[..1])));
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        for step in 1..4 {
            let tokens: Vec<u32> = texts.iter().map(|t| t[step]).collect();
            let got = gpt.forward_step_into(&mut batch, &tokens).to_vec();
            for (s, (cache, t)) in alone.iter_mut().enumerate() {
                let want = gpt.forward_cached(cache, &[t[step]]);
                assert_eq!(bits(&got[s * 37..][..37]), bits(&want), "step {step}, text {s}");
            }
        }
    }

    #[test]
    fn bf16_logits_stay_close_to_f32() {
        let mut gpt = random_model(config(64, true), 8);
        let tokens: Vec<u32> = (0..20).map(|i| (i * 7 % 37) as u32).collect();
        let f32_logits = gpt.forward_cached(&mut gpt.new_cache(), &tokens);
        gpt.set_sampling_dtype(Dtype::Bf16);
        assert_eq!(gpt.sampling_dtype(), Dtype::Bf16);
        let half = gpt.forward_cached(&mut gpt.new_cache(), &tokens);
        let scale = f32_logits.iter().fold(1.0f32, |m, v| m.max(v.abs()));
        let diff = half.iter().zip(&f32_logits).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        // Each weight is within 2⁻⁸ of itself; through two blocks and the head the logits
        // move by a few percent of their scale at most.
        assert!(diff > 0.0 && diff <= 0.05 * scale, "max |diff| {diff} for logits up to {scale}");
        gpt.set_sampling_dtype(Dtype::F32);
        assert_eq!(gpt.forward_cached(&mut gpt.new_cache(), &tokens), f32_logits);
    }
}
