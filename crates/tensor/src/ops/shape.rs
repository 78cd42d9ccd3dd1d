//! Reshape (an explicit copy) and the transpose that splits and merges attention heads.
use crate::grads::Grads;
use crate::tape::{Record, Tape, TensorId};

impl Tape {
    /// A copy of x with a new shape of the same number of elements.
    pub fn reshape(&mut self, x: TensorId, shape: &[usize]) -> TensorId {
        todo!("{x:?} {shape:?}")
    }
    /// (d0, d1, d2, d3) → (d0, d2, d1, d3).
    pub fn transpose12(&mut self, x: TensorId) -> TensorId {
        todo!("{x:?}")
    }
}

pub(crate) fn reshape_backward(rec: &Record, grads: &mut Grads, n: usize) {
    todo!("{rec:?} {n} {}", grads.get(rec.output).len())
}
#[allow(clippy::too_many_arguments)]
pub(crate) fn transpose12_backward(
    rec: &Record,
    grads: &mut Grads,
    d0: usize,
    d1: usize,
    d2: usize,
    d3: usize,
) {
    todo!("{rec:?} {d0} {d1} {d2} {d3} {}", grads.get(rec.output).len())
}
