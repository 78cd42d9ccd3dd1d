//! Elementwise ops: add (the residual connection), mul, scale, GELU (GPT-2's tanh form)
//! and ReLU. Every kernel runs in parallel over chunks of [`ELEM_CHUNK`] elements; no
//! element depends on another, so the thread count cannot change a result.

use crate::grads::Grads;
use crate::tape::{Op, Record, Tape, TensorId};

/// Elements per parallel task in elementwise kernels.
pub const ELEM_CHUNK: usize = 16384;

/// Partial sums kept side by side in [`lane_sum`].
const LANES: usize = 16;

/// Σ_i f(a_i, b_i) over two slices of the same length, in [`LANES`] interleaved partial
/// sums combined in a fixed order: LLVM cannot vectorise one running f32 sum (it may not
/// reorder the additions) but does vectorise these. The order depends only on the length.
#[inline(always)]
pub(crate) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; LANES];
    let (mut ac, mut bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (a, b) in (&mut ac).zip(&mut bc) {
        for ((s, &a), &b) in acc.iter_mut().zip(a).zip(b) {
            *s += f(a, b);
        }
    }
    for ((s, &a), &b) in acc.iter_mut().zip(ac.remainder()).zip(bc.remainder()) {
        *s += f(a, b);
    }
    acc.iter().sum()
}

/// The kernels over flat slices. They live in their own module because the tape's
/// dispatcher already calls this file's `<op>_backward(record, ...)` functions.
pub mod kernels {
    use super::ELEM_CHUNK;
    use crate::ops::exp::{exp_with, madd};
    use crate::simd::vectorised;
    use rayon::prelude::*;

    /// 2·√(2/π): GELU's 2u = x · (GELU_A + GELU_B · x²).
    const GELU_A: f32 = 2.0 * 0.797_884_6;
    /// 2·√(2/π)·0.044715, with 0.044715 the cubic coefficient of GPT-2's GELU.
    const GELU_B: f32 = 2.0 * 0.797_884_6 * 0.044715;

    /// σ(2u) = ½ · (1 + tanh u) = 1 / (1 + e⁻²ᵘ), u = √(2/π) · (x + 0.044715 · x³): the
    /// factor GPT-2's tanh GELU multiplies x by. (The tanh form needs one more division.)
    #[inline(always)]
    fn gelu_gate(x: f32) -> f32 {
        let two_u = x * madd::<true>(GELU_B, x * x, GELU_A);
        let s = 1.0 / (1.0 + exp_with::<true>(-two_u));
        // Below 2u = −80, σ(2u) < 2e-35: zero, so that GELU saturates to 0 as tanh's form does.
        if two_u < -80.0 {
            0.0
        } else {
            s
        }
    }

    /// GELU of one value, GPT-2's tanh approximation: x · σ(2u) = ½ · x · (1 + tanh u).
    /// Fast inside [`vectorised`] (which compiles the fused multiply-adds as instructions).
    #[inline(always)]
    pub fn gelu(x: f32) -> f32 {
        x * gelu_gate(x)
    }

    /// GELU's derivative at x: with s = σ(2u), d(x·s)/dx = s + x · s · (1 − s) · d(2u)/dx,
    /// d(2u)/dx = GELU_A + 3 · GELU_B · x².
    #[inline(always)]
    fn gelu_grad(x: f32) -> f32 {
        let x2 = x * x;
        let s = gelu_gate(x);
        madd::<true>(x * s * (1.0 - s), madd::<true>(3.0 * GELU_B, x2, GELU_A), s)
    }

    /// out = f(x), elementwise.  x: (n)  →  out: (n). `f` is a generic, inlined closure;
    /// the loop is compiled for FMA where the CPU has it, which changes nothing unless `f`
    /// asks for fused multiply-adds.
    fn map_into(out: &mut [f32], x: &[f32], f: impl Fn(f32) -> f32 + Sync) {
        debug_assert_eq!(out.len(), x.len());
        out.par_chunks_mut(ELEM_CHUNK).zip(x.par_chunks(ELEM_CHUNK)).for_each(|(o, x)| {
            vectorised(|| o.iter_mut().zip(x).for_each(|(o, &x)| *o = f(x)));
        });
    }

