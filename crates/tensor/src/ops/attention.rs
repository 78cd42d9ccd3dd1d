//! Causal self-attention, fused per (batch, head): scores, causal mask, softmax, and the
//! weighted sum of values, computing one block of query rows' scores at a time.
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
//! `lse` (b, nh, t) is always saved. For contexts up to [`SAVE_PROBS_UP_TO`] positions,
//! when a gradient is needed, the forward also saves P itself, (b, nh, t, t rounded up to
//! NR columns), and backward reads it; for longer ones backward recomputes P from q, k and
//! lse, as FlashAttention does, rather than keeping b·nh·t² probabilities alive for the
//! step. (Recomputing costs a fifth product per query block and an exp per score; at
//! t = 256 the saved P of a GPT-2-small layer is 3 MiB per sequence.)
//!
//! Each (batch, head) is one rayon task. It walks the queries in blocks of `QUERY_BLOCK`
//! rows, whose scores live in a per-thread scratch of `QUERY_BLOCK × t`. Every product
//! (q·kᵀ and P·v, and backward's four, or five when it recomputes P) runs on one small register-tiled kernel,
//! `matmul_tile`, that reads its left operand with any strides and skips what the causal
//! mask zeroes: a tile of queries ending at row i touches keys 0..=i only. Its right
//! operand is row-major in blocks of NR columns: k and v transposed are copied into
//! zero-padded buffers, and q, k, v and dy are read in place from qkv and dy when hs is a
//! multiple of NR (else copied, zero-padded). Calling `crate::gemm` per block instead was
//! about twice as slow, because a general GEMM packs both operands on every call, and here
//! one of the dimensions is only hs.
//! Each task writes its head's columns of y (or dqkv) directly: the tasks share the output
//! but never the same elements.
//! [`attention_reference`] and [`attention_backward_reference`] are the same math as
//! plain loops, kept to test the fast path against.

use crate::grads::Grads;
use crate::ops::exp::exp;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;
use std::cell::RefCell;

/// Queries per score block: a task's scratch holds at most `QUERY_BLOCK × t` scores.
const QUERY_BLOCK: usize = 64;
/// Longest context whose probabilities the forward saves for backward. P holds nh·t values
/// per token and layer against roughly 20·c for the other activations, so with heads of 64
/// (c = 64·nh) it adds at most a fifth to a step's memory, and less for shorter contexts.
pub const SAVE_PROBS_UP_TO: usize = 256;
/// Columns per register tile of [`matmul_tile`]: two AVX2 vectors, one AVX-512 vector.
const NR: usize = 16;
/// Rows per register tile: MR × NR accumulators stay in registers.
const MR: usize = 6;
/// Columns per pass of [`matmul_rows`] over the rows.
const COL_BLOCK: usize = 64;

fn round_up(x: usize) -> usize {
    x.div_ceil(NR) * NR
}

