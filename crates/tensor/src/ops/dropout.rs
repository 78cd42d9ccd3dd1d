//! Inverted dropout: zero each element with probability p and scale the survivors by
//! 1/(1-p), so the expected value is unchanged and evaluation needs no rescaling. The
//! mask is drawn from the rng sequentially, 32 random bits per element, so it depends
//! only on the rng's state, never on the thread count; it is saved for backward.

use crate::grads::Grads;
use crate::ops::elementwise::ELEM_CHUNK;
use crate::rng::Rng;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// Fills mask (n) with 0 (probability p) or 1/(1-p), then out = x ⊙ mask.
/// x: (n)  →  out: (n). Saves mask (n).
///
/// Each element drops when a 32-bit random number is below p · 2³²; one `next_u64` from
/// `rng` gives the numbers of two consecutive elements (low half first), drawn in order.
pub fn dropout_forward(out: &mut [f32], mask: &mut [f32], x: &[f32], p: f32, rng: &mut Rng) {
    debug_assert!(out.len() == x.len() && mask.len() == x.len());
    let keep = 1.0 / (1.0 - p);
    let threshold = (p as f64 * 4_294_967_296.0) as u64;
    let value = |bits: u64| keep * ((bits & 0xffff_ffff) >= threshold) as u32 as f32;
    for pair in mask.chunks_mut(2) {
        let bits = rng.next_u64();
        pair[0] = value(bits);
        if let Some(m) = pair.get_mut(1) {
            *m = value(bits >> 32);
        }
    }
    out.par_chunks_mut(ELEM_CHUNK)
        .zip(x.par_chunks(ELEM_CHUNK))
        .zip(mask.par_chunks(ELEM_CHUNK))
        .for_each(|((o, x), m)| o.iter_mut().zip(x).zip(m).for_each(|((o, &x), &m)| *o = x * m));
}

/// Backward of out = x ⊙ mask: dx (n) += dout (n) ⊙ mask (n), the mask saved by forward.
pub fn dropout_backward(dx: &mut [f32], dout: &[f32], mask: &[f32]) {
    debug_assert!(dx.len() == dout.len() && dx.len() == mask.len());
    dx.par_chunks_mut(ELEM_CHUNK)
        .zip(dout.par_chunks(ELEM_CHUNK))
        .zip(mask.par_chunks(ELEM_CHUNK))
        .for_each(|((dx, d), m)| dx.iter_mut().zip(d).zip(m).for_each(|((g, &d), &m)| *g += d * m));
}

impl Tape {
    /// Drops each element of x with probability p (in [0, 1)), scaling the rest by
    /// 1/(1-p). With p = 0 returns x itself and records nothing (use that at evaluation).
    pub fn dropout(&mut self, x: TensorId, p: f32, rng: &mut Rng) -> TensorId {
        assert!(
            (0.0..1.0).contains(&p),
            "dropout: p must be in [0, 1), found {p} (x is {:?})",
            self.shape(x)
        );
        if p == 0.0 {
            return x;
        }
        let shape = self.shape(x).to_vec();
        let n = self.value(x).numel();
        let out = self.alloc(&shape, self.any_needs_grad(&[x]));
        let mask = self.alloc(&shape, false);
        let (ins, outs) = self.split_at_mut(out);
        let (out_t, mask_t) = outs.split_at_mut(1);
        dropout_forward(&mut out_t[0].data, &mut mask_t[0].data, &ins[x.0].data, p, rng);
        self.record(Op::Dropout { n, p }, &[x], out, &[mask], &[]);
        out
    }
}

pub(crate) fn backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize, p: f32) {
    debug_assert!(p > 0.0, "dropout with p = 0 records nothing");
    dropout_backward(grads.slot(rec.inputs[0], n), dout, tape.data(rec.saved[0]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::tensor::Tensor;

    #[test]
    fn dropout_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(9);
        let x = Tensor::randn(&[7, 37], 1.0, &mut rng);
        gradcheck("dropout", &[&x], |tape, t| tape.dropout(t[0], 0.3, &mut Rng::seeded(10)));
    }

    #[test]
    fn dropout_zeroes_about_p_and_keeps_the_mean() {
        let mut tape = Tape::new();
        let x = tape.constant(&[200, 100], &[1.0; 20_000]);
        let y = tape.dropout(x, 0.25, &mut Rng::seeded(11));
        let zeros = tape.data(y).iter().filter(|&&v| v == 0.0).count() as f32 / 20_000.0;
        assert!((zeros - 0.25).abs() < 0.02, "dropped {zeros} of the elements, expected about 0.25");
        assert!(tape.data(y).iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
        let mean = tape.data(y).iter().sum::<f32>() / 20_000.0;
        assert!((mean - 1.0).abs() < 0.03, "mean after dropout {mean}, expected about 1");
    }

    #[test]
    fn dropout_with_p_zero_is_the_identity() {
        let mut tape = Tape::new();
        let x = tape.param("x", Tensor::filled(&[3, 4], 2.0));
        let mut rng = Rng::seeded(12);
        let before = rng.clone();
        assert_eq!(tape.dropout(x, 0.0, &mut rng), x);
        assert!(tape.records().is_empty());
        assert_eq!(rng, before, "p = 0 must not draw from the rng");
    }
}
