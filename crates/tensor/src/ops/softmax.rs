//! Row-wise softmax over the last dimension, numerically stable (the row maximum is
//! subtracted before exponentiating, with the vectorised `exp` of [`crate::ops::exp`]).
//! Backward needs only the op's own output.

use crate::grads::Grads;
use crate::ops::elementwise::lane_sum;
use crate::ops::exp::{exp_sum, max};
use crate::ops::{rows_cols, ROW_CHUNK};
use crate::simd::vectorised;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// For each row of x: out_i = exp(x_i − max_j x_j) / Σ_j exp(x_j − max_j x_j).
/// x: (n, c)  →  out: (n, c). Saves nothing beyond out itself, which backward reads.
pub fn softmax_forward(out: &mut [f32], x: &[f32], n: usize, c: usize) {
    debug_assert!(out.len() == n * c && x.len() == n * c);
    if c == 0 {
        return;
    }
    out.par_chunks_mut(ROW_CHUNK * c).zip(x.par_chunks(ROW_CHUNK * c)).for_each(|(out, x)| {
        for (out, x) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)) {
            out.copy_from_slice(x);
            let sum = exp_sum(out, 1.0, max(x));
            let inv = 1.0 / sum;
            vectorised(|| out.iter_mut().for_each(|o| *o *= inv));
        }
    });
}

/// Backward of out = softmax(x) per row: ∂out_j/∂x_i = out_j · (δ_ij − out_i), so
///   dx_i += out_i · (dout_i − Σ_j dout_j · out_j).
/// dout, out: (n, c), out as computed by forward  →  dx: (n, c).
pub fn softmax_backward(dx: &mut [f32], dout: &[f32], out: &[f32], n: usize, c: usize) {
    debug_assert!(dx.len() == n * c && dout.len() == n * c && out.len() == n * c);
    if c == 0 {
        return;
    }
    dx.par_chunks_mut(ROW_CHUNK * c)
        .zip(dout.par_chunks(ROW_CHUNK * c))
        .zip(out.par_chunks(ROW_CHUNK * c))
        .for_each(|((dx, dout), out)| input_grad_rows(dx, dout, out, c));
}

crate::simd::simd_dispatch!(fn input_grad_rows => input_grad_rows_body(dx: &mut [f32], dout: &[f32], out: &[f32], c: usize));

/// dx of a chunk of rows (see [`softmax_backward`]).
#[inline(always)]
fn input_grad_rows_body(dx: &mut [f32], dout: &[f32], out: &[f32], c: usize) {
    let rows = dx.chunks_exact_mut(c).zip(dout.chunks_exact(c)).zip(out.chunks_exact(c));
    for ((dx, dout), out) in rows {
        let dot = lane_sum(dout, out, |d, y| d * y);
        for ((dx, &d), &y) in dx.iter_mut().zip(dout).zip(out) {
            *dx += y * (d - dot);
        }
    }
}

impl Tape {
    /// Softmax over the last dimension of x (..., c) → (..., c).
    pub fn softmax(&mut self, x: TensorId) -> TensorId {
        let xs = self.shape(x).to_vec();
        let (n, c) = rows_cols(&xs);
        let out = self.alloc(&xs, self.any_needs_grad(&[x]));
        let (ins, outs) = self.split_at_mut(out);
        softmax_forward(&mut outs[0].data, &ins[x.0].data, n, c);
        self.record(Op::Softmax { n, c }, &[x], out, &[], &[]);
        out
    }
}

pub(crate) fn backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize, c: usize) {
    let x = rec.inputs[0];
    softmax_backward(grads.slot(x, n * c), dout, tape.data(rec.output), n, c);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn softmax_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(5);
        let x = Tensor::randn(&[7, 37], 1.0, &mut rng);
        gradcheck("softmax", &[&x], |tape, t| tape.softmax(t[0]));
    }

    #[test]
    fn softmax_is_stable_for_large_inputs() {
        let x = [1000.0, 1001.0, 999.0, -1e30];
        let mut out = [f32::NAN; 4];
        softmax_forward(&mut out, &x, 1, 4);
        let e = [(-1.0f32).exp(), 1.0, (-2.0f32).exp(), 0.0];
        let sum: f32 = e.iter().sum();
        for i in 0..4 {
            assert!((out[i] - e[i] / sum).abs() < 1e-6, "softmax {out:?}");
        }
    }
}
