//! Row kernels of inference with a KV cache, the mirror of the tape's kernels for a few
//! new positions: layer norm and GELU of rows, causal attention of new rows over the
//! cached keys and values, and a linear layer as a matrix-vector product (one row), as
//! row kernels (a few rows of a small layer) or as one GEMM.
//!
//! They compute what the tape's kernels do, row by row: the tape's kernels fork onto the
//! thread pool on every call, which for a single row of a small model costs more than the
//! arithmetic. Only large pieces of work are split across threads: a wide layer's
//! matrix-vector product by fixed chunks of output rows, a few rows' products by fixed
//! chunks of rows, and attention over a long cache by head (one row) or by row (several).
//! Each output element is computed whole on one thread, by the same instructions whatever
//! the thread count.
//!
//! The matrix-vector product streams the weights once per token; four rows at a time share
//! each load of `x`, and every row's dot product is the same chain of fused multiply-adds
//! whichever group it falls in, so results do not depend on the row grouping either. Its
//! inner loops are AVX2 + FMA intrinsics, run by the AVX2 and AVX-512 variants of
//! [`crate::simd`] (the same instructions, so the same bits), and a portable loop elsewhere.
//! A body's `FMA` parameter is true only in those two variants, which run only where the
//! CPU has AVX2 and FMA: that is what makes its calls to the `_avx2` functions sound.

use rayon::prelude::*;

use crate::gemm::{gemm, Mat};
use crate::ops::bf16::{Bf16, WeightElem};
use crate::ops::elementwise::kernels::{gelu, relu2};
use crate::ops::exp::exp;
use crate::ops::layernorm::EPS;
use crate::ops::rmsnorm::normalize_rows;
use crate::simd::simd_dispatch;

/// Layer norm of each row of x (the tape's `layernorm`, row by row, without rayon):
/// out = (x − mean) / √(var + EPS) · gain + shift.  x, out: (n, C)  gain, shift: (C).
pub fn layernorm(out: &mut [f32], x: &[f32], (gain, shift): (&[f32], &[f32])) {
    let c = gain.len();
    debug_assert!(out.len() == x.len() && x.len().is_multiple_of(c.max(1)) && shift.len() == c);
    for (out, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        layernorm_row(out, x, (gain, shift));
    }
}

/// Layer norm of one row.  x, out, gain, shift: (C).
fn layernorm_row(out: &mut [f32], x: &[f32], (gain, shift): (&[f32], &[f32])) {
    let c = x.len() as f32;
    let mean = x.iter().sum::<f32>() / c;
    let var = x.iter().map(|&v| (v - mean) * (v - mean)).sum::<f32>() / c;
    let rstd = 1.0 / (var + EPS).sqrt();
    for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gain).zip(shift) {
        *o = (v - mean) * rstd * g + b;
    }
}

/// RMS norm of each row of x (the tape's `rmsnorm`, row by row, without rayon: the same
/// bits): out = x / √(mean(x²) + EPS) · gain.  x, out: (n, C)  gain: (C).
pub fn rmsnorm(out: &mut [f32], x: &[f32], gain: &[f32]) {
    let c = gain.len();
    debug_assert!(out.len() == x.len() && x.len().is_multiple_of(c.max(1)));
    for (out, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
        normalize_rows(out, x, Some(gain), &mut [0.0], c);
    }
}

/// QK-norm of fused q/k/v rows in place (the tape's `qk_norm`, the same bits): each head's
/// q and k divided by its RMS, v untouched. qkv: (n, 3·n_head·hs); `scratch`: hs values.
pub fn qk_norm_in_place(qkv: &mut [f32], n_head: usize, scratch: &mut [f32]) {
    let hs = scratch.len();
    for row in qkv.chunks_exact_mut(3 * n_head * hs) {
        for head in row[..2 * n_head * hs].chunks_exact_mut(hs) {
            scratch.copy_from_slice(head);
            normalize_rows(head, scratch, None, &mut [0.0], hs);
        }
    }
}

simd_dispatch!(
    /// `xs[i] ← max(xs[i], 0)²` for every element: the tape's ReLU² (the same bits).
    pub fn relu2_in_place => relu2_in_place_body(xs: &mut [f32])
);

