//! Inference without the tape: the GPT run one position at a time, keeping every layer's
//! keys and values for the positions seen so far, so each new token costs one pass of
//! matrix-vector products plus one attention row, not a forward over the whole text.
//!
//! This is the sampling hot path at batch 1. The [`KvCache`] owns every buffer it needs
//! (the keys and values for block_size positions, and scratch vectors for one position),
//! so after [`Gpt::new_cache`] a step allocates nothing. Weights are read in place from the
//! tape: a linear layer is `out[o] = bias[o] + w[o, :] · x`, each weight row contiguous,
//! with an AVX2/FMA dot product where the CPU has one.
//!
//! The row kernels here (layer norm, GELU, softmax) compute what the tape's do,
//! for one row and without rayon: the tape's kernels fork onto the thread pool on every
//! call, which for a single row of a small model costs more than the arithmetic. Only
//! the matrix-vector products of wide models run in parallel.

use rayon::prelude::*;
use tensor::ops::exp::exp;
use tensor::ops::layernorm::EPS;

use crate::gpt::{LayerNorm, Linear};
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
    /// Attention scores of one head over the positions so far (block_size).
    scores: Vec<f32>,
    /// Their softmax, the attention weights (block_size).
    probs: Vec<f32>,
    /// The MLP's hidden layer (4C).
    hidden: Vec<f32>,
    /// The zero shift of layer norms in a model without biases (C).
    zeros: Vec<f32>,
    /// A residual branch's output (C).
    branch: Vec<f32>,
    /// The last position's logits (vocab_size).
    logits: Vec<f32>,
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
            scores: vec![0.0; t],
            probs: vec![0.0; t],
            hidden: vec![0.0; 4 * c],
            zeros: vec![0.0; c],
            branch: vec![0.0; c],
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
        let mut feed = || {
            for &token in tokens {
                self.step(cache, token);
            }
            let layers = &self.layers;
            layernorm(&mut cache.normed, &cache.x, self.norm_params(&layers.ln_f, &cache.zeros));
            matvec(&mut cache.logits, self.tape.data(layers.wte), None, &cache.normed, cfg.n_embd);
        };
        if 4 * cfg.n_embd * cfg.n_embd >= PARALLEL_MATVEC {
            // The large matrix-vector products fork onto rayon's pool: entering the pool
            // once per call, not once per product, saves a cross-thread hand-off each time.
            rayon::scope(|_| feed());
        } else {
            feed();
        }
        &cache.logits
    }

    /// Runs one token at position `cache.len` through every block, leaving the final
    /// residual stream in `cache.x` and its keys and values in the cache.
    fn step(&self, cache: &mut KvCache, token: u32) {
        let cfg = &self.config;
        let (c, nh, block) = (cfg.n_embd, cfg.n_head, cfg.block_size);
        let hs = c / nh;
        let scale = 1.0 / (hs as f32).sqrt();
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
            for h in 0..nh {
                // One query row of causal attention: softmax(q · Kᵀ / √hs) · V over 0..=pos.
                let q = &cache.qkv[h * hs..][..hs];
                let scores = &mut cache.scores[..=pos];
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = scale * dot(q, &keys[j * c + h * hs..][..hs]);
                }
                let probs = &mut cache.probs[..=pos];
                softmax(probs, scores);
                let out = &mut cache.att[h * hs..][..hs];
                out.fill(0.0);
                for (j, &p) in probs.iter().enumerate() {
                    let v = &values[j * c + h * hs..][..hs];
                    out.iter_mut().zip(v).for_each(|(o, v)| *o += p * v);
                }
            }
            self.linear(&mut cache.branch, &layer.attn.c_proj, &cache.att);
            cache.x.iter_mut().zip(&cache.branch).for_each(|(x, y)| *x += y);

            // x = x + mlp.c_proj(gelu(mlp.c_fc(ln_2(x))))
            layernorm(&mut cache.normed, &cache.x, self.norm_params(&layer.ln_2, &cache.zeros));
            self.linear(&mut cache.hidden, &layer.mlp.c_fc, &cache.normed);
            cache.hidden.iter_mut().for_each(|h| *h = gelu(*h));
            self.linear(&mut cache.branch, &layer.mlp.c_proj, &cache.hidden);
            cache.x.iter_mut().zip(&cache.branch).for_each(|(x, y)| *x += y);
        }
        cache.len += 1;
    }

    fn linear(&self, out: &mut [f32], layer: &Linear, x: &[f32]) {
        let bias = layer.bias.map(|b| self.tape.data(b));
        matvec(out, self.tape.data(layer.weight), bias, x, x.len());
    }

    /// A layer norm's gain and shift (`zeros` when the model has no biases).
    fn norm_params<'a>(&'a self, norm: &LayerNorm, zeros: &'a [f32]) -> (&'a [f32], &'a [f32]) {
        (self.tape.data(norm.weight), norm.bias.map_or(zeros, |b| self.tape.data(b)))
    }
}

