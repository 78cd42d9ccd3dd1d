//! Reshape (an explicit copy: tensors have no views) and the transpose that splits and
//! merges attention heads: (B, T, nh, hs) ⇄ (B, nh, T, hs).

use crate::grads::Grads;
use crate::tape::{Op, Record, Tape, TensorId};

/// The kernels over flat slices. They live in their own module because the tape's
/// dispatcher already calls this file's `reshape_backward(record, ...)` and
/// `transpose12_backward(record, ...)`.
pub mod kernels {
    use crate::ops::elementwise::kernels::accumulate;
    use crate::ops::elementwise::ELEM_CHUNK;
    use rayon::prelude::*;

    /// out = x, the same elements in the same order.  x: (n)  →  out: (n). Saves nothing.
    pub fn reshape_forward(out: &mut [f32], x: &[f32]) {
        debug_assert_eq!(out.len(), x.len());
        out.par_chunks_mut(ELEM_CHUNK).zip(x.par_chunks(ELEM_CHUNK)).for_each(|(o, x)| o.copy_from_slice(x));
    }

    /// Backward of a reshape: dx (n) += dout (n).
    pub fn reshape_backward(dx: &mut [f32], dout: &[f32]) {
        accumulate(dx, dout);
    }

    /// out[a, j, i, :] = x[a, i, j, :].  x: (d0, d1, d2, d3)  →  out: (d0, d2, d1, d3).
    /// Parallel over the d0 · d2 output blocks of (d1, d3). Saves nothing.
    pub fn transpose12_forward(out: &mut [f32], x: &[f32], d0: usize, d1: usize, d2: usize, d3: usize) {
        debug_assert!(out.len() == d0 * d1 * d2 * d3 && x.len() == out.len());
        transpose12_into(out, x, d1, d2, d3, |o, x| o.copy_from_slice(x));
    }

    /// Backward of the transpose: dx[a, i, j, :] += dout[a, j, i, :], the same
    /// permutation read the other way.  dout: (d0, d2, d1, d3)  →  dx: (d0, d1, d2, d3).
    pub fn transpose12_backward(dx: &mut [f32], dout: &[f32], d0: usize, d1: usize, d2: usize, d3: usize) {
        debug_assert!(dx.len() == d0 * d1 * d2 * d3 && dout.len() == dx.len());
        transpose12_into(dx, dout, d2, d1, d3, |g, d| g.iter_mut().zip(d).for_each(|(g, d)| *g += d));
    }

    /// For x (d0, d1, d2, d3) and out (d0, d2, d1, d3), d0 implied by their length:
    /// applies `f(out[a, j, i, :], x[a, i, j, :])` to every (a, i, j), in parallel over
    /// the (a, j) blocks of out.
    fn transpose12_into(
        out: &mut [f32],
        x: &[f32],
        d1: usize,
        d2: usize,
        d3: usize,
        f: impl Fn(&mut [f32], &[f32]) + Sync,
    ) {
        if d1 * d3 == 0 {
            return;
        }
        out.par_chunks_mut(d1 * d3).enumerate().for_each(|(block, out)| {
            let (a, j) = (block / d2, block % d2);
            for (i, o) in out.chunks_exact_mut(d3).enumerate() {
                let src = ((a * d1 + i) * d2 + j) * d3;
                f(o, &x[src..src + d3]);
            }
        });
    }
}

impl Tape {
    /// A copy of x with a new shape of the same number of elements.
    pub fn reshape(&mut self, x: TensorId, shape: &[usize]) -> TensorId {
        let xs = self.shape(x).to_vec();
        let n: usize = xs.iter().product();
        assert_eq!(
            n,
            shape.iter().product::<usize>(),
            "reshape: x is {xs:?} ({n} elements) but the new shape is {shape:?}"
        );
        let out = self.alloc(shape, self.any_needs_grad(&[x]));
        let (ins, outs) = self.split_at_mut(out);
        kernels::reshape_forward(&mut outs[0].data, &ins[x.0].data);
        self.record(Op::Reshape { n }, &[x], out, &[], &[]);
        out
    }

    /// (d0, d1, d2, d3) → (d0, d2, d1, d3).
    pub fn transpose12(&mut self, x: TensorId) -> TensorId {
        let xs = self.shape(x).to_vec();
        assert!(xs.len() == 4, "transpose12: x is {xs:?}; it must have 4 dimensions");
        let (d0, d1, d2, d3) = (xs[0], xs[1], xs[2], xs[3]);
        let out = self.alloc(&[d0, d2, d1, d3], self.any_needs_grad(&[x]));
        let (ins, outs) = self.split_at_mut(out);
        kernels::transpose12_forward(&mut outs[0].data, &ins[x.0].data, d0, d1, d2, d3);
        self.record(Op::Transpose12 { d0, d1, d2, d3 }, &[x], out, &[], &[]);
        out
    }
}

pub(crate) fn reshape_backward(rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    kernels::reshape_backward(grads.slot(rec.inputs[0], n), dout);
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn transpose12_backward(
    rec: &Record,
    dout: &[f32],
    grads: &mut Grads,
    d0: usize,
    d1: usize,
    d2: usize,
    d3: usize,
) {
    kernels::transpose12_backward(grads.slot(rec.inputs[0], d0 * d1 * d2 * d3), dout, d0, d1, d2, d3);
}

#[cfg(test)]
mod tests {
    use super::kernels::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tape::Tape;
    use crate::tensor::Tensor;

    #[test]
    fn shape_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(8);
        let x = Tensor::randn(&[2, 7, 3, 5], 1.0, &mut rng);
        gradcheck("reshape", &[&x], |tape, t| tape.reshape(t[0], &[14, 15]));
        gradcheck("transpose12", &[&x], |tape, t| tape.transpose12(t[0]));
    }

    #[test]
    fn transpose12_moves_each_element() {
        let (d0, d1, d2, d3) = (2, 3, 4, 5);
        let x: Vec<f32> = (0..d0 * d1 * d2 * d3).map(|i| i as f32).collect();
        let mut out = vec![f32::NAN; x.len()];
        transpose12_forward(&mut out, &x, d0, d1, d2, d3);
        for a in 0..d0 {
            for i in 0..d1 {
                for j in 0..d2 {
                    for k in 0..d3 {
                        assert_eq!(
                            out[((a * d2 + j) * d1 + i) * d3 + k],
                            x[((a * d1 + i) * d2 + j) * d3 + k]
                        );
                    }
                }
            }
        }
        let mut back = vec![0.0; x.len()];
        transpose12_backward(&mut back, &out, d0, d1, d2, d3);
        assert_eq!(back, x);
    }

    #[test]
    #[should_panic(expected = "reshape: x is [4, 6] (24 elements) but the new shape is [5, 5]")]
    fn reshape_panics_on_wrong_size() {
        let mut tape = Tape::new();
        let x = tape.constant(&[4, 6], &[0.0; 24]);
        tape.reshape(x, &[5, 5]);
    }
}