#[inline(always)]
fn relu2_in_place_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = relu2(*x));
}

simd_dispatch!(
    /// `xs[i] ← gelu(xs[i])` for every element: the tape's GELU (the same bits), vectorised,
    /// with fused multiply-adds where the CPU has them.
    pub fn gelu_in_place => gelu_in_place_body(xs: &mut [f32])
);

#[inline(always)]
fn gelu_in_place_body(xs: &mut [f32]) {
    xs.iter_mut().for_each(|x| *x = gelu(*x));
}

/// probs = softmax(scores), one row, the maximum subtracted first.
#[inline(always)]
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

/// Caches at least this large (positions · C) run a single row's heads in parallel when
/// the caller is one of the pool's threads (inside `tensor::on_pool`, where the other
/// workers are awake and a fork costs microseconds).
pub const PARALLEL_ATTEND: usize = 1 << 14;

/// New rows per parallel task when [`attend`] is given several.
const ATTEND_ROWS: usize = 8;

/// Causal attention of n new rows over the cache: row i is position `positions − n + i`
/// and sees the positions up to its own; for head h,
/// out_h = softmax(q_h · K_hᵀ / √hs) · V_h.
/// out: (n, C), heads side by side; qkv: (n, 3C), q first; keys, values: (positions, C),
/// the new rows' own keys and values included; scores, probs: scratch of n_head · stride
/// values each, stride at least the positions.
///
/// One row splits its heads across threads once the cache holds [`PARALLEL_ATTEND`]
/// values (in the given scratch, one stride per head); several rows go through the pool
/// in fixed blocks of rows, each block with scratch of its own. Every head of every row
/// is computed by the same instructions either way.
pub fn attend(
    out: &mut [f32],
    qkv: &[f32],
    (keys, values): (&[f32], &[f32]),
    (n, n_head): (usize, usize),
    scratch: (&mut [f32], &mut [f32]),
) {
    let c = out.len() / n;
    assert!(
        out.len() == n * c && qkv.len() == 3 * n * c && keys.len() == values.len() && keys.len() >= n * c,
        "attend: out {} values, qkv {}, keys {}, values {} for n = {n}, c = {c}",
        out.len(),
        qkv.len(),
        keys.len(),
        values.len()
    );
    if n == 1 {
        return attend_heads(out, &qkv[..c], (keys, values), n_head, scratch);
    }
    let positions = keys.len() / c;
    let first = positions - n;
    let attend_block =
        |(scores, probs): &mut (Vec<f32>, Vec<f32>), i0: usize, out: &mut [f32], qkv: &[f32]| {
            for (i, (out, qkv)) in out.chunks_exact_mut(c).zip(qkv.chunks_exact(3 * c)).enumerate() {
                let seen = (first + i0 + i + 1) * c;
                attend_row(out, &qkv[..c], (&keys[..seen], &values[..seen]), n_head, (scores, probs));
            }
        };
    out.par_chunks_mut(ATTEND_ROWS * c).zip(qkv.par_chunks(ATTEND_ROWS * 3 * c)).enumerate().for_each_init(
        || (vec![0.0; positions], vec![0.0; positions]),
        |scratch, (b, (out, qkv))| attend_block(scratch, b * ATTEND_ROWS, out, qkv),
    );
}

/// One query row q (C) over every cached position, head after head, on this thread.
/// scores, probs: scratch of at least the positions.
fn attend_row(
    out: &mut [f32],
    q: &[f32],
    (keys, values): (&[f32], &[f32]),
    n_head: usize,
    (scores, probs): (&mut [f32], &mut [f32]),
) {
    let hs = q.len() / n_head;
    for (h, out) in out.chunks_exact_mut(hs).enumerate() {
        attend_head(out, h, q, (keys, values), (&mut scores[..], &mut probs[..]));
    }
}