    /// out = f(a, b), elementwise.  a, b: (n)  →  out: (n).
    fn zip_into(out: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) {
        debug_assert!(out.len() == a.len() && out.len() == b.len());
        out.par_chunks_mut(ELEM_CHUNK).zip(a.par_chunks(ELEM_CHUNK)).zip(b.par_chunks(ELEM_CHUNK)).for_each(
            |((o, a), b)| {
                o.iter_mut().zip(a).zip(b).for_each(|((o, &a), &b)| *o = f(a, b));
            },
        );
    }

    /// dx += dout ⊙ f(x) (or, unless `accumulate`, dx = dout ⊙ f(x)), elementwise: the
    /// backward of every op whose local derivative depends on one input value (`f` = the
    /// derivative, or the other factor of a product). Compiled for FMA as [`map_into`].
    fn scaled_into(dx: &mut [f32], dout: &[f32], x: &[f32], accumulate: bool, f: impl Fn(f32) -> f32 + Sync) {
        debug_assert!(dx.len() == dout.len() && dx.len() == x.len());
        dx.par_chunks_mut(ELEM_CHUNK)
            .zip(dout.par_chunks(ELEM_CHUNK))
            .zip(x.par_chunks(ELEM_CHUNK))
            .for_each(|((dx, dout), x)| {
                let terms = dx.iter_mut().zip(dout).zip(x);
                if accumulate {
                    vectorised(|| terms.for_each(|((dx, &d), &x)| *dx += d * f(x)));
                } else {
                    vectorised(|| terms.for_each(|((dx, &d), &x)| *dx = d * f(x)));
                }
            });
    }

    /// dx += dout, elementwise: the backward of add, reshape and every other op that passes
    /// its gradient through unchanged.
    pub fn accumulate(dx: &mut [f32], dout: &[f32]) {
        debug_assert_eq!(dx.len(), dout.len());
        dx.par_chunks_mut(ELEM_CHUNK).zip(dout.par_chunks(ELEM_CHUNK)).for_each(|(dx, dout)| {
            dx.iter_mut().zip(dout).for_each(|(dx, &d)| *dx += d);
        });
    }

    /// dx = dout: a pass-through gradient that is the first to reach dx.
    pub fn copy(dx: &mut [f32], dout: &[f32]) {
        debug_assert_eq!(dx.len(), dout.len());
        dx.par_chunks_mut(ELEM_CHUNK).zip(dout.par_chunks(ELEM_CHUNK)).for_each(|(dx, dout)| {
            dx.copy_from_slice(dout);
        });
    }

