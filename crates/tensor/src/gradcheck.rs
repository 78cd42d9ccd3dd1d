//! Finite-difference gradient checking, the proof behind every op's backward.
//!
//! For inputs x and an op f, take random upstream weights w and the scalar
//! L = Σ w · f(x), summed in f64. The tape's gradient of L with respect to each input
//! element must match the central difference (L(x + h) − L(x − h)) / 2h. The step h is
//! 1e-3: much smaller, and f32 rounding drowns the difference.

use crate::grads::Grads;
use crate::rng::Rng;
use crate::tape::{Tape, TensorId};
use crate::tensor::Tensor;

const H: f32 = 1e-3;
const RTOL: f64 = 2e-2;
const ATOL: f64 = 2e-3;

/// Checks the gradient of `f` with respect to every input against finite differences.
/// `f` records ops on the tape and returns the output; it is called many times and
/// must be deterministic (seed any randomness inside it). Panics with the op name, the
/// input, the worst index and both values when a gradient is off.
pub fn gradcheck<F>(name: &str, inputs: &[&Tensor], f: F)
where
    F: Fn(&mut Tape, &[TensorId]) -> TensorId,
{
    let mut tape = Tape::new();
    let ids: Vec<TensorId> =
        inputs.iter().enumerate().map(|(i, t)| tape.param(&format!("input{i}"), (*t).clone())).collect();
    let out = f(&mut tape, &ids);
    let n_out = tape.value(out).data.len();
    let mut rng = Rng::seeded(12345);
    let w: Vec<f32> = (0..n_out).map(|_| rng.normal()).collect();
    let mut grads = Grads::new();
    tape.backward_from(out, &w, &mut grads);
    let analytic: Vec<Vec<f32>> = ids.iter().map(|&id| grads.get(id).to_vec()).collect();

    let loss = |tape: &mut Tape| -> f64 {
        tape.reset();
        let out = f(tape, &ids);
        tape.data(out).iter().zip(&w).map(|(&o, &wi)| o as f64 * wi as f64).sum()
    };
    for (i, (&id, analytic)) in ids.iter().zip(&analytic).enumerate() {
        let numel = tape.value(id).data.len();
        assert_eq!(analytic.len(), numel, "gradcheck {name}: input {i} received no gradient");
        let mut worst = (0usize, 0.0f64, 0.0f64, 0.0f64); // index, excess, analytic, numeric
        for (j, &a) in analytic.iter().enumerate() {
            let orig = tape.value(id).data[j];
            tape.value_mut(id).data[j] = orig + H;
            let plus = loss(&mut tape);
            tape.value_mut(id).data[j] = orig - H;
            let minus = loss(&mut tape);
            tape.value_mut(id).data[j] = orig;
            let numeric = (plus - minus) / (2.0 * H as f64);
            let a = a as f64;
            let excess = (a - numeric).abs() - (ATOL + RTOL * numeric.abs());
            if excess > worst.1 {
                worst = (j, excess, a, numeric);
            }
        }
        assert!(
            worst.1 <= 0.0,
            "gradcheck {name}: input {i} {:?}, worst index {}: tape gives {:.6}, finite differences give {:.6}",
            inputs[i].shape,
            worst.0,
            worst.2,
            worst.3
        );
    }
}
