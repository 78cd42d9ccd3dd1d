//! Embedding lookup: out = table[ids]; backward scatter-adds (repeated ids accumulate).
use crate::grads::Grads;
use crate::tape::{Record, Tape, TensorId};

impl Tape {
    /// table (v, c) looked up at `ids` → shape + [c], where `shape` multiplies to ids.len().
    /// Panics on an id ≥ v.
    pub fn embedding(&mut self, table: TensorId, ids: &[u32], shape: &[usize]) -> TensorId {
        todo!("{table:?} {ids:?} {shape:?}")
    }
}

pub(crate) fn backward(rec: &Record, grads: &mut Grads, n: usize, c: usize, v: usize) {
    todo!("{rec:?} {n} {c} {v} {}", grads.get(rec.output).len())
}