    /// out = a + b.  a, b: (n)  →  out: (n). Saves nothing.
    pub fn add_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
        zip_into(out, a, b, |a, b| a + b);
    }

    /// Backward of out = a + b: ∂out/∂a = ∂out/∂b = 1, so each input's gradient gets
    /// dx (n) += dout (n). Called once per input that needs a gradient.
    pub fn add_backward(dx: &mut [f32], dout: &[f32]) {
        accumulate(dx, dout);
    }

    /// out = a ⊙ b.  a, b: (n)  →  out: (n). Saves nothing (backward reads a and b).
    pub fn mul_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
        zip_into(out, a, b, |a, b| a * b);
    }

    /// Backward of out = a ⊙ b for one factor: da (n) += dout ⊙ b, where `other` is the
    /// factor that is not being differentiated. Called once per input.
    pub fn mul_backward(dx: &mut [f32], dout: &[f32], other: &[f32]) {
        scaled_into(dx, dout, other, true, |b| b);
    }

    /// out = s · x.  x: (n)  →  out: (n). Saves nothing.
    pub fn scale_forward(out: &mut [f32], x: &[f32], s: f32) {
        map_into(out, x, |x| s * x);
    }

    /// Backward of out = s · x: dx (n) += s · dout.
    pub fn scale_backward(dx: &mut [f32], dout: &[f32], s: f32) {
        debug_assert_eq!(dx.len(), dout.len());
        dx.par_chunks_mut(ELEM_CHUNK).zip(dout.par_chunks(ELEM_CHUNK)).for_each(|(dx, dout)| {
            dx.iter_mut().zip(dout).for_each(|(dx, &d)| *dx += s * d);
        });
    }

    /// GELU, GPT-2's tanh approximation, PyTorch's `gelu(approximate='tanh')` to within
    /// about 1e-7: out = ½ · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))), computed as
    /// x · σ(2u) with the vectorisable `exp` (libm's `tanhf` runs one element at a time)
    /// and fused multiply-adds.  x: (n)  →  out: (n). Saves nothing (backward reads x).
    pub fn gelu_forward(out: &mut [f32], x: &[f32]) {
        map_into(out, x, gelu);
    }

    /// Backward of GELU: dx (n) += dout ⊙ ∂out/∂x (see `gelu_grad`), where x (n) is the
    /// forward input (or, unless `accumulate`, dx = dout ⊙ ∂out/∂x).
    pub fn gelu_backward(dx: &mut [f32], dout: &[f32], x: &[f32], accumulate: bool) {
        scaled_into(dx, dout, x, accumulate, gelu_grad);
    }

    /// out = max(x, 0).  x: (n)  →  out: (n). Saves nothing (backward reads x).
    pub fn relu_forward(out: &mut [f32], x: &[f32]) {
        map_into(out, x, |x| if x > 0.0 { x } else { 0.0 });
    }

    /// ReLU squared (So et al. 2021, "Primer"), max(x, 0)², of one value.
    #[inline(always)]
    pub fn relu2(x: f32) -> f32 {
        if x > 0.0 {
            x * x
        } else {
            0.0
        }
    }

    /// out = max(x, 0)².  x: (n)  →  out: (n). Saves nothing (backward reads x).
    pub fn relu2_forward(out: &mut [f32], x: &[f32]) {
        map_into(out, x, relu2);
    }

    /// Backward of ReLU²: dx (n) += dout ⊙ 2·max(x, 0) (or, unless `accumulate`, dx = that).
    pub fn relu2_backward(dx: &mut [f32], dout: &[f32], x: &[f32], accumulate: bool) {
        scaled_into(dx, dout, x, accumulate, |x| if x > 0.0 { 2.0 * x } else { 0.0 });
    }

    /// Backward of ReLU: dx (n) += dout where x > 0 (the derivative at 0 is taken as 0, as
    /// PyTorch does).
    pub fn relu_backward(dx: &mut [f32], dout: &[f32], x: &[f32]) {
        scaled_into(dx, dout, x, true, |x| if x > 0.0 { 1.0 } else { 0.0 });
    }
}

/// Panics unless `a` and `b` have the same shape, naming the op and both shapes.
pub(crate) fn assert_same_shape(op: &str, tape: &Tape, a: TensorId, b: TensorId) {
    let (sa, sb) = (tape.shape(a), tape.shape(b));
    assert!(sa == sb, "{op}: a is {sa:?} but b is {sb:?}; they must have the same shape");
}

/// Whether `id` receives a gradient in this backward pass (and has values to receive it).
/// For dispatchers that are not handed the tape.
pub(crate) fn wants_grad(grads: &Grads, id: TensorId, numel: usize) -> bool {
    numel > 0 && grads.wants(id)
}

impl Tape {
    /// a + b, same shapes.
    pub fn add(&mut self, a: TensorId, b: TensorId) -> TensorId {
        assert_same_shape("add", self, a, b);
        let n = self.value(a).numel();
        self.binary(a, b, Op::Add { n }, kernels::add_forward)
    }

