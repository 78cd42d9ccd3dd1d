//! Batched matmul: out[i] = a[i] · b[i] (or · b[i]ᵀ), for the unfused form of attention.
use crate::grads::Grads;
use crate::tape::{Record, Tape, TensorId};

impl Tape {
    /// a (batch, m, k) · b (batch, k, n) → (batch, m, n); with `transpose_b`, b is (batch, n, k).
    pub fn batch_matmul(&mut self, a: TensorId, b: TensorId, transpose_b: bool) -> TensorId {
        todo!("batch_matmul {a:?} {b:?} {transpose_b}")
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    grads: &mut Grads,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    transpose_b: bool,
) {
    todo!("{:?} {} {} {batch} {m} {k} {n} {transpose_b}", rec.op, tape.len(), grads.get(rec.output).len())
}
