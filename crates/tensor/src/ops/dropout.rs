//! Inverted dropout: zero each element with probability p and scale the rest by 1/(1-p).
use crate::grads::Grads;
use crate::rng::Rng;
use crate::tape::{Record, Tape, TensorId};

impl Tape {
    /// With p = 0 returns x itself and records nothing (use that at evaluation).
    pub fn dropout(&mut self, x: TensorId, p: f32, rng: &mut Rng) -> TensorId {
        todo!("{x:?} {p} {:?}", rng.uniform())
    }
}

pub(crate) fn backward(tape: &Tape, rec: &Record, grads: &mut Grads, n: usize, p: f32) {
    todo!("{rec:?} {n} {p} {} {}", tape.len(), grads.get(rec.output).len())
}