/// Columns n0..n of C (ROWS × n) (+)= A · B over the contraction range k0..k1:
///
/// ```text
/// c[r·ldc + j] (+)= Σ_{p ∈ k0..k1} a[r·ars + p·acs] · b[p·ldb + j]     r < ROWS, n0 ≤ j < n
/// ```
///
/// A is read one scalar at a time with any strides (so a transpose costs nothing), B is
/// row-major and read NR values at a time, and n0, n are multiples of NR (B and C are padded).
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
    (n0, n): (usize, usize),
    (k0, k1): (usize, usize),
    accumulate: bool,
) {
    if k0 >= k1 || n0 >= n {
        if !accumulate && n0 < n {
            (0..ROWS).for_each(|r| c[r * ldc + n0..r * ldc + n].fill(0.0));
        }
        return;
    }
    // Every index read below is at most one of these, checked once here rather than in the loop.
    assert!(
        n0.is_multiple_of(NR)
            && n.is_multiple_of(NR)
            && (ROWS - 1) * ars + (k1 - 1) * acs < a.len()
            && (k1 - 1) * ldb + n <= b.len()
            && (ROWS - 1) * ldc + n <= c.len(),
        "attention matmul_tile: operands too short for {ROWS} rows, n = {n}, k = {k0}..{k1}"
    );
    for j0 in (n0..n).step_by(NR) {
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
    lane_sum(acc)
}

/// Σ of the NR lanes, as a tree of halves (short dependency chains, and it vectorises).
#[inline(always)]
fn lane_sum(mut lanes: [f32; NR]) -> f32 {
    let mut w = NR / 2;
    while w > 0 {
        (0..w).for_each(|l| lanes[l] += lanes[l + w]);
        w /= 2;
    }
    lanes[0]
}

/// The largest of the NR lanes.
#[inline(always)]
fn lane_max(mut lanes: [f32; NR]) -> f32 {
    let mut w = NR / 2;
    while w > 0 {
        (0..w).for_each(|l| lanes[l] = if lanes[l + w] > lanes[l] { lanes[l + w] } else { lanes[l] });
        w /= 2;
    }
    lanes[0]
}

/// Rows 0..m of C (+)= A · B, in tiles of MR rows and a last tile of the rows left over.
/// `bounds(i, rows)` gives, for the tile of `rows` rows starting at row i, the columns n to
/// compute and the contraction range (k0, k1): causal products skip what the mask zeroes.
/// The columns go in blocks of [`COL_BLOCK`], each through every tile, so that the block of
/// B in use stays in the L1 cache.
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
    let mut n0 = 0;
    loop {
        let mut more = false;
        for i in (0..m).step_by(MR) {
            let rows = MR.min(m - i);
            let (n, k) = bounds(i, rows);
            let cols = (n0, n.min(n0 + COL_BLOCK));
            more |= n > n0 + COL_BLOCK;
            let (c, a) = (&mut c[i * ldc..], &a[i * ars..]);
            match rows {
                MR => matmul_tile::<MR>(c, ldc, a, (ars, acs), b, ldb, cols, k, accumulate),
                1 => matmul_tile::<1>(c, ldc, a, (ars, acs), b, ldb, cols, k, accumulate),
                2 => matmul_tile::<2>(c, ldc, a, (ars, acs), b, ldb, cols, k, accumulate),
                3 => matmul_tile::<3>(c, ldc, a, (ars, acs), b, ldb, cols, k, accumulate),
                4 => matmul_tile::<4>(c, ldc, a, (ars, acs), b, ldb, cols, k, accumulate),
                _ => matmul_tile::<5>(c, ldc, a, (ars, acs), b, ldb, cols, k, accumulate),
            }
        }
        if !more {
            return;
        }
        n0 += COL_BLOCK;
    }
}

/// Rows of a row-major matrix (`ld` values each) that several tasks write at the same time,
/// each to elements no other task touches: each (batch, head) writes its own columns.
#[derive(Clone, Copy)]
struct SharedRows {
    ptr: *mut f32,
    len: usize,
    ld: usize,
}

// SAFETY: a SharedRows only hands out slices through `segment`, whose callers guarantee
// that no two threads access the same elements.
unsafe impl Send for SharedRows {}
unsafe impl Sync for SharedRows {}

impl SharedRows {
    fn new(m: &mut [f32], ld: usize) -> Self {
        SharedRows { ptr: m.as_mut_ptr(), len: m.len(), ld }
    }

    /// The n rows from row i0 on.
    fn rows_from(self, i0: usize, n: usize) -> SharedRows {
        assert!((i0 + n) * self.ld <= self.len, "attention: rows out of bounds");
        SharedRows { ptr: self.ptr.wrapping_add(i0 * self.ld), len: n * self.ld, ld: self.ld }
    }

