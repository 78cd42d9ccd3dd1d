//! Causal self-attention, fused per (batch, head): scores, causal mask, softmax, and the
//! weighted sum of values, never holding more than one (T×T) score block per task.
//!
//! Layout, as in nanoGPT's `q, k, v = qkv.split(c, dim=2)` then
//! `.view(b, t, nh, hs).transpose(1, 2)`: for batch element b and position i, head h of q is
//! `qkv[b, i, h·hs..(h+1)·hs]`, its k starts at column c + h·hs and its v at 2c + h·hs.
//! The output y (b, t, c) holds head h at columns h·hs.. (the transpose back and view).
//!
//! For one (batch, head), with q, k, v each (t, hs):
//!
//! ```text
//! S_ij = q_i · k_j / √hs          for keys j ≤ i (the causal mask hides j > i)
//! P_ij = softmax_j(S_ij) = exp(S_ij − lse_i),   lse_i = log Σ_{j≤i} exp(S_ij)
//! y_i  = Σ_j P_ij v_j
//! ```
//!
//! Only `lse` (b, nh, t) is saved. Backward recomputes P from q, k and lse, as
//! FlashAttention does, rather than keeping b·nh·t² probabilities alive for the step.
//!
//! Each (batch, head) is one rayon task. It copies its q, k and v into contiguous,
//! zero-padded buffers (k and v also transposed), then walks the queries in blocks of
//! [`QUERY_BLOCK`] rows, whose scores live in a per-task scratch of `QUERY_BLOCK × t`.
//! Every product (q·kᵀ and P·v, and backward's four) runs on one small register-tiled
//! kernel, [`matmul_tile`], that reads its left operand with any strides and skips what
//! the causal mask zeroes: a tile of queries ending at row i touches keys 0..=i only.
//! Calling `crate::gemm` per block instead was about twice as slow, because a general GEMM
//! packs both operands on every call, and here one of the dimensions is only hs.
//! Tasks write one head each into a head-major buffer; a last pass copies it into the
//! (b, t, c) layout.
//! [`attention_reference`] and [`attention_backward_reference`] are the same math as
//! plain loops, kept to test the fast path against.

use crate::grads::Grads;
use crate::ops::exp::{exp_sum, max};
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;
use std::cell::Cell;

/// Queries per score block: a task's scratch holds at most `QUERY_BLOCK × t` scores.
const QUERY_BLOCK: usize = 64;
/// Columns per register tile of [`matmul_tile`]: two AVX2 vectors, one AVX-512 vector.
const NR: usize = 16;
/// Rows per register tile: MR × NR accumulators stay in registers.
const MR: usize = 6;

fn round_up(x: usize) -> usize {
    x.div_ceil(NR) * NR
}

/// C (ROWS × n) (+)= A · B over the contraction range k0..k1:
///
/// ```text
/// c[r·ldc + j] (+)= Σ_{p ∈ k0..k1} a[r·ars + p·acs] · b[p·ldb + j]     r < ROWS, j < n
/// ```
///
/// A is read one scalar at a time with any strides (so a transpose costs nothing), B is
/// row-major and read NR values at a time, and n is a multiple of NR (B and C are padded).
/// Each output is a chain of fused multiply-adds over p in order, from zero, then one
/// addition into C when accumulating: the same bits on every path and thread count.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn matmul_tile<const ROWS: usize>(
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    (ars, acs): (usize, usize),
    b: &[f32],
    ldb: usize,
    n: usize,
    (k0, k1): (usize, usize),
    accumulate: bool,
) {
    if k0 >= k1 || n == 0 {
        if !accumulate {
            (0..ROWS).for_each(|r| c[r * ldc..][..n].fill(0.0));
        }
        return;
    }
    // Every index read below is at most one of these, checked once here rather than in the loop.
    assert!(
        n.is_multiple_of(NR)
            && (ROWS - 1) * ars + (k1 - 1) * acs < a.len()
            && (k1 - 1) * ldb + n <= b.len()
            && (ROWS - 1) * ldc + n <= c.len(),
        "attention matmul_tile: operands too short for {ROWS} rows, n = {n}, k = {k0}..{k1}"
    );
    for j0 in (0..n).step_by(NR) {
        let mut acc = [[0.0f32; NR]; ROWS];
        for p in k0..k1 {
            // SAFETY: p < k1 and j0 + NR <= n, so p·ldb + j0 + NR <= (k1 − 1)·ldb + n <= b.len().
            let bp = unsafe { &*(b.as_ptr().add(p * ldb + j0) as *const [f32; NR]) };
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: r < ROWS and p < k1, so the index is within the bound checked above.
                let ar = unsafe { *a.get_unchecked(r * ars + p * acs) };
                acc_r.iter_mut().zip(bp).for_each(|(x, &bv)| *x = ar.mul_add(bv, *x));
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            let dst = &mut c[r * ldc + j0..][..NR];
            if accumulate {
                dst.iter_mut().zip(acc_r).for_each(|(d, x)| *d += x);
            } else {
                dst.copy_from_slice(acc_r);
            }
        }
    }
}

