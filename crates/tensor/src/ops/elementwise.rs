//! Elementwise ops: add (residual), mul, scale, GELU (GPT-2's tanh form), ReLU.
use crate::grads::Grads;
use crate::tape::{Record, Tape, TensorId};

impl Tape {
    /// a + b, same shapes.
    pub fn add(&mut self, a: TensorId, b: TensorId) -> TensorId {
        todo!("{a:?} {b:?}")
    }
    /// a ⊙ b, same shapes.
    pub fn mul(&mut self, a: TensorId, b: TensorId) -> TensorId {
        todo!("{a:?} {b:?}")
    }
    /// s · x.
    pub fn scale(&mut self, x: TensorId, s: f32) -> TensorId {
        todo!("{x:?} {s}")
    }
    pub fn gelu(&mut self, x: TensorId) -> TensorId {
        todo!("{x:?}")
    }
    pub fn relu(&mut self, x: TensorId) -> TensorId {
        todo!("{x:?}")
    }
}

pub(crate) fn add_backward(rec: &Record, grads: &mut Grads, n: usize) {
    todo!("{rec:?} {n} {}", grads.get(rec.output).len())
}
pub(crate) fn mul_backward(tape: &Tape, rec: &Record, grads: &mut Grads, n: usize) {
    todo!("{rec:?} {n} {} {}", tape.len(), grads.get(rec.output).len())
}
pub(crate) fn scale_backward(rec: &Record, grads: &mut Grads, n: usize, s: f32) {
    todo!("{rec:?} {n} {s} {}", grads.get(rec.output).len())
}
pub(crate) fn gelu_backward(tape: &Tape, rec: &Record, grads: &mut Grads, n: usize) {
    todo!("{rec:?} {n} {} {}", tape.len(), grads.get(rec.output).len())
}
pub(crate) fn relu_backward(tape: &Tape, rec: &Record, grads: &mut Grads, n: usize) {
    todo!("{rec:?} {n} {} {}", tape.len(), grads.get(rec.output).len())
}