    /// Elements col..col + n of row i.
    ///
    /// # Safety
    /// While the slice lives, no other thread may read or write these elements.
    #[allow(clippy::mut_from_ref)]
    unsafe fn segment(&self, i: usize, col: usize, n: usize) -> &mut [f32] {
        let at = i * self.ld + col;
        assert!(col + n <= self.ld && at + n <= self.len, "attention: row segment out of bounds");
        // SAFETY: in bounds, checked above; exclusive, by the caller's guarantee.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(at), n) }
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
    /// q, k or v (`part` 0, 1, 2) as a row-major right operand of [`matmul_tile`] and its
    /// row stride: in place in qkv when hs is a multiple of NR, else copied into `buf`.
    fn rows<'a>(&'a self, part: usize, buf: &'a mut Vec<f32>) -> (&'a [f32], usize) {
        rows_operand(self.x, 3 * self.c, part * self.c + self.col, self.t, self.hs, buf)
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

/// Columns col..col + hs of the t rows of x (row stride ld) as a row-major operand whose
/// width is a multiple of NR: x itself when hs is one, else a zero-padded copy in `buf`.
fn rows_operand<'a>(
    x: &'a [f32],
    ld: usize,
    col: usize,
    t: usize,
    hs: usize,
    buf: &'a mut Vec<f32>,
) -> (&'a [f32], usize) {
    if hs.is_multiple_of(NR) {
        return (&x[col..], ld);
    }
    let hp = round_up(hs);
    let dst = zeroed(buf, t * hp);
    for (row, src) in dst.chunks_exact_mut(hp).zip(x.chunks(ld)) {
        row[..hs].copy_from_slice(&src[col..col + hs]);
    }
    (dst, hp)
}

/// Per-thread buffers, reused from task to task and call to call.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    kt: Vec<f32>,
    v: Vec<f32>,
    vt: Vec<f32>,
    dy: Vec<f32>,
    y: Vec<f32>,
    p: Vec<f32>,
    dp: Vec<f32>,
    dq: Vec<f32>,
    dk: Vec<f32>,
    dv: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// `buf` as `len` zeros.
fn zeroed(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.clear();
    buf.resize(len, 0.0);
    buf
}

/// `buf` as `len` values with unspecified (but initialised) contents, for buffers whose
/// every element read is first written.
fn reused(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.resize(len, 0.0);
    &mut buf[..len]
}

// The kernels above are plain loops over NR lanes, vectorised for the instruction set of
// each variant.
crate::simd::simd_dispatch!(fn head_forward => head_forward_body(
    y: SharedRows, lse_h: &mut [f32], probs_h: Option<&mut [f32]>, sc: &mut Scratch, head: &Head<'_>
));
crate::simd::simd_dispatch!(fn head_backward => head_backward_body(
    dqkv: SharedRows, accumulate: bool, sc: &mut Scratch, head: &Head<'_>, dyb: &[f32], fwd: &Forward<'_>
));

/// What the forward left for backward, for one (batch, head): the batch element's y (t, c),
/// the head's lse (t) and, when it saved them, its probabilities.
struct Forward<'a> {
    y: &'a [f32],
    lse: &'a [f32],
    probs: Option<&'a [f32]>,
}

/// Values of the saved probabilities of one (batch, head): t rows of t rounded up to NR.
pub fn probs_per_head(t: usize) -> usize {
    t * round_up(t)
}