/// [`attend_row`] with the heads split across threads once the cache holds at least
/// [`PARALLEL_ATTEND`] values and this thread is one of the pool's. scores, probs:
/// n_head · stride values each (one stride per head), stride at least the positions.
fn attend_heads(
    out: &mut [f32],
    q: &[f32],
    (keys, values): (&[f32], &[f32]),
    n_head: usize,
    (scores, probs): (&mut [f32], &mut [f32]),
) {
    let stride = scores.len() / n_head;
    if keys.len() < PARALLEL_ATTEND || rayon::current_thread_index().is_none() {
        return attend_row(out, q, (keys, values), n_head, (&mut scores[..stride], &mut probs[..stride]));
    }
    let hs = q.len() / n_head;
    let (scores, probs) = (&mut scores[..n_head * stride], &mut probs[..n_head * stride]);
    out.par_chunks_exact_mut(hs)
        .zip(scores.par_chunks_exact_mut(stride).zip(probs.par_chunks_exact_mut(stride)))
        .enumerate()
        .for_each(|(h, (out, (s, p)))| attend_head(out, h, q, (keys, values), (s, p)));
}

simd_dispatch!(
    /// Head h of [`attend_row`]: out (hs) = softmax(q_h · K_hᵀ / √hs) · V_h. The weighted
    /// sum of values is a chain of fused multiply-adds in every variant, so the bits are
    /// the same (in the portable one each is a call to the library's `fmaf`: right, but
    /// slow on CPUs without FMA).
    fn attend_head => attend_head_body::<FMA>(
        out: &mut [f32],
        h: usize,
        q: &[f32],
        kv: (&[f32], &[f32]),
        scratch: (&mut [f32], &mut [f32]),
    )
);

#[inline(always)]
fn attend_head_body<const FMA: bool>(
    out: &mut [f32],
    h: usize,
    q: &[f32],
    (keys, values): (&[f32], &[f32]),
    (scores, probs): (&mut [f32], &mut [f32]),
) {
    let (c, hs) = (q.len(), out.len());
    let positions = keys.len() / c;
    let scale = 1.0 / (hs as f32).sqrt();
    let (scores, probs) = (&mut scores[..positions], &mut probs[..positions]);
    let q = &q[h * hs..][..hs];
    for (s, k) in scores.iter_mut().zip(keys.chunks_exact(c)) {
        *s = scale * dot_body::<FMA>(q, &k[h * hs..][..hs]);
    }
    softmax(probs, scores);
    out.fill(0.0);
    for (&p, v) in probs.iter().zip(values.chunks_exact(c)) {
        for (o, &v) in out.iter_mut().zip(&v[h * hs..][..hs]) {
            *o = p.mul_add(v, *o);
        }
    }
}

/// Linear layers at least this large (oc·c) split a matrix-vector product's rows across
/// threads, and take the GEMM rather than the row kernels for several rows.
pub const PARALLEL_MATVEC: usize = 1 << 17;
/// Output rows per parallel task (a multiple of the 4-row group).
const MATVEC_ROWS: usize = 64;

/// Linear layers with at most this many input rows, and small weights (oc·c below
/// [`PARALLEL_MATVEC`]), go through [`matmul_rows`] rather than a GEMM.
const FEW_ROWS: usize = 64;

/// Rows of x per parallel task in [`matmul_rows`].
const ROWS_PER_TASK: usize = 8;

/// A linear layer's weight matrix (oc, c), row-major, in `f32` or in bfloat16 (read
/// widened to `f32`, every product and sum in `f32`; see `ops/bf16.rs`).
#[derive(Copy, Clone, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [Bf16]),
}

/// n new positions through a linear layer: out (n, oc) = x (n, c) · wᵀ + bias.
/// w: (oc, c), bias: (oc). One row is a matrix-vector product ([`matvec`]); a few rows
/// through a small layer, and any rows through bfloat16 weights, take the row kernels
/// ([`matmul_rows`]: no packing, and the bits of one row at a time); otherwise one GEMM,
/// as the tape's `matmul_forward` computes it, with the bias rows copied on this thread.
pub fn linear(out: &mut [f32], x: &[f32], w: Weights, bias: Option<&[f32]>, n: usize) {
    let (c, oc) = (x.len() / n, out.len() / n);
    match w {
        Weights::F32(w) if n > 1 && (n > FEW_ROWS || oc * c >= PARALLEL_MATVEC) => {
            if let Some(bias) = bias {
                out.chunks_exact_mut(oc).for_each(|row| row.copy_from_slice(bias));
            }
            gemm(n, c, oc, Mat::rows(x, c), Mat::transposed(w, c), out, bias.is_some());
        }
        w => linear_rows(out, x, w, bias, n),
    }
}