/// Layer norm of one row (the tape's `layernorm` for n = 1, without rayon):
/// out = (x − mean) / √(var + EPS) · gain + shift.  x, gain, shift: (C).
fn layernorm(out: &mut [f32], x: &[f32], (gain, shift): (&[f32], &[f32])) {
    let c = x.len() as f32;
    let mean = x.iter().sum::<f32>() / c;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / c;
    let rstd = 1.0 / (var + EPS).sqrt();
    for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gain).zip(shift) {
        *o = (v - mean) * rstd * g + b;
    }
}

/// GPT-2's GELU, as the tape's: ½ · x · (1 + tanh(u)), u = √(2/π) · (x + 0.044715 · x³),
/// with tanh(u) = 1 − 2 / (e²ᵘ + 1) on the tensor crate's vectorisable `exp`.
fn gelu(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    let tanh = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
    0.5 * x * (1.0 + tanh)
}

/// probs = softmax(scores), one row, the maximum subtracted first.
fn softmax(probs: &mut [f32], scores: &[f32]) {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for (p, &s) in probs.iter_mut().zip(scores) {
        *p = exp(s - max);
        sum += *p;
    }
    let inv = 1.0 / sum;
    probs.iter_mut().for_each(|p| *p *= inv);
}

/// Matrix-vector products at least this large (oc·c) split their rows across threads.
const PARALLEL_MATVEC: usize = 1 << 17;
/// Output rows per parallel task.
const MATVEC_ROWS: usize = 32;

/// out (oc) = w (oc, c) · x (c) + bias (oc).
fn matvec(out: &mut [f32], w: &[f32], bias: Option<&[f32]>, x: &[f32], c: usize) {
    debug_assert!(w.len() == out.len() * c && x.len() == c);
    let rows = |out: &mut [f32], w: &[f32], bias: Option<&[f32]>| {
        for (o, (y, row)) in out.iter_mut().zip(w.chunks_exact(c)).enumerate() {
            *y = dot(row, x) + bias.map_or(0.0, |b| b[o]);
        }
    };
    if out.len() * c < PARALLEL_MATVEC {
        rows(out, w, bias);
    } else {
        out.par_chunks_mut(MATVEC_ROWS)
            .zip(w.par_chunks(MATVEC_ROWS * c))
            .enumerate()
            .for_each(|(i, (out, w))| rows(out, w, bias.map(|b| &b[i * MATVEC_ROWS..])));
    }
}

/// Σ a·b: with AVX2 and FMA where the CPU has them, else portably.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features `dot_avx2` is compiled for.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

/// Σ a·b, with 16 independent partial sums so the compiler keeps them in vector lanes.
fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let split = a.len() - a.len() % LANES;
    let mut acc = [0.0f32; LANES];
    for (ca, cb) in a[..split].chunks_exact(LANES).zip(b[..split].chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = a[split..].iter().zip(&b[split..]).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Σ a·b with four 8-wide FMA accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            let j = i + 8 * k;
            *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(j)), _mm256_loadu_ps(pb.add(j)), *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let tail: f32 = a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}