/// y (b, t, c) and lse (b, nh, t) from qkv (b, t, 3c), c = nh·hs, and, when `probs` is
/// given, the probabilities P (b, nh, t, t rounded up to NR; zero past each row's keys).
#[allow(clippy::too_many_arguments)]
pub fn attention_forward(
    y: &mut [f32],
    lse: &mut [f32],
    probs: Option<&mut [f32]>,
    qkv: &[f32],
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
) {
    let c = nh * hs;
    assert!(y.len() == b * t * c && lse.len() == b * nh * t && qkv.len() == b * t * 3 * c);
    assert!(
        probs.as_ref().is_none_or(|p| p.len() == b * nh * probs_per_head(t)),
        "attention: probs of the wrong size"
    );
    if y.is_empty() {
        return;
    }
    let y = SharedRows::new(y, c);
    let mut probs_h: Vec<Option<&mut [f32]>> = match probs {
        Some(p) => p.chunks_mut(probs_per_head(t)).map(Some).collect(),
        None => (0..b * nh).map(|_| None).collect(),
    };
    lse.par_chunks_mut(t).zip(probs_h.par_iter_mut()).enumerate().for_each(|(task, (lse_h, probs_h))| {
        let (bi, h) = (task / nh, task % nh);
        let head = Head { x: &qkv[bi * t * 3 * c..(bi + 1) * t * 3 * c], t, c, col: h * hs, hs };
        let probs_h = probs_h.as_deref_mut();
        SCRATCH.with_borrow_mut(|sc| head_forward(y.rows_from(bi * t, t), lse_h, probs_h, sc, &head));
    });
}

/// Softmax over row i of a score block, whose first `len` (a multiple of NR, > i) scores
/// are computed: keeps exp(scale·s_j − scale·max) for keys j ≤ i, zeroes the rest up to
/// `zero_to`, and returns (scale·max, Σ_j exp(..)).
#[inline(always)]
fn softmax_row(row: &mut [f32], i: usize, len: usize, zero_to: usize, scale: f32) -> (f32, f32) {
    // Masked scores become −∞ so that the max ignores them; exp turns them into zeros below.
    row[i + 1..len].fill(f32::NEG_INFINITY);
    let mut lanes = [f32::NEG_INFINITY; NR];
    for chunk in row[..len].chunks_exact(NR) {
        lanes.iter_mut().zip(chunk).for_each(|(m, &s)| *m = if s > *m { s } else { *m });
    }
    let shift = scale * lane_max(lanes);
    let mut sums = [0.0f32; NR];
    for chunk in row[..len].chunks_exact_mut(NR) {
        for (sum, s) in sums.iter_mut().zip(chunk) {
            // exp clamps its argument, so −∞ gives a tiny positive number rather than zero.
            let e = if *s == f32::NEG_INFINITY { 0.0 } else { exp(*s * scale - shift) };
            *s = e;
            *sum += e;
        }
    }
    row[len..zero_to].fill(0.0);
    (shift, lane_sum(sums))
}

/// One (batch, head): its columns of y (t rows of this batch element), lse_h (t) and, when
/// given, its probabilities (t rows of t rounded up to NR).
#[inline(always)]
fn head_forward_body(
    y: SharedRows,
    lse_h: &mut [f32],
    mut probs_h: Option<&mut [f32]>,
    sc: &mut Scratch,
    head: &Head,
) {
    let (t, c, col, hs) = (head.t, head.c, head.col, head.hs);
    let (hp, tp) = (round_up(hs), round_up(t));
    let scale = 1.0 / (hs as f32).sqrt();
    let q = &head.x[col..];
    let kt = zeroed(&mut sc.kt, hp * tp);
    head.gather_cols(kt, tp, 1);
    let (v, ldv) = head.rows(2, &mut sc.v);
    let s = reused(&mut sc.p, QUERY_BLOCK * tp);
    let yblk = reused(&mut sc.y, QUERY_BLOCK * hp);
    let mut inv_sum = [0.0f32; QUERY_BLOCK];
    for i0 in (0..t).step_by(QUERY_BLOCK) {
        let rows = QUERY_BLOCK.min(t - i0);
        // The tile of queries i0 + r .. i0 + r + mr sees keys 0 .. i0 + r + mr.
        // s (rows, keys) = q_block · kᵀ, unscaled
        matmul_rows(rows, s, tp, &q[i0 * 3 * c..], (3 * c, 1), kt, tp, false, |r, mr| {
            (round_up(i0 + r + mr), (0, hs))
        });
        for (r, row) in s.chunks_exact_mut(tp).take(rows).enumerate() {
            let i = i0 + r;
            let (shift, sum) = softmax_row(row, i, round_up(i + 1), round_up(i0 + rows), scale);
            lse_h[i] = shift + sum.ln();
            inv_sum[r] = 1.0 / sum;
        }
        // y_block (rows, hs) = P · v, then each row divided by its sum
        matmul_rows(rows, yblk, hp, s, (tp, 1), v, ldv, false, |r, mr| (hp, (0, i0 + r + mr)));
        for (r, src) in yblk.chunks_exact(hp).take(rows).enumerate() {
            // SAFETY: this task is the only one writing columns col..col + hs of y.
            let dst = unsafe { y.segment(i0 + r, col, hs) };
            dst.iter_mut().zip(src).for_each(|(d, &x)| *d = x * inv_sum[r]);
        }
        if let Some(probs_h) = probs_h.as_deref_mut() {
            for (r, (dst, src)) in
                probs_h[i0 * tp..].chunks_exact_mut(tp).zip(s.chunks_exact(tp)).take(rows).enumerate()
            {
                let keys = i0 + r + 1;
                dst[..keys].iter_mut().zip(src).for_each(|(d, &e)| *d = e * inv_sum[r]);
                dst[keys..].fill(0.0);
            }
        }
    }
}