    /// a ⊙ b, same shapes.
    pub fn mul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        assert_same_shape("mul", self, a, b);
        let n = self.value(a).numel();
        self.binary(a, b, Op::Mul { n }, kernels::mul_forward)
    }

    /// s · x.
    pub fn scale(&mut self, x: TensorId, s: f32) -> TensorId {
        let n = self.value(x).numel();
        self.unary(x, Op::Scale { n, s }, |out, x| kernels::scale_forward(out, x, s))
    }

    /// GELU (GPT-2's tanh approximation), elementwise.
    pub fn gelu(&mut self, x: TensorId) -> TensorId {
        let n = self.value(x).numel();
        self.unary(x, Op::Gelu { n }, kernels::gelu_forward)
    }

    /// max(x, 0), elementwise.
    pub fn relu(&mut self, x: TensorId) -> TensorId {
        let n = self.value(x).numel();
        self.unary(x, Op::Relu { n }, kernels::relu_forward)
    }

    /// max(x, 0)², elementwise.
    pub fn relu2(&mut self, x: TensorId) -> TensorId {
        let n = self.value(x).numel();
        self.unary(x, Op::Relu2 { n }, kernels::relu2_forward)
    }

    /// Runs a one-input elementwise forward kernel into a new tensor shaped like x.
    fn unary(&mut self, x: TensorId, op: Op, forward: impl Fn(&mut [f32], &[f32])) -> TensorId {
        let shape = self.shape(x).to_vec();
        let out = self.alloc(&shape, self.any_needs_grad(&[x]));
        let (ins, outs) = self.split_at_mut(out);
        forward(&mut outs[0].data, &ins[x.0].data);
        self.record(op, &[x], out, &[], &[]);
        out
    }

    /// Runs a two-input elementwise forward kernel (shapes already checked) into a new
    /// tensor shaped like a.
    fn binary(
        &mut self,
        a: TensorId,
        b: TensorId,
        op: Op,
        forward: fn(&mut [f32], &[f32], &[f32]),
    ) -> TensorId {
        let shape = self.shape(a).to_vec();
        let out = self.alloc(&shape, self.any_needs_grad(&[a, b]));
        let (ins, outs) = self.split_at_mut(out);
        forward(&mut outs[0].data, &ins[a.0].data, &ins[b.0].data);
        self.record(op, &[a, b], out, &[], &[]);
        out
    }
}

pub(crate) fn add_backward(rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    // One input at a time, so add(x, x) simply accumulates twice into x's slot.
    for &x in &rec.inputs {
        if wants_grad(grads, x, n) {
            match grads.slot_to_write(x, n) {
                (dx, true) => kernels::add_backward(dx, dout),
                (dx, false) => kernels::copy(dx, dout),
            }
        }
    }
}

pub(crate) fn mul_backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    let (a, b) = (rec.inputs[0], rec.inputs[1]);
    if tape.needs_grad(a) {
        kernels::mul_backward(grads.slot(a, n), dout, tape.data(b));
    }
    if tape.needs_grad(b) {
        kernels::mul_backward(grads.slot(b, n), dout, tape.data(a));
    }
}

pub(crate) fn scale_backward(rec: &Record, dout: &[f32], grads: &mut Grads, n: usize, s: f32) {
    let x = rec.inputs[0];
    kernels::scale_backward(grads.slot(x, n), dout, s);
}

pub(crate) fn gelu_backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    let x = rec.inputs[0];
    let (dx, accumulate) = grads.slot_to_write(x, n);
    kernels::gelu_backward(dx, dout, tape.data(x), accumulate);
}

pub(crate) fn relu_backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    let x = rec.inputs[0];
    kernels::relu_backward(grads.slot(x, n), dout, tape.data(x));
}

pub(crate) fn relu2_backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize) {
    let x = rec.inputs[0];
    let (dx, accumulate) = grads.slot_to_write(x, n);
    kernels::relu2_backward(dx, dout, tape.data(x), accumulate);
}

#[cfg(test)]
mod tests {
    use super::kernels::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tape::Tape;
    use crate::tensor::Tensor;

    /// Normal entries pushed at least 0.05 away from 0, where ReLU has its kink.
    fn away_from_zero(shape: &[usize], rng: &mut Rng) -> Tensor {
        let mut t = Tensor::randn(shape, 1.0, rng);
        t.data.iter_mut().filter(|v| v.abs() < 0.05).for_each(|v| *v += 0.1f32.copysign(*v));
        t
    }