/// Σ a_i · b_i in NR lanes (so that it vectorises), combined in a fixed order.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; NR];
    for (ca, cb) in a.chunks(NR).zip(b.chunks(NR)) {
        acc.iter_mut().zip(ca.iter().zip(cb)).for_each(|(s, (x, y))| *s += x * y);
    }
    acc.iter().sum()
}

/// Rows 0..m of C (+)= A · B, in tiles of MR rows (then single rows). `bounds(i, rows)`
/// gives, for the tile of `rows` rows starting at row i, the columns n to compute and the
/// contraction range (k0, k1): causal products skip what the mask zeroes.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn matmul_rows(
    m: usize,
    c: &mut [f32],
    ldc: usize,
    a: &[f32],
    (ars, acs): (usize, usize),
    b: &[f32],
    ldb: usize,
    accumulate: bool,
    bounds: impl Fn(usize, usize) -> (usize, (usize, usize)),
) {
    let mut i = 0;
    while i + MR <= m {
        let (n, k) = bounds(i, MR);
        matmul_tile::<MR>(&mut c[i * ldc..], ldc, &a[i * ars..], (ars, acs), b, ldb, n, k, accumulate);
        i += MR;
    }
    for i in i..m {
        let (n, k) = bounds(i, 1);
        matmul_tile::<1>(&mut c[i * ldc..], ldc, &a[i * ars..], (ars, acs), b, ldb, n, k, accumulate);
    }
}

/// One head of one batch element: its rows of qkv (t, 3c) and where its q starts.
struct Head<'a> {
    x: &'a [f32],
    t: usize,
    c: usize,
    col: usize,
    hs: usize,
}

impl Head<'_> {
    /// dst (t, ld) ← the head's hs columns of q, k or v (`part` 0, 1, 2), zero-padded.
    fn gather_rows(&self, dst: &mut [f32], ld: usize, part: usize) {
        let from = part * self.c + self.col;
        for (row, src) in dst.chunks_exact_mut(ld).zip(self.x.chunks_exact(3 * self.c)) {
            row[..self.hs].copy_from_slice(&src[from..from + self.hs]);
        }
    }

    /// dst (hs, ld) ← the transpose of the head's q, k or v, zero-padded past column t.
    /// Blocks of NR rows keep both the reads and the writes within a few cache lines.
    fn gather_cols(&self, dst: &mut [f32], ld: usize, part: usize) {
        let from = part * self.c + self.col;
        for (blk, rows) in self.x.chunks(NR * 3 * self.c).enumerate() {
            for d in 0..self.hs {
                let out = &mut dst[d * ld + blk * NR..];
                for (o, src) in out.iter_mut().zip(rows.chunks_exact(3 * self.c)) {
                    *o = src[from + d];
                }
            }
        }
    }
}

/// Per-worker buffers, reused from task to task.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    vt: Vec<f32>,
    dy: Vec<f32>,
    p: Vec<f32>,
    dp: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

/// `buf` as `len` zeros.
fn zeroed(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.clear();
    buf.resize(len, 0.0);
    buf
}