/// Given dy = ∂L/∂y (b, t, c), accumulates dqkv (b, t, 3c) += ∂L/∂qkv (or, unless
/// `accumulate`, overwrites dqkv with it). Needs qkv, the forward's output y, its saved
/// lse, and its saved probabilities when it kept them (else P is recomputed from q, k and
/// lse). With dS = ∂L/∂S:
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
    probs: Option<&[f32]>,
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
    accumulate: bool,
) {
    let c = nh * hs;
    assert!(dqkv.len() == b * t * 3 * c && qkv.len() == dqkv.len());
    assert!(dy.len() == b * t * c && y.len() == dy.len() && lse.len() == b * nh * t);
    assert!(
        probs.is_none_or(|p| p.len() == b * nh * probs_per_head(t)),
        "attention: probs of the wrong size"
    );
    if dy.is_empty() {
        return;
    }
    let dqkv = SharedRows::new(dqkv, 3 * c);
    lse.par_chunks(t).enumerate().for_each(|(task, lse_h)| {
        let (bi, h) = (task / nh, task % nh);
        let head = Head { x: &qkv[bi * t * 3 * c..(bi + 1) * t * 3 * c], t, c, col: h * hs, hs };
        let (dyb, yb) = (&dy[bi * t * c..(bi + 1) * t * c], &y[bi * t * c..(bi + 1) * t * c]);
        let d_b = dqkv.rows_from(bi * t, t);
        let probs = probs.map(|p| &p[task * probs_per_head(t)..(task + 1) * probs_per_head(t)]);
        let fwd = Forward { y: yb, lse: lse_h, probs };
        SCRATCH.with_borrow_mut(|sc| head_backward(d_b, accumulate, sc, &head, dyb, &fwd));
    });
}

/// dst (=, or += when `add`) `scale` · src.
#[inline(always)]
fn store(dst: &mut [f32], src: &[f32], scale: f32, add: bool) {
    if add {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s * scale);
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s * scale);
    }
}