/// n rows through a linear layer, each row given exactly the bits a matrix-vector product
/// of that row alone gives ([`matvec`], whatever n, the layer's size or the thread count):
/// for rows of different texts decoded as one batch, whose logits must be those of
/// decoding each text alone. out (n, oc) = x (n, c) · wᵀ + bias.
pub fn linear_rows(out: &mut [f32], x: &[f32], w: Weights, bias: Option<&[f32]>, n: usize) {
    match (w, n) {
        (Weights::F32(w), 1) => matvec(out, w, bias, x),
        (Weights::Bf16(w), 1) => matvec(out, w, bias, x),
        (Weights::F32(w), _) => matmul_rows(out, w, bias, x, n),
        (Weights::Bf16(w), _) => matmul_rows(out, w, bias, x, n),
    }
}

/// out (oc) = w (oc, c) · x (c) + bias (oc).
pub fn matvec<W: WeightElem>(out: &mut [f32], w: &[W], bias: Option<&[f32]>, x: &[f32]) {
    let c = x.len();
    debug_assert!(w.len() == out.len() * c);
    if out.len() * c < PARALLEL_MATVEC {
        matvec_rows(out, w, x);
    } else {
        out.par_chunks_mut(MATVEC_ROWS)
            .zip(w.par_chunks(MATVEC_ROWS * c))
            .for_each(|(out, w)| matvec_rows(out, w, x));
    }
    if let Some(bias) = bias {
        out.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
    }
}

/// out (n, oc) = x (n, c) · wᵀ + bias for a few rows of x, without packing: each group of
/// four weight rows is loaded into L1 once and dotted with every row of x (of a task's
/// `ROWS_PER_TASK` = 8 rows, when n is large enough to split across threads; for fewer
/// rows through a large layer, of a task's `MATVEC_ROWS` weight rows, as [`matvec`] splits
/// them). Each element is computed by exactly the instructions [`matvec`] uses for it, so
/// feeding rows together gives the bits of feeding them one at a time, whatever the
/// thread count.
pub fn matmul_rows<W: WeightElem>(out: &mut [f32], w: &[W], bias: Option<&[f32]>, x: &[f32], n: usize) {
    let (c, oc) = (x.len() / n, out.len() / n);
    assert!(
        x.len() == n * c && out.len() == n * oc && w.len() == oc * c,
        "matmul_rows: x {} values, out {} values, w {} values for n = {n}, c = {c}, oc = {oc}",
        x.len(),
        out.len(),
        w.len()
    );
    if n >= 2 * ROWS_PER_TASK {
        out.par_chunks_mut(ROWS_PER_TASK * oc)
            .zip(x.par_chunks(ROWS_PER_TASK * c))
            .for_each(|(out, x)| products_rows(out, w, x, c));
    } else if oc * c >= PARALLEL_MATVEC {
        // Each task's weight rows (r of them) give an (n, r) tile, copied into place after.
        let mut tiles = vec![0.0; n * oc];
        tiles
            .par_chunks_mut(n * MATVEC_ROWS)
            .zip(w.par_chunks(MATVEC_ROWS * c))
            .for_each(|(tile, w)| products_rows(tile, w, x, c));
        for (j, tile) in tiles.chunks(n * MATVEC_ROWS).enumerate() {
            let r = tile.len() / n;
            for (out, tile) in out.chunks_exact_mut(oc).zip(tile.chunks_exact(r)) {
                out[j * MATVEC_ROWS..][..r].copy_from_slice(tile);
            }
        }
    } else {
        products_rows(out, w, x, c);
    }
    if let Some(bias) = bias {
        for out in out.chunks_exact_mut(oc) {
            out.iter_mut().zip(bias).for_each(|(y, b)| *y += b);
        }
    }
}

