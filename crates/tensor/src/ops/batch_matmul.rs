//! Batched matmul: `out[i] = a[i] · b[i]` (or `a[i] · b[i]ᵀ`), one GEMM per batch element,
//! for the unfused form of attention (q · kᵀ, then probs · v). The batch elements run in
//! parallel; each output element is computed by one GEMM call with a fixed order of
//! additions, so results do not depend on the thread count.

use crate::gemm::{gemm, Mat};
use crate::grads::Grads;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// `out[i] = a[i] · b[i]`, or `a[i] · b[i]ᵀ` when `transpose_b`.
/// a: (batch, m, k)  b: (batch, k, n), or (batch, n, k) when `transpose_b`  →  out:
/// (batch, m, n). Saves nothing (backward reads a and b).
#[allow(clippy::too_many_arguments)]
pub fn batch_matmul_forward(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
) {
    debug_assert!(out.len() == batch * m * n && a.len() == batch * m * k && b.len() == batch * k * n);
    if m * n == 0 {
        return;
    }
    out.par_chunks_mut(m * n).enumerate().for_each(|(i, out)| {
        let (ai, bi) = (&a[i * m * k..(i + 1) * m * k], &b[i * k * n..(i + 1) * k * n]);
        gemm(m, k, n, Mat::rows(ai, k), b_operand(bi, k, n, transpose_b), out, false);
    });
}

/// b[i] as a (k × n) operand: itself, or the transpose of a row-major (n × k) matrix.
fn b_operand(bi: &[f32], k: usize, n: usize, transpose_b: bool) -> Mat<'_> {
    if transpose_b {
        Mat::transposed(bi, k)
    } else {
        Mat::rows(bi, n)
    }
}

/// Backward of `out[i] = a[i] · B[i]`, where `B[i]` is `b[i]` or `b[i]ᵀ`. Given dout
/// (batch, m, n), accumulates (each optional)
///
/// ```text
/// da[i] (m, k) += dout[i] · B[i]ᵀ
/// db[i]        += a[i]ᵀ · dout[i]  (k, n),  or its transpose doutᵀ[i] · a[i] (n, k)
///                 when transpose_b
/// ```
///
/// a, b: as in forward.
#[allow(clippy::too_many_arguments)]
pub fn batch_matmul_backward(
    da: Option<&mut [f32]>,
    db: Option<&mut [f32]>,
    dout: &[f32],
    a: &[f32],
    b: &[f32],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
) {
    debug_assert!(dout.len() == batch * m * n && a.len() == batch * m * k && b.len() == batch * k * n);
    if m * k == 0 || k * n == 0 {
        return;
    }
    if let Some(da) = da {
        da.par_chunks_mut(m * k).enumerate().for_each(|(i, da)| {
            let (di, bi) = (&dout[i * m * n..(i + 1) * m * n], &b[i * k * n..(i + 1) * k * n]);
            // B[i]ᵀ is (n × k): b[i] read transposed, or b[i] itself when it is stored (n, k).
            let bt = if transpose_b { Mat::rows(bi, k) } else { Mat::transposed(bi, n) };
            gemm(m, n, k, Mat::rows(di, n), bt, da, true);
        });
    }
    if let Some(db) = db {
        db.par_chunks_mut(k * n).enumerate().for_each(|(i, db)| {
            let (di, ai) = (&dout[i * m * n..(i + 1) * m * n], &a[i * m * k..(i + 1) * m * k]);
            if transpose_b {
                gemm(n, m, k, Mat::transposed(di, n), Mat::rows(ai, k), db, true);
            } else {
                gemm(k, m, n, Mat::transposed(ai, k), Mat::rows(di, n), db, true);
            }
        });
    }
}

