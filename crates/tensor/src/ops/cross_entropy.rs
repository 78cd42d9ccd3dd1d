//! Fused softmax + cross-entropy over logits with integer targets: the training loss.
//!
//! ```text
//! probs_r = softmax(logits_r)                      for each row r of logits (n, v)
//! loss    = (1 / count) Σ_r −log probs_r[target_r]  over the rows whose target is not ignored
//! ```
//!
//! Fusing the two avoids the log of a tiny probability: `−log probs_r[y]` is computed as
//! `lse_r − logits_r[y]`, with `lse_r = log Σ exp(logits_r)`. The probabilities are saved for
//! backward, where ∂loss/∂logits_r = (probs_r − onehot(target_r)) / count.

use crate::grads::Grads;
use crate::ops::exp::{exp_sum, max};
use crate::ops::rows_cols;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// Panics unless every target is below `v` or is the ignore index; runs before any read.
fn check_targets(targets: &[u32], ignore_index: Option<u32>, v: usize) {
    for (row, &target) in targets.iter().enumerate() {
        assert!(
            Some(target) == ignore_index || (target as usize) < v,
            "cross_entropy: row {row} has target {target} but the logits have v = {v} classes (ids 0..{v}); \
             ignore_index is {ignore_index:?}"
        );
    }
}

fn is_counted(target: u32, ignore_index: Option<u32>) -> bool {
    Some(target) != ignore_index
}

/// Mean cross-entropy of softmax(logits) against targets.  logits: (n, v)  targets: (n)
/// → the loss, and probs (n, v) saved for backward. Rows whose target is `ignore_index`
/// get probabilities but add nothing; with no counted row the loss is 0.
pub fn cross_entropy_forward(
    probs: &mut [f32],
    logits: &[f32],
    targets: &[u32],
    ignore_index: Option<u32>,
    n: usize,
    v: usize,
) -> f32 {
    debug_assert!(probs.len() == n * v && logits.len() == n * v);
    assert_eq!(targets.len(), n, "cross_entropy: {n} rows of logits but {} targets", targets.len());
    check_targets(targets, ignore_index, v);
    if v == 0 {
        return 0.0;
    }
    // Per-row losses, then one sequential sum: the order does not depend on the threads.
    let row_losses: Vec<f64> = probs
        .par_chunks_mut(v)
        .zip(logits.par_chunks(v))
        .zip(targets.par_iter())
        .map(|((p, x), &target)| {
            let m = max(x);
            p.copy_from_slice(x);
            let sum = exp_sum(p, 1.0, m);
            let inv_sum = 1.0 / sum;
            p.iter_mut().for_each(|e| *e *= inv_sum);
            if is_counted(target, ignore_index) {
                (m as f64 + (sum as f64).ln()) - x[target as usize] as f64
            } else {
                0.0
            }
        })
        .collect();
    let count = targets.iter().filter(|&&y| is_counted(y, ignore_index)).count();
    if count == 0 {
        return 0.0;
    }
    (row_losses.iter().sum::<f64>() / count as f64) as f32
}

/// Given dloss = ∂L/∂loss, accumulates dlogits (n, v) += (probs − onehot(target)) · dloss / count
/// row by row; rows with an ignored target receive nothing.
pub fn cross_entropy_backward(
    dlogits: &mut [f32],
    probs: &[f32],
    targets: &[u32],
    ignore_index: Option<u32>,
    dloss: f32,
    n: usize,
    v: usize,
) {
    debug_assert!(dlogits.len() == n * v && probs.len() == n * v && targets.len() == n);
    let count = targets.iter().filter(|&&y| is_counted(y, ignore_index)).count();
    if count == 0 || v == 0 {
        return;
    }
    let g = dloss / count as f32;
    dlogits.par_chunks_mut(v).zip(probs.par_chunks(v)).zip(targets.par_iter()).for_each(
        |((d, p), &target)| {
            if is_counted(target, ignore_index) {
                d.iter_mut().zip(p).for_each(|(d, &p)| *d += p * g);
                d[target as usize] -= g;
            }
        },
    );
}