simd_dispatch!(
    /// out (n, oc) = x (n, c) · wᵀ, weight group outermost: four weight rows at a time
    /// with AVX2 + FMA, each group dotted with every row of x while it is in L1.
    fn products_rows<W: WeightElem> => products_rows_body::<FMA, W>(out: &mut [f32], w: &[W], x: &[f32], c: usize)
);

#[inline(always)]
fn products_rows_body<const FMA: bool, W: WeightElem>(out: &mut [f32], w: &[W], x: &[f32], c: usize) {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA holds only where the CPU has AVX2 and FMA (see the module comment).
        unsafe { products_rows_avx2(out, w, x, c) };
        return;
    }
    let oc = w.len() / c;
    for (out, x) in out.chunks_exact_mut(oc).zip(x.chunks_exact(c)) {
        matvec_rows_body::<FMA, W>(out, w, x);
    }
}

/// [`products_rows`] with AVX2 + FMA: each group of four weight rows goes through the rows
/// of x two at a time ([`dot4x2_avx2`]), so every load of the weights serves two rows of x.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn products_rows_avx2<W: WeightElem>(out: &mut [f32], w: &[W], x: &[f32], c: usize) {
    let oc = w.len() / c;
    let groups = oc / 4;
    for (g, w) in w.chunks_exact(4 * c).enumerate() {
        let mut outs = out.chunks_exact_mut(2 * oc);
        let mut xs = x.chunks_exact(2 * c);
        for (out, x) in (&mut outs).zip(&mut xs) {
            let (a, b) = out.split_at_mut(oc);
            dot4x2_avx2([&mut a[4 * g..][..4], &mut b[4 * g..][..4]], w, x.split_at(c));
        }
        let out = outs.into_remainder();
        if !out.is_empty() {
            dot4_avx2(&mut out[4 * g..][..4], w, xs.remainder());
        }
    }
    for (o, row) in w.chunks_exact(c).enumerate().skip(4 * groups) {
        for (out, x) in out.chunks_exact_mut(oc).zip(x.chunks_exact(c)) {
            out[o] = dot_avx2(row, x);
        }
    }
}

simd_dispatch!(
    /// out[o] = w[o, :] · x for a block of rows, four at a time with AVX2 + FMA.
    fn matvec_rows<W: WeightElem> => matvec_rows_body::<FMA, W>(out: &mut [f32], w: &[W], x: &[f32])
);

#[inline(always)]
fn matvec_rows_body<const FMA: bool, W: WeightElem>(out: &mut [f32], w: &[W], x: &[f32]) {
    let c = x.len();
    #[cfg(target_arch = "x86_64")]
    if FMA {
        let mut groups = out.chunks_exact_mut(4);
        let mut rows = w.chunks_exact(4 * c);
        for (o, w) in (&mut groups).zip(&mut rows) {
            // SAFETY: FMA holds only where the CPU has AVX2 and FMA (see the module comment).
            unsafe { dot4_avx2(o, w, x) };
        }
        for (o, row) in groups.into_remainder().iter_mut().zip(rows.remainder().chunks_exact(c)) {
            // SAFETY: as above.
            *o = unsafe { dot_avx2(row, x) };
        }
        return;
    }
    for (o, row) in out.iter_mut().zip(w.chunks_exact(c)) {
        *o = dot_portable(row, x);
    }
}

simd_dispatch!(
    /// Σ a·b: with AVX2 and FMA where the CPU has them, else portably.
    pub fn dot => dot_body::<FMA>(a: &[f32], b: &[f32]) -> f32
);

#[inline(always)]
fn dot_body<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: FMA holds only where the CPU has AVX2 and FMA (see the module comment).
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

