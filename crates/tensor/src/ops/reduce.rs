//! Sum and mean of all elements, and the sum of squares a gradient norm needs. The elements are summed in chunks of
//! [`REDUCE_CHUNK`](crate::ops::REDUCE_CHUNK) (in f32 lanes inside a chunk), and the chunk
//! sums are added in f64, in order, so the result does not depend on the thread count.

use crate::grads::Grads;
use crate::tape::{Op, Record, Tape, TensorId};

/// The kernels over flat slices. They live in their own module because the tape's
/// dispatcher already calls this file's `sum_backward(record, ...)` and
/// `mean_backward(record, ...)`.
pub mod kernels {
    use crate::ops::elementwise::{lane_sum, ELEM_CHUNK};
    use crate::ops::REDUCE_CHUNK;
    use crate::simd::vectorised;
    use rayon::prelude::*;

    /// Σ_i x_i in f64: chunks of REDUCE_CHUNK summed in f32 lanes, chunk sums added in order.
    fn total(x: &[f32]) -> f64 {
        let partials: Vec<f64> = x
            .par_chunks(REDUCE_CHUNK)
            .map(|chunk| vectorised(|| lane_sum(chunk, chunk, |v, _| v)) as f64)
            .collect();
        partials.iter().sum()
    }

    /// Σ_i x_i.  x: (n)  →  a scalar. Saves nothing.
    pub fn sum_forward(x: &[f32]) -> f32 {
        total(x) as f32
    }

    /// (Σ_i x_i) / n.  x: (n)  →  a scalar. Saves nothing.
    pub fn mean_forward(x: &[f32]) -> f32 {
        (total(x) / x.len().max(1) as f64) as f32
    }

    /// Backward of out = Σ_i x_i: every dx_i (n) += dout, a scalar.
    pub fn sum_backward(dx: &mut [f32], dout: f32) {
        dx.par_chunks_mut(ELEM_CHUNK).for_each(|dx| dx.iter_mut().for_each(|g| *g += dout));
    }

    /// Backward of out = (Σ_i x_i) / n: every dx_i (n) += dout / n.
    pub fn mean_backward(dx: &mut [f32], dout: f32) {
        let d = dout / dx.len().max(1) as f32;
        dx.par_chunks_mut(ELEM_CHUNK).for_each(|dx| dx.iter_mut().for_each(|g| *g += d));
    }

    /// Partial sums kept side by side in [`sum_squares`], so that the loop vectorises.
    const SQUARE_LANES: usize = 8;

    crate::simd::simd_dispatch!(
        /// Σ_i x_i² in f64, on this thread, in `SQUARE_LANES` = 8 interleaved partial sums
        /// added up in a fixed order: x: (n)  →  a scalar. The optimizer's gradient norm
        /// sums fixed chunks with it, so the thread count does not change the norm.
        pub fn sum_squares => sum_squares_body(x: &[f32]) -> f64
    );

    #[inline(always)]
    fn sum_squares_body(x: &[f32]) -> f64 {
        let mut acc = [0.0f64; SQUARE_LANES];
        let mut groups = x.chunks_exact(SQUARE_LANES);
        for group in &mut groups {
            acc.iter_mut().zip(group).for_each(|(s, &v)| *s += v as f64 * v as f64);
        }
        acc.iter_mut().zip(groups.remainder()).for_each(|(s, &v)| *s += v as f64 * v as f64);
        acc.iter().sum()
    }
}

impl Tape {
    /// Σ x → shape `[1]`.
    pub fn sum(&mut self, x: TensorId) -> TensorId {
        let n = self.value(x).numel();
        self.reduce(x, Op::Sum { n }, kernels::sum_forward)
    }

    /// mean(x) → shape `[1]`.
    pub fn mean(&mut self, x: TensorId) -> TensorId {
        let n = self.value(x).numel();
        self.reduce(x, Op::Mean { n }, kernels::mean_forward)
    }

    /// Runs a reduction of x to a new tensor of shape [1].
    fn reduce(&mut self, x: TensorId, op: Op, forward: fn(&[f32]) -> f32) -> TensorId {
        let out = self.alloc(&[1], self.any_needs_grad(&[x]));
        let (ins, outs) = self.split_at_mut(out);
        outs[0].data[0] = forward(&ins[x.0].data);
        self.record(op, &[x], out, &[], &[]);
        out
    }
}

pub(crate) fn sum_backward(rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    kernels::sum_backward(grads.slot(rec.inputs[0], n), dout[0]);
}

pub(crate) fn mean_backward(rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    kernels::mean_backward(grads.slot(rec.inputs[0], n), dout[0]);
}

#[cfg(test)]
mod tests {
    use super::kernels::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn reduce_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(7);
        let x = Tensor::randn(&[7, 37], 1.0, &mut rng);
        gradcheck("sum", &[&x], |tape, t| tape.sum(t[0]));
        gradcheck("mean", &[&x], |tape, t| tape.mean(t[0]));
    }

    #[test]
    fn sum_and_mean_of_many_chunks() {
        let x: Vec<f32> = (0..10_001).map(|i| i as f32).collect();
        assert_eq!(sum_forward(&x), 50_005_000.0);
        assert_eq!(mean_forward(&x), 5000.0);
    }
}