impl Tape {
    /// logits (..., v) with targets.len() rows → scalar mean loss over the targets that are
    /// not `ignore_index`. Panics on a target ≥ v (other than the ignore index).
    pub fn cross_entropy(
        &mut self,
        logits: TensorId,
        targets: &[u32],
        ignore_index: Option<u32>,
    ) -> TensorId {
        let shape = self.shape(logits).to_vec();
        let (n, v) = rows_cols(&shape);
        assert_eq!(
            n,
            targets.len(),
            "cross_entropy: logits {shape:?} have {n} rows of v = {v} but there are {} targets",
            targets.len()
        );
        let out = self.alloc(&[1], self.any_needs_grad(&[logits]));
        let probs = self.alloc(&[n, v], false);
        let (ins, outs) = self.split_at_mut(out);
        let (loss, rest) = outs.split_at_mut(1);
        loss[0].data[0] =
            cross_entropy_forward(&mut rest[0].data, &ins[logits.0].data, targets, ignore_index, n, v);
        self.record(Op::CrossEntropy { n, v, ignore_index }, &[logits], out, &[probs], targets);
        out
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    tape: &Tape,
    rec: &Record,
    dout: &[f32],
    grads: &mut Grads,
    n: usize,
    v: usize,
    ignore_index: Option<u32>,
) {
    let logits = rec.inputs[0];
    if !tape.needs_grad(logits) {
        return;
    }
    let dloss = dout[0];
    let probs = tape.data(rec.saved[0]);
    cross_entropy_backward(grads.slot(logits, n * v), probs, &rec.ids, ignore_index, dloss, n, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    /// The loss by the textbook formula, in f64.
    fn reference_loss(logits: &[f32], targets: &[u32], ignore_index: Option<u32>, v: usize) -> f64 {
        let (mut sum, mut count) = (0.0f64, 0usize);
        for (row, &y) in logits.chunks(v).zip(targets) {
            if Some(y) == ignore_index {
                continue;
            }
            let z: f64 = row.iter().map(|&x| (x as f64).exp()).sum();
            sum -= ((row[y as usize] as f64).exp() / z).ln();
            count += 1;
        }
        if count == 0 {
            0.0
        } else {
            sum / count as f64
        }
    }

    #[test]
    fn cross_entropy_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(4);
        // v = 19 is not a multiple of the SIMD width; target 3 repeats; row 2 is ignored.
        let logits = Tensor::randn(&[2, 3, 19], 2.0, &mut rng);
        let targets = [3u32, 18, 99, 3, 0, 3];
        gradcheck("cross_entropy", &[&logits], |tape, x| tape.cross_entropy(x[0], &targets, Some(99)));
        gradcheck("cross_entropy (no ignore)", &[&logits], |tape, x| {
            tape.cross_entropy(x[0], &[1, 2, 3, 4, 5, 6], None)
        });
    }

    #[test]
    fn cross_entropy_matches_the_textbook_formula() {
        let mut rng = Rng::seeded(5);
        let (n, v) = (37, 67);
        let logits = Tensor::randn(&[n, v], 3.0, &mut rng);
        let targets: Vec<u32> = (0..n).map(|i| if i % 5 == 0 { 0 } else { (i * 7 % v) as u32 }).collect();
        let mut probs = vec![0.0; n * v];
        for ignore in [None, Some(0)] {
            let loss = cross_entropy_forward(&mut probs, &logits.data, &targets, ignore, n, v);
            let expect = reference_loss(&logits.data, &targets, ignore, v);
            assert!((loss as f64 - expect).abs() < 1e-5 * (1.0 + expect), "loss {loss} vs {expect}");
        }
        for row in probs.chunks(v) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn all_rows_ignored_give_zero_loss_and_zero_gradient() {
        let mut tape = Tape::new();
        let w = tape.param("w", Tensor::filled(&[3, 5], 0.7));
        let loss = tape.cross_entropy(w, &[7, 7, 7], Some(7));
        assert_eq!(tape.data(loss), [0.0]);
        let mut grads = Grads::new();
        tape.backward(loss, &mut grads);
        assert!(grads.get(w).iter().all(|&g| g == 0.0));
    }

    #[test]
    fn huge_logits_do_not_overflow() {
        let logits = [1000.0f32, -1000.0, 0.0, 999.0];
        let mut probs = [0.0; 4];
        let loss = cross_entropy_forward(&mut probs, &logits, &[3], None, 1, 4);
        assert!((loss - (1.0 + (1.0 + (-1.0f32).exp()).ln())).abs() < 1e-5, "loss {loss}");
    }

    #[test]
    #[should_panic(expected = "cross_entropy: row 1 has target 5 but the logits have v = 5 classes")]
    fn out_of_range_target_panics_with_row_and_v() {
        let mut tape = Tape::new();
        let x = tape.constant(&[2, 5], &[0.0; 10]);
        tape.cross_entropy(x, &[0, 5], None);
    }

    #[test]
    #[should_panic(expected = "cross_entropy: logits [2, 5] have 2 rows of v = 5 but there are 3 targets")]
    fn row_count_mismatch_panics() {
        let mut tape = Tape::new();
        let x = tape.constant(&[2, 5], &[0.0; 10]);
        tape.cross_entropy(x, &[0, 1, 2], None);
    }
}