/// Σ a·b, with 16 independent partial sums so the compiler keeps them in vector lanes.
fn dot_portable<W: WeightElem>(a: &[W], b: &[f32]) -> f32 {
    const LANES: usize = 16;
    let split = a.len() - a.len() % LANES;
    let mut acc = [0.0f32; LANES];
    for (ca, cb) in a[..split].chunks_exact(LANES).zip(b[..split].chunks_exact(LANES)) {
        for i in 0..LANES {
            acc[i] += ca[i].widen() * cb[i];
        }
    }
    let tail: f32 = a[split..].iter().zip(&b[split..]).map(|(x, y)| x.widen() * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The sums of four dot products' 8-lane partial sums, as four lanes: each row's lanes
/// added pairwise, ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)). [`finish`] repeats
/// it for one row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn finish4(s: [std::arch::x86_64::__m256; 4]) -> std::arch::x86_64::__m128 {
    use std::arch::x86_64::*;
    let u = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
    _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1))
}

/// One dot product's 8-lane partial sums reduced as [`finish4`] reduces each of its rows.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn finish(s: std::arch::x86_64::__m256) -> f32 {
    std::arch::x86_64::_mm_cvtss_f32(finish4([s; 4]))
}

/// Σ a·b with two 8-wide FMA accumulators over 16-value steps, then an 8-value step into
/// the first, then a scalar tail: the per-row recipe [`dot4_avx2`] repeats exactly.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2<W: WeightElem>(a: &[W], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(W::load8(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        acc1 = _mm256_fmadd_ps(W::load8(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
        i += 16;
    }
    if i + 8 <= n {
        acc0 = _mm256_fmadd_ps(W::load8(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        i += 8;
    }
    let sum = finish(_mm256_add_ps(acc0, acc1));
    if i == n {
        return sum;
    }
    sum + a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x.widen() * y).sum::<f32>()
}

/// How far ahead in the weights (in bytes: 24 KiB) [`dot4_avx2`] asks for the cache lines
/// it will read, into L2 (so as not to evict what L1 holds). It reads four rows side by
/// side, each only a few dozen cache lines long: four short interleaved streams, which
/// the hardware prefetcher follows too late to keep the memory bus busy. (Near the end of
/// a matrix this points past it; a prefetch is only a hint and never faults.)
const PREFETCH_AHEAD: usize = 24 * 1024;

/// out[r] = w[r, :] · x for four consecutive rows of w (4, c), each with the instructions
/// of [`dot_avx2`], sharing the loads of x.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_avx2<W: WeightElem>(out: &mut [f32], w: &[W], x: &[f32]) {
    use std::arch::x86_64::*;
    let c = x.len();
    debug_assert!(out.len() == 4 && w.len() == 4 * c);
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let mut acc0 = [_mm256_setzero_ps(); 4];
    let mut acc1 = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 16 <= c {
        let (x0, x1) = (_mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(px.add(i + 8)));
        for r in 0..4 {
            let row = pw.add(r * c + i);
            _mm_prefetch::<_MM_HINT_T1>((row as *const i8).wrapping_add(PREFETCH_AHEAD));
            acc0[r] = _mm256_fmadd_ps(W::load8(row), x0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(W::load8(row.add(8)), x1, acc1[r]);
        }
        i += 16;
    }
    if i + 8 <= c {
        let x0 = _mm256_loadu_ps(px.add(i));
        for (r, acc) in acc0.iter_mut().enumerate() {
            *acc = _mm256_fmadd_ps(W::load8(pw.add(r * c + i)), x0, *acc);
        }
        i += 8;
    }
    let sums = finish4([0, 1, 2, 3].map(|r| _mm256_add_ps(acc0[r], acc1[r])));
    _mm_storeu_ps(out.as_mut_ptr(), sums);
    if i < c {
        for (r, o) in out.iter_mut().enumerate() {
            let row = &w[r * c..][..c];
            *o += row[i..].iter().zip(&x[i..]).map(|(w, x)| w.widen() * x).sum::<f32>();
        }
    }
}