/// One (batch, head): its columns of dq, dk and dv in dqkv (t rows of this batch element),
/// from this batch element's dy (t, c) and what the forward left.
#[inline(always)]
fn head_backward_body(
    dqkv: SharedRows,
    accumulate: bool,
    sc: &mut Scratch,
    head: &Head,
    dyb: &[f32],
    fwd: &Forward,
) {
    let Forward { y: yb, lse: lse_h, probs: probs_h } = *fwd;
    let (t, c, col, hs) = (head.t, head.c, head.col, head.hs);
    let (hp, tp) = (round_up(hs), round_up(t));
    let scale = 1.0 / (hs as f32).sqrt();
    let (q, ldq) = head.rows(0, &mut sc.q);
    let (k, ldk) = head.rows(1, &mut sc.k);
    let (dy, lddy) = rows_operand(dyb, c, col, t, hs, &mut sc.dy);
    let kt = zeroed(&mut sc.kt, if probs_h.is_some() { 0 } else { hp * tp });
    if probs_h.is_none() {
        head.gather_cols(kt, tp, 1);
    }
    let vt = zeroed(&mut sc.vt, hp * tp);
    head.gather_cols(vt, tp, 2);
    let (p_scratch, dp) = (reused(&mut sc.p, QUERY_BLOCK * tp), reused(&mut sc.dp, QUERY_BLOCK * tp));
    let dq = reused(&mut sc.dq, QUERY_BLOCK * hp);
    let (dk, dv) = (zeroed(&mut sc.dk, t * hp), zeroed(&mut sc.dv, t * hp));
    for i0 in (0..t).step_by(QUERY_BLOCK) {
        let (rows, keys) = (QUERY_BLOCK.min(t - i0), (i0 + QUERY_BLOCK).min(t));
        let seen = |r: usize, mr: usize| (round_up(i0 + r + mr), (0, hs));
        // dP (rows, keys) = dy_block · vᵀ
        matmul_rows(rows, dp, tp, &dy[i0 * lddy..], (lddy, 1), vt, tp, false, seen);
        // P (rows, keys): saved by the forward, or s = q_block · kᵀ then exp(scale·s − lse)
        let p: &[f32] = match probs_h {
            Some(probs_h) => &probs_h[i0 * tp..(i0 + rows) * tp],
            None => {
                matmul_rows(rows, p_scratch, tp, &q[i0 * ldq..], (ldq, 1), kt, tp, false, seen);
                for (r, prow) in p_scratch.chunks_exact_mut(tp).take(rows).enumerate() {
                    let i = i0 + r;
                    let (len, zero_to) = (round_up(i + 1), round_up(keys));
                    prow[..len].iter_mut().for_each(|pij| *pij = exp(*pij * scale - lse_h[i]));
                    prow[i + 1..zero_to].fill(0.0);
                }
                p_scratch
            }
        };
        for (r, (prow, dprow)) in p.chunks_exact(tp).zip(dp.chunks_exact_mut(tp)).take(rows).enumerate() {
            let i = i0 + r;
            let (len, zero_to) = (round_up(i + 1), round_up(keys));
            let d = dot(&dy[i * lddy..][..hs], &yb[i * c + col..][..hs]);
            // dS_ij / scale = P_ij (dP_ij − D_i)
            for (pc, dpc) in prow[..len].chunks_exact(NR).zip(dprow[..len].chunks_exact_mut(NR)) {
                pc.iter().zip(dpc).for_each(|(&pij, g)| *g = pij * (*g - d));
            }
            dprow[i + 1..zero_to].fill(0.0);
        }
        // dq_block (rows, hs) = dS · k, complete for these queries
        matmul_rows(rows, dq, hp, dp, (tp, 1), k, ldk, false, |r, mr| (hp, (0, i0 + r + mr)));
        for (r, src) in dq.chunks_exact(hp).take(rows).enumerate() {
            // SAFETY: this task is the only one writing columns col..col + hs of dq.
            store(unsafe { dqkv.segment(i0 + r, col, hs) }, src, scale, accumulate);
        }
        // dk (keys, hs) += dSᵀ · q_block and dv (keys, hs) += Pᵀ · dy_block; key j gets
        // contributions from queries i ≥ j only
        let from = |j: usize, _: usize| (hp, (j.saturating_sub(i0), rows));
        matmul_rows(keys, dk, hp, dp, (1, tp), &q[i0 * ldq..], ldq, true, from);
        matmul_rows(keys, dv, hp, p, (1, tp), &dy[i0 * lddy..], lddy, true, from);
    }
    for (j, (dkj, dvj)) in dk.chunks_exact(hp).zip(dv.chunks_exact(hp)).enumerate() {
        // SAFETY: this task is the only one writing columns col..col + hs of dk and dv.
        store(unsafe { dqkv.segment(j, c + col, hs) }, dkj, scale, accumulate);
        store(unsafe { dqkv.segment(j, 2 * c + col, hs) }, dvj, 1.0, accumulate);
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
    /// Values of the probabilities [`Tape::attention`] keeps for backward, on a tape that
    /// records gradients, for qkv (b, t, 3c) split into `n_head` heads: P (b, nh, t, t
    /// rounded up) when t ≤ [`SAVE_PROBS_UP_TO`], else none (backward recomputes them).
    pub fn attention_saved_probs(b: usize, t: usize, n_head: usize) -> usize {
        if t <= SAVE_PROBS_UP_TO {
            b * n_head * probs_per_head(t)
        } else {
            0
        }
    }

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
        let needs_grad = self.any_needs_grad(&[qkv]);
        let out = self.alloc(&[b, t, c], needs_grad);
        let lse = self.alloc(&[b, nh, t], false);
        // The probabilities, for backward to read rather than recompute (short contexts).
        let probs =
            (needs_grad && t <= SAVE_PROBS_UP_TO).then(|| self.alloc(&[b, nh, probs_per_head(t)], false));
        let (ins, outs) = self.split_at_mut(out);
        let (y, rest) = outs.split_at_mut(1);
        let (lse_out, probs_out) = rest.split_at_mut(1);
        let probs_out = probs.map(|_| probs_out[0].data.as_mut_slice());
        attention_forward(&mut y[0].data, &mut lse_out[0].data, probs_out, &ins[qkv.0].data, b, t, nh, hs);
        let both;
        let saved = match probs {
            Some(probs) => {
                both = [lse, probs];
                &both[..]
            }
            None => std::slice::from_ref(&lse),
        };
        self.record(Op::Attention { b, t, nh, hs }, &[qkv], out, saved, &[]);
        out
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    dout: &[f32],
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
    let (x, y, lse) = (tape.data(qkv), tape.data(rec.output), tape.data(rec.saved[0]));
    let probs = rec.saved.get(1).map(|&id| tape.data(id));
    let (dqkv, accumulate) = grads.slot_to_write(qkv, x.len());
    attention_backward(dqkv, dout, x, y, lse, probs, b, t, nh, hs, accumulate);
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
            let mut probs = vec![f32::NAN; b * nh * probs_per_head(t)];
            attention_forward(&mut y, &mut lse, Some(&mut probs), &qkv.data, b, t, nh, hs);
            let mut y_ref = vec![0.0; b * t * c];
            attention_reference(&mut y_ref, &qkv.data, b, t, nh, hs);
            assert_close("attention forward", &y, &y_ref, 1e-5);
            let (mut y_alone, mut lse_alone) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
            attention_forward(&mut y_alone, &mut lse_alone, None, &qkv.data, b, t, nh, hs);
            assert!(y_alone == y && lse_alone == lse, "saving the probabilities changes y or lse");

            // Backward with the saved probabilities and with recomputed ones.
            let dy = Tensor::randn(&[b, t, c], 1.0, &mut rng);
            let mut dqkv_ref = vec![0.5; b * t * 3 * c];
            attention_backward_reference(&mut dqkv_ref, &dy.data, &qkv.data, b, t, nh, hs);
            for (name, saved) in [("saved", Some(probs.as_slice())), ("recomputed", None)] {
                let mut dqkv = vec![0.5; b * t * 3 * c];
                attention_backward(&mut dqkv, &dy.data, &qkv.data, &y, &lse, saved, b, t, nh, hs, true);
                assert_close(&format!("attention backward ({name} P)"), &dqkv, &dqkv_ref, 1e-4);
            }
        }
    }

    #[test]
    fn attention_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(2);
        let qkv = Tensor::randn(&[2, 7, 3 * 6], 1.0, &mut rng);
        gradcheck("attention", &[&qkv], |tape, x| tape.attention(x[0], 2));
        // Past one query block, so the blocked loops are checked too.
        let qkv = Tensor::randn(&[1, QUERY_BLOCK + 5, 3 * 4], 1.0, &mut rng);
        gradcheck("attention (two query blocks)", &[&qkv], |tape, x| tape.attention(x[0], 2));
        // Past SAVE_PROBS_UP_TO, so backward recomputes the probabilities.
        let qkv = Tensor::randn(&[1, SAVE_PROBS_UP_TO + 3, 3 * 2], 1.0, &mut rng);
        gradcheck("attention (recomputed probabilities)", &[&qkv], |tape, x| tape.attention(x[0], 1));
    }

    #[test]
    fn simd_and_portable_builds_give_the_same_bits() {
        let mut rng = Rng::seeded(9);
        // hs = 12 runs on zero-padded copies of q, k, v and dy; hs = 32 reads them in place.
        for (c, hs) in [(24, 12), (64, 32)] {
            let t = QUERY_BLOCK + 7;
            let qkv = Tensor::randn(&[t, 3 * c], 1.0, &mut rng);
            let dy = Tensor::randn(&[t, c], 1.0, &mut rng);
            let head = Head { x: &qkv.data, t, c, col: hs, hs };
            let run = |simd: bool, save: bool| {
                let (mut y, mut lse, mut sc) = (vec![0.0; t * c], vec![0.0; t], Scratch::default());
                let mut probs = vec![0.0; probs_per_head(t)];
                let mut dqkv = vec![0.5; t * 3 * c];
                let y_out = SharedRows::new(&mut y, c);
                let probs_out = save.then_some(probs.as_mut_slice());
                if simd {
                    head_forward(y_out, &mut lse, probs_out, &mut sc, &head);
                } else {
                    head_forward_body(y_out, &mut lse, probs_out, &mut sc, &head);
                }
                let d_out = SharedRows::new(&mut dqkv, 3 * c);
                let fwd = Forward { y: &y, lse: &lse, probs: save.then_some(probs.as_slice()) };
                if simd {
                    head_backward(d_out, true, &mut sc, &head, &dy.data, &fwd);
                } else {
                    head_backward_body(d_out, true, &mut sc, &head, &dy.data, &fwd);
                }
                [y, lse, dqkv].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>())
            };
            for save in [true, false] {
                assert!(
                    run(true, save) == run(false, save),
                    "attention: the SIMD and portable builds differ (hs = {hs}, saved P: {save})"
                );
            }
        }
    }

    #[test]
    fn the_tape_keeps_probabilities_only_for_short_contexts_that_need_a_gradient() {
        let saved = |t: usize, no_grad: bool| {
            let mut tape = Tape::new();
            tape.set_no_grad(no_grad);
            let x = tape.variable(&Tensor::zeros(&[1, t, 3 * 4]));
            let y = tape.attention(x, 2);
            let probs = tape.records().last().map(|r| r.saved.len() == 2);
            (probs, tape.len() - y.0 - 1)
        };
        // (a record that saves the probabilities, tensors allocated after the output)
        assert_eq!(saved(SAVE_PROBS_UP_TO, false), (Some(true), 2), "lse and the probabilities");
        assert_eq!(saved(SAVE_PROBS_UP_TO + 1, false), (Some(false), 1), "lse only: backward recomputes");
        assert_eq!(saved(8, true), (None, 1), "no record, lse only: nothing will be differentiated");
    }

    #[test]
    fn first_position_attends_only_to_itself() {
        let mut rng = Rng::seeded(3);
        let qkv = Tensor::randn(&[1, 4, 3 * 8], 1.0, &mut rng);
        let (mut y, mut lse) = (vec![0.0; 4 * 8], vec![0.0; 2 * 4]);
        attention_forward(&mut y, &mut lse, None, &qkv.data, 1, 4, 2, 4);
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