/// Defines `$name` to run `$body` (an `#[inline(always)]` function) compiled for the
/// widest vector instructions the CPU has: the kernels above are plain loops over NR lanes,
/// which LLVM vectorises for whatever instruction set the function it lands in may use.
macro_rules! simd_dispatch {
    ($name:ident => $body:ident ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

simd_dispatch!(head_forward => head_forward_body(
    yh: &mut [f32], lse_h: &mut [f32], sc: &mut Scratch, head: &Head<'_>
));
simd_dispatch!(head_backward => head_backward_body(
    dh: &mut [f32], sc: &mut Scratch, head: &Head<'_>, dyb: &[f32], yb: &[f32], lse_h: &[f32]
));

/// y (b, t, c) and lse (b, nh, t) from qkv (b, t, 3c), c = nh·hs. Saves lse for backward.
pub fn attention_forward(
    y: &mut [f32],
    lse: &mut [f32],
    qkv: &[f32],
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
) {
    let c = nh * hs;
    debug_assert!(y.len() == b * t * c && lse.len() == b * nh * t && qkv.len() == b * t * 3 * c);
    if y.is_empty() {
        return;
    }
    with_heads_buffer(b * nh * t * hs, |y_heads| {
        y_heads.par_chunks_mut(t * hs).zip(lse.par_chunks_mut(t)).enumerate().for_each_init(
            Scratch::default,
            |scratch, (task, (yh, lse_h))| {
                let (bi, h) = (task / nh, task % nh);
                let head = Head { x: &qkv[bi * t * 3 * c..(bi + 1) * t * 3 * c], t, c, col: h * hs, hs };
                head_forward(yh, lse_h, scratch, &head);
            },
        );
        heads_to_rows(y, y_heads, t, nh, hs, 1, false);
    });
}

/// One (batch, head): yh (t, hs) and lse_h (t).
#[inline(always)]
fn head_forward_body(yh: &mut [f32], lse_h: &mut [f32], sc: &mut Scratch, head: &Head) {
    let (t, hs) = (head.t, head.hs);
    let (hp, tp) = (round_up(hs), round_up(t));
    let scale = 1.0 / (hs as f32).sqrt();
    let q = zeroed(&mut sc.q, t * hp);
    head.gather_rows(q, hp, 0);
    let kt = zeroed(&mut sc.kt, hp * tp);
    head.gather_cols(kt, tp, 1);
    let v = zeroed(&mut sc.v, t * hp);
    head.gather_rows(v, hp, 2);
    let s = zeroed(&mut sc.p, QUERY_BLOCK * tp);
    let y = zeroed(&mut sc.dq, QUERY_BLOCK * hp);
    for i0 in (0..t).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(t - i0);
        // The tile of queries i0 + r .. i0 + r + mr sees keys 0 .. i0 + r + mr.
        // s (rows, keys) = q_block · kᵀ, unscaled
        matmul_rows(rows, s, tp, &q[i0 * hp..], (hp, 1), kt, tp, false, |r, mr| {
            (round_up(i0 + r + mr), (0, hs))
        });
        for (r, row) in s.chunks_exact_mut(tp).take(rows).enumerate() {
            let (p, masked) = row[..i0 + rows].split_at_mut(i0 + r + 1);
            let m = max(p);
            let sum = exp_sum(p, scale, scale * m); // exp(scale·s − scale·max)
            lse_h[i0 + r] = scale * m + sum.ln();
            let inv_sum = 1.0 / sum;
            p.iter_mut().for_each(|e| *e *= inv_sum);
            masked.fill(0.0);
        }
        // y_block (rows, hs) = P · v
        matmul_rows(rows, y, hp, s, (tp, 1), v, hp, false, |r, mr| (hp, (0, i0 + r + mr)));
        for (dst, src) in yh[i0 * hs..].chunks_exact_mut(hs).zip(y.chunks_exact(hp)).take(rows) {
            dst.copy_from_slice(&src[..hs]);
        }
    }
}

thread_local! {
    /// The head-major buffer of the last call on this thread, kept so that steady-state
    /// steps do not allocate it again.
    static HEADS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a buffer of `len` values with unspecified contents (the caller writes every
/// one), reused from call to call on this thread.
fn with_heads_buffer<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = HEADS.take();
    buf.resize(len, 0.0);
    let out = f(&mut buf);
    HEADS.set(buf);
    out
}

/// Copies (or adds) a head-major buffer (b, nh, parts, t, hs) into rows (b, t, parts·c):
/// part p of head h lands at columns p·c + h·hs. Parallel over rows.
fn heads_to_rows(out: &mut [f32], heads: &[f32], t: usize, nh: usize, hs: usize, parts: usize, add: bool) {
    let c = nh * hs;
    out.par_chunks_mut(parts * c).enumerate().for_each(|(row, dst)| {
        let (bi, i) = (row / t, row % t);
        for h in 0..nh {
            for p in 0..parts {
                let src = &heads[(((bi * nh + h) * parts + p) * t + i) * hs..][..hs];
                let dst = &mut dst[p * c + h * hs..][..hs];
                if add {
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
    });
}

/// Given dy = ∂L/∂y (b, t, c), accumulates dqkv (b, t, 3c) += ∂L/∂qkv (or, unless
/// `accumulate`, overwrites dqkv with it). Needs qkv, the
/// forward's output y and its saved lse. With dS = ∂L/∂S:
///
/// ```text
/// y_i = Σ_j P_ij v_j              ⇒  dv_j += Σ_i P_ij dy_i,   dP_ij = dy_i · v_j
/// P_ij = softmax_j(S_ij)          ⇒  dS_ij = P_ij (dP_ij − D_i),  D_i = Σ_j P_ij dP_ij = dy_i · y_i
/// S_ij = q_i · k_j / √hs          ⇒  dq_i = Σ_j dS_ij k_j / √hs,  dk_j = Σ_i dS_ij q_i / √hs
/// ```
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    y: &[f32],
    lse: &[f32],
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
    accumulate: bool,
) {
    let c = nh * hs;
    debug_assert!(dqkv.len() == b * t * 3 * c && qkv.len() == dqkv.len());
    debug_assert!(dy.len() == b * t * c && y.len() == dy.len() && lse.len() == b * nh * t);
    if dy.is_empty() {
        return;
    }
    // Each task owns one head's dq, dk, dv: (b, nh, 3, t, hs), added into dqkv at the end.
    with_heads_buffer(b * nh * 3 * t * hs, |d_heads| {
        d_heads.par_chunks_mut(3 * t * hs).enumerate().for_each_init(
            Scratch::default,
            |scratch, (task, dh)| {
                let (bi, h) = (task / nh, task % nh);
                let head = Head { x: &qkv[bi * t * 3 * c..(bi + 1) * t * 3 * c], t, c, col: h * hs, hs };
                let (dyb, yb) = (&dy[bi * t * c..(bi + 1) * t * c], &y[bi * t * c..(bi + 1) * t * c]);
                let lse_h = &lse[task * t..(task + 1) * t];
                head_backward(dh, scratch, &head, dyb, yb, lse_h);
            },
        );
        heads_to_rows(dqkv, d_heads, t, nh, hs, 3, accumulate);
    });
}

/// One (batch, head): dh = [dq | dk | dv], each (t, hs), from this batch element's dy and
/// y (t, c) and the head's lse_h (t).
#[inline(always)]
fn head_backward_body(dh: &mut [f32], sc: &mut Scratch, head: &Head, dyb: &[f32], yb: &[f32], lse_h: &[f32]) {
    let (t, c, col, hs) = (head.t, head.c, head.col, head.hs);
    let (hp, tp) = (round_up(hs), round_up(t));
    let scale = 1.0 / (hs as f32).sqrt();
    let q = zeroed(&mut sc.q, t * hp);
    head.gather_rows(q, hp, 0);
    let k = zeroed(&mut sc.k, t * hp);
    head.gather_rows(k, hp, 1);
    let kt = zeroed(&mut sc.kt, hp * tp);
    head.gather_cols(kt, tp, 1);
    let vt = zeroed(&mut sc.vt, hp * tp);
    head.gather_cols(vt, tp, 2);
    let dy = zeroed(&mut sc.dy, t * hp);
    for (dst, src) in dy.chunks_exact_mut(hp).zip(dyb.chunks_exact(c)) {
        dst[..hs].copy_from_slice(&src[col..col + hs]);
    }
    let (p, dp) = (zeroed(&mut sc.p, QUERY_BLOCK * tp), zeroed(&mut sc.dp, QUERY_BLOCK * tp));
    let (dq, dk, dv) = (zeroed(&mut sc.dq, t * hp), zeroed(&mut sc.dk, t * hp), zeroed(&mut sc.dv, t * hp));
    for i0 in (0..t).step_by(QUERY_BLOCK) {
        let (rows, keys) = (QUERY_BLOCK.min(t - i0), (i0 + QUERY_BLOCK).min(t));
        let seen = |r: usize, mr: usize| (round_up(i0 + r + mr), (0, hs));
        // s (rows, keys) = q_block · kᵀ, then P; dP (rows, keys) = dy_block · vᵀ
        matmul_rows(rows, p, tp, &q[i0 * hp..], (hp, 1), kt, tp, false, seen);
        matmul_rows(rows, dp, tp, &dy[i0 * hp..], (hp, 1), vt, tp, false, seen);
        for (r, (prow, dprow)) in p.chunks_exact_mut(tp).zip(dp.chunks_exact_mut(tp)).take(rows).enumerate() {
            let i = i0 + r;
            let (visible, masked) = prow[..keys].split_at_mut(i + 1);
            exp_sum(visible, scale, lse_h[i]); // P_ij = exp(scale·s_ij − lse_i)
            masked.fill(0.0);
            let d = dot(&dy[i * hp..][..hs], &yb[i * c + col..][..hs]);
            // dS_ij · scale, where the scale is the score's ∂S/∂(q·k)
            let (ds_visible, ds_masked) = dprow[..keys].split_at_mut(i + 1);
            ds_visible.iter_mut().zip(visible.iter()).for_each(|(g, &pij)| *g = pij * (*g - d) * scale);
            ds_masked.fill(0.0);
        }
        // dq_block (rows, hs) = dS · k
        matmul_rows(rows, &mut dq[i0 * hp..], hp, dp, (tp, 1), k, hp, false, |r, mr| (hp, (0, i0 + r + mr)));
        // dk (keys, hs) += dSᵀ · q_block and dv (keys, hs) += Pᵀ · dy_block; key j gets
        // contributions from queries i ≥ j only
        let from = |j: usize, _: usize| (hp, (j.saturating_sub(i0), rows));
        matmul_rows(keys, dk, hp, dp, (1, tp), &q[i0 * hp..], hp, true, from);
        matmul_rows(keys, dv, hp, p, (1, tp), &dy[i0 * hp..], hp, true, from);
    }
    for (part, src) in [&*dq, &*dk, &*dv].into_iter().enumerate() {
        for (dst, s) in dh[part * t * hs..(part + 1) * t * hs].chunks_exact_mut(hs).zip(src.chunks_exact(hp))
        {
            dst.copy_from_slice(&s[..hs]);
        }
    }
}

/// The forward as plain loops, one query at a time: y (b, t, c) from qkv (b, t, 3c).
pub fn attention_reference(y: &mut [f32], qkv: &[f32], b: usize, t: usize, nh: usize, hs: usize) {
    let c = nh * hs;
    let scale = 1.0 / (hs as f32).sqrt();
    let mut p = vec![0.0f32; t];
    for bi in 0..b {
        let at = |i: usize, col: usize| (bi * t + i) * 3 * c + col;
        for h in 0..nh {
            for i in 0..t {
                for (j, pj) in p.iter_mut().enumerate().take(i + 1) {
                    let qk: f32 = (0..hs).map(|d| qkv[at(i, h * hs + d)] * qkv[at(j, c + h * hs + d)]).sum();
                    *pj = qk * scale;
                }
                let m = p[..=i].iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                p[..=i].iter_mut().for_each(|s| *s = (*s - m).exp());
                let sum: f32 = p[..=i].iter().sum();
                for d in 0..hs {
                    let yd: f32 = (0..=i).map(|j| p[j] * qkv[at(j, 2 * c + h * hs + d)]).sum();
                    y[(bi * t + i) * c + h * hs + d] = yd / sum;
                }
            }
        }
    }
}

/// The backward as plain loops over the full (t × t) probabilities of each head,
/// computing D_i = Σ_j P_ij dP_ij directly: dqkv (b, t, 3c) += ∂L/∂qkv given dy (b, t, c).
pub fn attention_backward_reference(
    dqkv: &mut [f32],
    dy: &[f32],
    qkv: &[f32],
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
) {
    let c = nh * hs;
    let scale = 1.0 / (hs as f32).sqrt();
    let dot = |at_a: usize, at_b: usize, src_b: &[f32]| -> f32 {
        (0..hs).map(|d| qkv[at_a + d] * src_b[at_b + d]).sum()
    };
    for bi in 0..b {
        let at = |i: usize, col: usize| (bi * t + i) * 3 * c + col;
        for h in 0..nh {
            let (q, k, v) = (h * hs, c + h * hs, 2 * c + h * hs);
            for i in 0..t {
                let dyi = (bi * t + i) * c + h * hs;
                let mut p: Vec<f32> = (0..=i).map(|j| dot(at(i, q), at(j, k), qkv) * scale).collect();
                let m = p.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                p.iter_mut().for_each(|s| *s = (*s - m).exp());
                let sum: f32 = p.iter().sum();
                p.iter_mut().for_each(|s| *s /= sum);
                let dp: Vec<f32> = (0..=i).map(|j| dot(at(j, v), dyi, dy)).collect();
                let d: f32 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
                for j in 0..=i {
                    let ds = p[j] * (dp[j] - d) * scale;
                    for e in 0..hs {
                        dqkv[at(i, q + e)] += ds * qkv[at(j, k + e)];
                        dqkv[at(j, k + e)] += ds * qkv[at(i, q + e)];
                        dqkv[at(j, v + e)] += p[j] * dy[dyi + e];
                    }
                }
            }
        }
    }
}

impl Tape {
    /// qkv (b, t, 3c) holding q, k, v side by side, each split into `n_head` heads → (b, t, c).
    pub fn attention(&mut self, qkv: TensorId, n_head: usize) -> TensorId {
        let shape = self.shape(qkv).to_vec();
        assert!(
            shape.len() == 3 && shape[2].is_multiple_of(3),
            "attention: qkv is {shape:?}; expected (b, t, 3c) with q, k, v side by side"
        );
        let (b, t, c) = (shape[0], shape[1], shape[2] / 3);
        assert!(
            n_head > 0 && c > 0 && c % n_head == 0,
            "attention: qkv is {shape:?} (c = {c}) but n_head = {n_head}; c must be a positive multiple of n_head"
        );
        let (nh, hs) = (n_head, c / n_head);
        let out = self.alloc(&[b, t, c], self.any_needs_grad(&[qkv]));
        let lse = self.alloc(&[b, nh, t], false);
        let (ins, outs) = self.split_at_mut(out);
        let (y, rest) = outs.split_at_mut(1);
        attention_forward(&mut y[0].data, &mut rest[0].data, &ins[qkv.0].data, b, t, nh, hs);
        self.record(Op::Attention { b, t, nh, hs }, &[qkv], out, &[lse], &[]);
        out
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    grads: &mut Grads,
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
) {
    let qkv = rec.inputs[0];
    if !tape.needs_grad(qkv) {
        return;
    }
    let dy = grads.take(rec.output);
    let (x, y, lse) = (tape.data(qkv), tape.data(rec.output), tape.data(rec.saved[0]));
    let (dqkv, accumulate) = grads.slot_to_write(qkv, x.len());
    attention_backward(dqkv, &dy, x, y, lse, b, t, nh, hs, accumulate);
    grads.put(rec.output, dy);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    fn assert_close(name: &str, fast: &[f32], slow: &[f32], tol: f32) {
        assert_eq!(fast.len(), slow.len());
        for (i, (a, b)) in fast.iter().zip(slow).enumerate() {
            assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{name}: index {i}: fast {a} vs reference {b}");
        }
    }

    #[test]
    fn attention_matches_reference_across_query_blocks() {
        let mut rng = Rng::seeded(7);
        // t spans several query blocks and ends mid-block; hs is not a multiple of 8.
        for &(b, t, nh, hs) in &[(2, 1, 1, 3), (2, 5, 3, 4), (2, 150, 3, 12), (1, 64, 2, 16)] {
            let c = nh * hs;
            let qkv = Tensor::randn(&[b, t, 3 * c], 1.5, &mut rng);
            let (mut y, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
            attention_forward(&mut y, &mut lse, &qkv.data, b, t, nh, hs);
            let mut y_ref = vec![0.0; b * t * c];
            attention_reference(&mut y_ref, &qkv.data, b, t, nh, hs);
            assert_close("attention forward", &y, &y_ref, 1e-5);

            let dy = Tensor::randn(&[b, t, c], 1.0, &mut rng);
            let (mut dqkv, mut dqkv_ref) = (vec![0.5; b * t * 3 * c], vec![0.5; b * t * 3 * c]);
            attention_backward(&mut dqkv, &dy.data, &qkv.data, &y, &lse, b, t, nh, hs, true);
            attention_backward_reference(&mut dqkv_ref, &dy.data, &qkv.data, b, t, nh, hs);
            assert_close("attention backward", &dqkv, &dqkv_ref, 1e-4);
        }
    }

    #[test]
    fn attention_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(2);
        let qkv = Tensor::randn(&[2, 7, 3 * 6], 1.0, &mut rng);
        gradcheck("attention", &[&qkv], |tape, x| tape.attention(x[0], 2));
        // Past one query block, so the blocked recomputation is checked too.
        let qkv = Tensor::randn(&[1, QUERY_BLOCK + 5, 3 * 4], 1.0, &mut rng);
        gradcheck("attention (two query blocks)", &[&qkv], |tape, x| tape.attention(x[0], 2));
    }

    #[test]
    fn simd_and_portable_builds_give_the_same_bits() {
        let mut rng = Rng::seeded(9);
        let (t, c, hs) = (QUERY_BLOCK + 7, 24, 12);
        let qkv = Tensor::randn(&[t, 3 * c], 1.0, &mut rng);
        let dy = Tensor::randn(&[t, c], 1.0, &mut rng);
        let head = Head { x: &qkv.data, t, c, col: hs, hs };
        let run = |simd: bool| {
            let (mut yh, mut lse, mut sc) = (vec![0.0; t * hs], vec![0.0; t], Scratch::default());
            let mut dh = vec![0.0; 3 * t * hs];
            // y in the (t, c) layout that backward reads; only this head's columns matter.
            let mut y = vec![0.0; t * c];
            if simd {
                head_forward(&mut yh, &mut lse, &mut sc, &head);
            } else {
                head_forward_body(&mut yh, &mut lse, &mut sc, &head);
            }
            for (row, src) in y.chunks_exact_mut(c).zip(yh.chunks_exact(hs)) {
                row[hs..2 * hs].copy_from_slice(src);
            }
            if simd {
                head_backward(&mut dh, &mut sc, &head, &dy.data, &y, &lse);
            } else {
                head_backward_body(&mut dh, &mut sc, &head, &dy.data, &y, &lse);
            }
            [yh, lse, dh].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
        };
        assert!(run(true) == run(false), "attention: the SIMD and portable builds differ");
    }

    #[test]
    fn first_position_attends_only_to_itself() {
        let mut rng = Rng::seeded(3);
        let qkv = Tensor::randn(&[1, 4, 3 * 8], 1.0, &mut rng);
        let (mut y, mut lse) = (vec![0.0; 4 * 8], vec![0.0; 2 * 4]);
        attention_forward(&mut y, &mut lse, &qkv.data, 1, 4, 2, 4);
        assert_close("y_0 = v_0", &y[..8], &qkv.data[16..24], 1e-6);
    }

    #[test]
    #[should_panic(expected = "attention: qkv is [2, 3, 12] (c = 4) but n_head = 3")]
    fn attention_rejects_heads_that_do_not_divide_c() {
        let mut tape = Tape::new();
        let x = tape.constant(&[2, 3, 12], &[0.0; 72]);
        tape.attention(x, 3);
    }
}