/// out[t][r] = w[r, :] · x_t for four consecutive rows of w (4, c) and two rows of x, each
/// with the chain of fused multiply-adds [`dot_avx2`] uses: the first accumulator takes
/// the 16-value steps' first halves and then the 8-value step, the second their second
/// halves. The two accumulators are run one after the other, so the eight chains of each
/// fit in registers next to the loads they share.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4x2_avx2<W: WeightElem>(out: [&mut [f32]; 2], w: &[W], (xa, xb): (&[f32], &[f32])) {
    use std::arch::x86_64::*;
    let c = xa.len();
    debug_assert!(out.iter().all(|o| o.len() == 4) && w.len() == 4 * c && xb.len() == c);
    let (pw, pa, pb) = (w.as_ptr(), xa.as_ptr(), xb.as_ptr());
    // acc[t][r] += w[r, i..i + 8] · x_t[i..i + 8], lane by lane, for i = start, start + 16, …
    // while i + 8 ≤ end.
    let chain = |start: usize, end: usize, [acc_a, acc_b]: &mut [[__m256; 4]; 2]| {
        let mut i = start;
        while i + 8 <= end {
            let (a, b) = (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            for (r, (sa, sb)) in acc_a.iter_mut().zip(acc_b.iter_mut()).enumerate() {
                let wr = W::load8(pw.add(r * c + i));
                *sa = _mm256_fmadd_ps(wr, a, *sa);
                *sb = _mm256_fmadd_ps(wr, b, *sb);
            }
            i += 16;
        }
    };
    let full = c - c % 16;
    let mut acc0 = [[_mm256_setzero_ps(); 4]; 2];
    chain(0, full, &mut acc0);
    let mut i = full;
    if i + 8 <= c {
        chain(i, i + 8, &mut acc0);
        i += 8;
    }
    let mut acc1 = [[_mm256_setzero_ps(); 4]; 2];
    chain(8, full, &mut acc1);
    for (t, (out, x)) in out.into_iter().zip([xa, xb]).enumerate() {
        let sums = finish4([0, 1, 2, 3].map(|r| _mm256_add_ps(acc0[t][r], acc1[t][r])));
        _mm_storeu_ps(out.as_mut_ptr(), sums);
        if i < c {
            for (r, o) in out.iter_mut().enumerate() {
                let row = &w[r * c..][..c];
                *o += row[i..].iter().zip(&x[i..]).map(|(w, x)| w.widen() * x).sum::<f32>();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matvec_rows_match_single_row_dots_whatever_the_grouping() {
        // Widths with and without 16- and 8-value tails; row counts with a partial group.
        for c in [5, 8, 24, 37, 64] {
            for oc in [1, 3, 4, 7, 9] {
                let w: Vec<f32> = (0..oc * c).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                let x: Vec<f32> = (0..c).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
                let mut out = vec![0.0; oc];
                matvec(&mut out, w.as_slice(), None, &x);
                for (o, row) in out.iter().zip(w.chunks_exact(c)) {
                    assert_eq!(o.to_bits(), dot(row, &x).to_bits(), "c {c}, oc {oc}");
                    let plain: f32 = row.iter().zip(&x).map(|(a, b)| a * b).sum();
                    assert!((o - plain).abs() < 1e-3, "c {c}, oc {oc}: {o} vs {plain}");
                }
            }
        }
    }

    #[test]
    fn matmul_rows_gives_the_bits_of_one_matvec_per_row() {
        // Odd and even row counts, so both the paired and the single-row kernels run.
        for c in [5, 8, 24, 37, 64] {
            for oc in [1, 4, 7, 9] {
                for n in [1, 2, 3, 6] {
                    let w: Vec<f32> = (0..oc * c).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
                    let x: Vec<f32> = (0..n * c).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
                    let bias: Vec<f32> = (0..oc).map(|i| i as f32 / 3.0).collect();
                    let mut out = vec![0.0; n * oc];
                    matmul_rows(&mut out, w.as_slice(), Some(&bias), &x, n);
                    for (got, x) in out.chunks_exact(oc).zip(x.chunks_exact(c)) {
                        let mut want = vec![0.0; oc];
                        matvec(&mut want, w.as_slice(), Some(&bias), x);
                        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(got), bits(&want), "c {c}, oc {oc}, n {n}");
                    }
                }
            }
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|v| v.to_bits()).collect()
    }

    /// Weights and inputs of a layer (oc, c), varied in sign and size.
    fn layer(oc: usize, c: usize) -> (Vec<f32>, Vec<f32>) {
        let w = (0..oc * c)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 37.0 * (1.0 + (i % 7) as f32 / 13.0))
            .collect();
        let x = (0..c).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        (w, x)
    }

    #[test]
    fn bf16_products_give_the_bits_of_f32_products_over_the_widened_weights() {
        for c in [5, 8, 24, 37, 64] {
            for oc in [1, 3, 4, 7, 9] {
                let (w, x) = layer(oc, c);
                let half = crate::ops::bf16::to_bf16(&w);
                let widened: Vec<f32> = half.iter().map(|h| h.to_f32()).collect();
                let (mut got, mut want) = (vec![0.0; oc], vec![0.0; oc]);
                matvec(&mut got, &half, None, &x);
                matvec(&mut want, &widened, None, &x);
                assert_eq!(bits(&got), bits(&want), "c {c}, oc {oc}");
                // The portable bodies agree with each other the same way.
                matvec_rows_body::<false, Bf16>(&mut got, &half, &x);
                matvec_rows_body::<false, f32>(&mut want, &widened, &x);
                assert_eq!(bits(&got), bits(&want), "portable, c {c}, oc {oc}");
            }
        }
    }

    #[test]
    fn bf16_products_are_within_the_rounding_bound_of_f32() {
        // Each weight moves by at most 2⁻⁸ of itself, so a product moves by at most
        // 2⁻⁸ Σ|w·x|, plus the f32 rounding of the two sums (far smaller at these sizes).
        for c in [37, 64, 768] {
            let oc = 16;
            let (w, x) = layer(oc, c);
            let half = crate::ops::bf16::to_bf16(&w);
            let (mut got, mut want) = (vec![0.0; oc], vec![0.0; oc]);
            matvec(&mut got, &half, None, &x);
            matvec(&mut want, w.as_slice(), None, &x);
            for (o, (g, f)) in got.iter().zip(&want).enumerate() {
                let magnitude: f32 = w[o * c..][..c].iter().zip(&x).map(|(w, x)| (w * x).abs()).sum();
                let bound = magnitude / 256.0 + 1e-5 * magnitude;
                assert!((g - f).abs() <= bound, "c {c}, row {o}: bf16 {g} vs f32 {f}, bound {bound}");
            }
        }
    }

    #[test]
    fn portable_and_vector_products_agree_within_rounding() {
        // The AVX2 and AVX-512 variants run the same instructions (the same bits); the
        // portable one multiplies and adds separately and sums in another order.
        let (oc, c) = (9, 100);
        let (w, x) = layer(oc, c);
        let (mut vector, mut portable) = (vec![0.0; oc], vec![0.0; oc]);
        matvec_rows(&mut vector, w.as_slice(), &x);
        matvec_rows_body::<false, f32>(&mut portable, &w, &x);
        for (v, p) in vector.iter().zip(&portable) {
            assert!((v - p).abs() <= 1e-5 * v.abs().max(1.0), "{v} vs {p}");
        }
    }

    #[test]
    fn linear_rows_of_a_large_layer_give_the_bits_of_one_matvec_per_row() {
        // Large enough that the rows split the weights across threads in tiles, with a
        // last tile of fewer rows.
        let (oc, c) = (700, 200);
        const { assert!(700 * 200 >= PARALLEL_MATVEC) };
        let (w, _) = layer(oc, c);
        let half = crate::ops::bf16::to_bf16(&w);
        let bias: Vec<f32> = (0..oc).map(|i| i as f32 / 100.0).collect();
        for n in [2, 3, 8] {
            let x: Vec<f32> = (0..n * c).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
            for weights in [Weights::F32(&w), Weights::Bf16(&half)] {
                let mut got = vec![0.0; n * oc];
                linear_rows(&mut got, &x, weights, Some(&bias), n);
                for (got, x) in got.chunks_exact(oc).zip(x.chunks_exact(c)) {
                    let mut want = vec![0.0; oc];
                    linear_rows(&mut want, x, weights, Some(&bias), 1);
                    assert_eq!(bits(got), bits(&want), "n {n}, {weights:?}");
                }
            }
        }
    }
}
