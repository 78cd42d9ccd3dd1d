//! Matmul with optional bias, the linear layer: out = x · wᵀ + bias.
//! The weight layout is PyTorch's `nn.Linear`: w is (out_features, in_features).

use crate::gemm::{gemm, Mat};
use crate::grads::Grads;
use crate::ops::{rows_cols, REDUCE_CHUNK};
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// out = x · wᵀ + bias.  x: (n, c)  w: (oc, c)  bias: (oc)  →  out: (n, oc). Saves nothing.
#[allow(clippy::too_many_arguments)]
pub fn matmul_forward(
    out: &mut [f32],
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    c: usize,
    oc: usize,
) {
    debug_assert!(out.len() == n * oc && x.len() == n * c && w.len() == oc * c);
    if let Some(bias) = bias {
        out.par_chunks_mut(oc).for_each(|row| row.copy_from_slice(bias));
    }
    gemm(n, c, oc, Mat::rows(x, c), Mat::transposed(w, c), out, bias.is_some());
}

/// Given dout = ∂L/∂out (n, oc), accumulates (each optional)
///   dx (n, c)  += dout · w   (or, unless `accumulate_dx`, dx = dout · w)
///   dw (oc, c) += doutᵀ · x
///   dbias (oc) += Σ_rows dout
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward(
    dx: Option<&mut [f32]>,
    accumulate_dx: bool,
    dw: Option<&mut [f32]>,
    dbias: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    w: &[f32],
    n: usize,
    c: usize,
    oc: usize,
) {
    if let Some(dx) = dx {
        gemm(n, oc, c, Mat::rows(dout, oc), Mat::rows(w, c), dx, accumulate_dx);
    }
    if let Some(dw) = dw {
        gemm(oc, n, c, Mat::transposed(dout, oc), Mat::rows(x, c), dw, true);
    }
    if let Some(dbias) = dbias {
        column_sums_into(dbias, dout, n, oc);
    }
}

/// acc (c) += Σ over rows of m (n, c). Rows are summed in fixed chunks, then the chunk
/// sums are added in order, so the result does not depend on the thread count.
pub fn column_sums_into(acc: &mut [f32], m: &[f32], n: usize, c: usize) {
    let rows_per_chunk = (REDUCE_CHUNK / c.max(1)).max(1);
    let partials: Vec<Vec<f32>> = m[..n * c]
        .par_chunks(rows_per_chunk * c)
        .map(|chunk| {
            let mut sum = vec![0.0f32; c];
            for row in chunk.chunks_exact(c) {
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            }
            sum
        })
        .collect();
    for p in partials {
        acc.iter_mut().zip(&p).for_each(|(a, v)| *a += v);
    }
}

impl Tape {
    /// x (..., c) · wᵀ + bias with w (oc, c), bias (oc)  →  (..., oc).
    pub fn matmul(&mut self, x: TensorId, w: TensorId, bias: Option<TensorId>) -> TensorId {
        let (xs, ws) = (self.shape(x).to_vec(), self.shape(w).to_vec());
        let (n, c) = rows_cols(&xs);
        assert!(ws.len() == 2 && ws[1] == c, "matmul: x is {xs:?} but w is {ws:?}; w must be (out, {c})");
        let oc = ws[0];
        if let Some(b) = bias {
            assert_eq!(self.shape(b), [oc], "matmul: bias is {:?} but w is {ws:?}", self.shape(b));
        }
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        let mut out_shape = xs.clone();
        *out_shape.last_mut().expect("x has a last dimension") = oc;
        let out = self.alloc(&out_shape, self.any_needs_grad(&inputs));
        let (ins, outs) = self.split_at_mut(out);
        let bias_data = bias.map(|b| ins[b.0].data.as_slice());
        matmul_forward(&mut outs[0].data, &ins[x.0].data, &ins[w.0].data, bias_data, n, c, oc);
        self.record(Op::Matmul { n, c, oc }, &inputs, out, &[], &[]);
        out
    }
}

pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    dout: &[f32],
    grads: &mut Grads,
    n: usize,
    c: usize,
    oc: usize,
) {
    let (x, w) = (rec.inputs[0], rec.inputs[1]);
    let (xd, wd) = (tape.data(x), tape.data(w));
    if tape.needs_grad(x) {
        let (dx, accumulate) = grads.slot_to_write(x, n * c);
        matmul_backward(Some(dx), accumulate, None, None, dout, xd, wd, n, c, oc);
    }
    if tape.needs_grad(w) {
        matmul_backward(None, true, Some(grads.slot(w, oc * c)), None, dout, xd, wd, n, c, oc);
    }
    if let Some(&b) = rec.inputs.get(2) {
        if tape.needs_grad(b) {
            matmul_backward(None, true, None, Some(grads.slot(b, oc)), dout, xd, wd, n, c, oc);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn matmul_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(1);
        let x = Tensor::randn(&[2, 3, 17], 1.0, &mut rng);
        let w = Tensor::randn(&[5, 17], 1.0, &mut rng);
        let b = Tensor::randn(&[5], 1.0, &mut rng);
        gradcheck("matmul", &[&x, &w, &b], |tape, t| tape.matmul(t[0], t[1], Some(t[2])));
        gradcheck("matmul (no bias)", &[&x, &w], |tape, t| tape.matmul(t[0], t[1], None));
    }
}