impl Tape {
    /// a (batch, m, k) · b (batch, k, n) → (batch, m, n); with `transpose_b`, b is (batch, n, k).
    /// The batch may span several leading dimensions (e.g. (B, nh)); a and b must agree on them.
    pub fn batch_matmul(&mut self, a: TensorId, b: TensorId, transpose_b: bool) -> TensorId {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let r = sa.len();
        assert!(
            r >= 3 && sb.len() == r && sa[..r - 2] == sb[..r - 2],
            "batch_matmul: a is {sa:?} but b is {sb:?}; both need the same leading (batch) dimensions"
        );
        let (m, k) = (sa[r - 2], sa[r - 1]);
        let (bk, n) = if transpose_b { (sb[r - 1], sb[r - 2]) } else { (sb[r - 2], sb[r - 1]) };
        assert!(
            bk == k,
            "batch_matmul: a is {sa:?} but b is {sb:?} (transpose_b = {transpose_b}); inner dims {k} ≠ {bk}"
        );
        let batch: usize = sa[..r - 2].iter().product();
        let mut out_shape = sa[..r - 2].to_vec();
        out_shape.extend([m, n]);
        let out = self.alloc(&out_shape, self.any_needs_grad(&[a, b]));
        let (ins, outs) = self.split_at_mut(out);
        batch_matmul_forward(&mut outs[0].data, &ins[a.0].data, &ins[b.0].data, batch, m, k, n, transpose_b);
        self.record(Op::BatchMatmul { batch, m, k, n, transpose_b }, &[a, b], out, &[], &[]);
        out
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    dout: &[f32],
    grads: &mut Grads,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
) {
    let (a, b) = (rec.inputs[0], rec.inputs[1]);
    let (ad, bd) = (tape.data(a), tape.data(b));
    // One input at a time, so batch_matmul(x, x, true) accumulates both paths into x.
    if tape.needs_grad(a) {
        let da = grads.slot(a, batch * m * k);
        batch_matmul_backward(Some(da), None, dout, ad, bd, batch, m, k, n, transpose_b);
    }
    if tape.needs_grad(b) {
        let db = grads.slot(b, batch * k * n);
        batch_matmul_backward(None, Some(db), dout, ad, bd, batch, m, k, n, transpose_b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn batch_matmul_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(13);
        let a = Tensor::randn(&[2, 3, 7, 17], 1.0, &mut rng);
        let b = Tensor::randn(&[2, 3, 17, 5], 1.0, &mut rng);
        let bt = Tensor::randn(&[2, 3, 5, 17], 1.0, &mut rng);
        gradcheck("batch_matmul", &[&a, &b], |tape, t| tape.batch_matmul(t[0], t[1], false));
        gradcheck("batch_matmul (b transposed)", &[&a, &bt], |tape, t| tape.batch_matmul(t[0], t[1], true));
        gradcheck("batch_matmul (x, x)", &[&a], |tape, t| tape.batch_matmul(t[0], t[0], true));
    }

    #[test]
    fn batch_matmul_matches_a_plain_loop() {
        let mut rng = Rng::seeded(14);
        let (batch, m, k, n) = (3, 5, 4, 6);
        let a = Tensor::randn(&[batch, m, k], 1.0, &mut rng);
        let b = Tensor::randn(&[batch, k, n], 1.0, &mut rng);
        let mut out = vec![f32::NAN; batch * m * n];
        batch_matmul_forward(&mut out, &a.data, &b.data, batch, m, k, n, false);
        for i in 0..batch {
            for r in 0..m {
                for j in 0..n {
                    let want: f32 =
                        (0..k).map(|p| a.data[(i * m + r) * k + p] * b.data[(i * k + p) * n + j]).sum();
                    let got = out[(i * m + r) * n + j];
                    assert!((got - want).abs() < 1e-5, "out[{i}, {r}, {j}] = {got}, expected {want}");
                }
            }
        }
    }

    #[test]
    #[should_panic(
        expected = "batch_matmul: a is [2, 4, 8] but b is [2, 9, 3] (transpose_b = false); inner dims 8 ≠ 9"
    )]
    fn batch_matmul_panics_on_inner_dim_mismatch() {
        let mut tape = Tape::new();
        let a = tape.constant(&[2, 4, 8], &[0.0; 64]);
        let b = tape.constant(&[2, 9, 3], &[0.0; 54]);
        tape.batch_matmul(a, b, false);
    }
}