    #[test]
    fn elementwise_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(2);
        let a = Tensor::randn(&[7, 37], 1.0, &mut rng);
        let b = Tensor::randn(&[7, 37], 1.0, &mut rng);
        let x = away_from_zero(&[3, 5, 11], &mut rng);
        gradcheck("add", &[&a, &b], |tape, t| tape.add(t[0], t[1]));
        gradcheck("mul", &[&a, &b], |tape, t| tape.mul(t[0], t[1]));
        gradcheck("mul (x, x)", &[&a], |tape, t| tape.mul(t[0], t[0]));
        gradcheck("scale", &[&a], |tape, t| tape.scale(t[0], -1.7));
        gradcheck("gelu", &[&a], |tape, t| tape.gelu(t[0]));
        gradcheck("relu", &[&x], |tape, t| tape.relu(t[0]));
        gradcheck("relu2", &[&x], |tape, t| tape.relu2(t[0]));
        gradcheck("relu2 (x, x)", &[&x], |tape, t| {
            let a = tape.relu2(t[0]);
            let b = tape.relu2(t[0]);
            tape.add(a, b)
        });
    }

    #[test]
    fn gelu_matches_pytorch_tanh_approximation() {
        // torch.nn.functional.gelu(x, approximate='tanh') and its gradient, in f32.
        let x = [-3.0, -1.5, -0.5, -0.1, 0.0, 0.1, 0.7, 1.3, 2.5, 4.0];
        let torch_y = [
            -0.003_637_433,
            -0.100_428_43,
            -0.154_286,
            -0.046_017_25,
            0.0,
            0.053_982_753,
            0.530_570_15,
            1.173_929,
            2.484_915_7,
            3.999_93,
        ];
        let torch_dx = [
            -0.011_584_297,
            -0.127_710_82,
            0.132_630_1,
            0.420_478_2,
            0.5,
            0.579_521_8,
            0.976_357_2,
            1.125_878_1,
            1.037_951_7,
            1.000_335,
        ];
        let mut y = [0.0f32; 10];
        gelu_forward(&mut y, &x);
        let mut dx = [0.0f32; 10];
        gelu_backward(&mut dx, &[1.0; 10], &x, true);
        for i in 0..10 {
            assert!(
                (y[i] - torch_y[i]).abs() <= 1e-6,
                "gelu({}) = {} but PyTorch gives {}",
                x[i],
                y[i],
                torch_y[i]
            );
            assert!(
                (dx[i] - torch_dx[i]).abs() <= 1e-6,
                "gelu'({}) = {} but PyTorch gives {}",
                x[i],
                dx[i],
                torch_dx[i]
            );
        }
    }

    #[test]
    fn gelu_saturates_for_large_inputs() {
        let x = [-100.0, -30.0, 30.0, 100.0];
        let mut y = [f32::NAN; 4];
        gelu_forward(&mut y, &x);
        assert_eq!(y, [0.0, 0.0, 30.0, 100.0]);
        let mut dx = [0.0f32; 4];
        gelu_backward(&mut dx, &[1.0; 4], &x, true);
        assert_eq!(dx, [0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn forward_overwrites_stale_buffers() {
        let mut out = vec![f32::NAN; 40000];
        let x: Vec<f32> = (0..40000).map(|i| i as f32 - 20000.0).collect();
        relu_forward(&mut out, &x);
        assert!(out.iter().zip(&x).all(|(&o, &x)| o == x.max(0.0)));
    }

    #[test]
    #[should_panic(expected = "mul: a is [2, 3] but b is [3, 2]")]
    fn mul_panics_on_mismatched_shapes() {
        let mut tape = Tape::new();
        let a = tape.constant(&[2, 3], &[0.0; 6]);
        let b = tape.constant(&[3, 2], &[0.0; 6]);
        tape.mul(a, b);
    }
}
