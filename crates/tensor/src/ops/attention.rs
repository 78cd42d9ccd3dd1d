//! Causal self-attention, fused per (batch, head): scores, causal mask, softmax, and the
//! weighted sum of values, never holding more than one (T×T) score block per task.
use crate::grads::Grads;
use crate::tape::{Record, Tape, TensorId};

impl Tape {
    /// qkv (b, t, 3c) holding q, k, v side by side, each split into `n_head` heads → (b, t, c).
    pub fn attention(&mut self, qkv: TensorId, n_head: usize) -> TensorId {
        todo!("{qkv:?} {n_head}")
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    grads: &mut Grads,
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
) {
    todo!("{rec:?} {b} {t} {nh} {hs} {} {}", tape.len(), grads.get(rec.output).len())
}
