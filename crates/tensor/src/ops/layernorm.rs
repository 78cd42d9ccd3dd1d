//! Layer normalisation over the last dimension, fused into one forward and one backward
//! kernel; forward saves each row's mean and reciprocal standard deviation (rstd) so
//! backward need not recompute them.

use crate::grads::Grads;
use crate::ops::elementwise::lane_sum;
use crate::ops::{rows_cols, ROW_CHUNK};
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// Added to the variance before the square root; PyTorch's default.
pub const EPS: f32 = 1e-5;

/// For each row r of x:
///
/// ```text
/// mean[r] = Σ_i x_i / c,   rstd[r] = 1 / √(Σ_i (x_i − mean)² / c + EPS)
/// out_i   = (x_i − mean) · rstd · gamma_i + beta_i
/// ```
///
/// x: (n, c)  gamma, beta: (c)  →  out: (n, c). Saves mean (n) and rstd (n).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    c: usize,
) {
    debug_assert!(out.len() == n * c && x.len() == n * c && mean.len() == n && rstd.len() == n);
    debug_assert!(gamma.len() == c && beta.len() == c);
    if c == 0 {
        return;
    }
    out.par_chunks_mut(ROW_CHUNK * c)
        .zip(x.par_chunks(ROW_CHUNK * c))
        .zip(mean.par_chunks_mut(ROW_CHUNK).zip(rstd.par_chunks_mut(ROW_CHUNK)))
        .for_each(|((out, x), saved)| normalize_rows(out, x, (gamma, beta), saved));
}

crate::simd::simd_dispatch!(fn normalize_rows => normalize_rows_body(
    out: &mut [f32], x: &[f32], affine: (&[f32], &[f32]), saved: (&mut [f32], &mut [f32])
));

/// The forward of a chunk of rows (see [`layernorm_forward`]): out from x, gamma and beta,
/// and each row's mean and rstd saved.
#[inline(always)]
fn normalize_rows_body(
    out: &mut [f32],
    x: &[f32],
    (gamma, beta): (&[f32], &[f32]),
    (mean, rstd): (&mut [f32], &mut [f32]),
) {
    let c = gamma.len();
    for (r, (out, x)) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)).enumerate() {
        let m = lane_sum(x, x, |v, _| v) / c as f32;
        let var = lane_sum(x, x, |v, _| (v - m) * (v - m)) / c as f32;
        let s = 1.0 / (var + EPS).sqrt();
        for (((o, &v), &g), &b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
            *o = (v - m) * s * g + b;
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

/// Backward of layernorm. Forward, per row: norm_i = (x_i − mean) · rstd and
/// out_i = norm_i · gamma_i + beta_i. Then, with dnorm_i = dout_i · gamma_i,
///   dbeta_i  += Σ_rows dout_i
///   dgamma_i += Σ_rows dout_i · norm_i
///   dx_i     += rstd · (dnorm_i − mean_j(dnorm_j) − norm_i · mean_j(dnorm_j · norm_j))
/// The dx line: ∂norm_j/∂x_i = rstd · (δ_ij − 1/c − norm_i · norm_j / c), because
/// ∂mean/∂x_i = 1/c and ∂rstd/∂x_i = −rstd² · norm_i / c; summing dnorm_j over j gives it.
/// dout, x: (n, c)  gamma: (c)  mean, rstd: (n) as saved by forward. Each gradient is
/// optional; dx comes with whether to add into it (`true`) or overwrite it (`false`).
/// dgamma and dbeta sum rows in chunks of [`ROW_CHUNK`] added in order, so the result does
/// not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    dx: Option<(&mut [f32], bool)>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    debug_assert!(dout.len() == n * c && x.len() == n * c && mean.len() == n && rstd.len() == n);
    if c == 0 {
        return;
    }
    if let Some((dx, accumulate)) = dx {
        dx.par_chunks_mut(ROW_CHUNK * c)
            .zip(dout.par_chunks(ROW_CHUNK * c))
            .zip(x.par_chunks(ROW_CHUNK * c))
            .zip(mean.par_chunks(ROW_CHUNK).zip(rstd.par_chunks(ROW_CHUNK)))
            .for_each(|(((dx, dout), x), (mean, rstd))| {
                let mut dnorm = vec![0.0f32; c];
                input_grad_rows(dx, accumulate, dout, x, gamma, (mean, rstd), &mut dnorm);
            });
    }
    if dgamma.is_none() && dbeta.is_none() {
        return;
    }
    // One (dgamma, dbeta) partial sum per chunk of rows, then the partials in order.
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dout
        .par_chunks(ROW_CHUNK * c)
        .zip(x.par_chunks(ROW_CHUNK * c))
        .zip(mean.par_chunks(ROW_CHUNK).zip(rstd.par_chunks(ROW_CHUNK)))
        .map(|((dout, x), (mean, rstd))| {
            let (mut dg, mut db) = (vec![0.0f32; c], vec![0.0f32; c]);
            param_grad_rows(&mut dg, &mut db, dout, x, (mean, rstd));
            (dg, db)
        })
        .collect();
    if let Some(dgamma) = dgamma {
        for (dg, _) in &partials {
            dgamma.iter_mut().zip(dg).for_each(|(a, v)| *a += v);
        }
    }
    if let Some(dbeta) = dbeta {
        for (_, db) in &partials {
            dbeta.iter_mut().zip(db).for_each(|(a, v)| *a += v);
        }
    }
}

crate::simd::simd_dispatch!(fn input_grad_rows => input_grad_rows_body(
    dx: &mut [f32], accumulate: bool, dout: &[f32], x: &[f32], gamma: &[f32], saved: (&[f32], &[f32]),
    dnorm: &mut [f32]
));

/// dx of a chunk of rows (see [`layernorm_backward`]), given each row's saved (mean, rstd);
/// `dnorm` is scratch of one row.
#[inline(always)]
fn input_grad_rows_body(
    dx: &mut [f32],
    accumulate: bool,
    dout: &[f32],
    x: &[f32],
    gamma: &[f32],
    (mean, rstd): (&[f32], &[f32]),
    dnorm: &mut [f32],
) {
    let c = dnorm.len();
    let rows = dx.chunks_exact_mut(c).zip(dout.chunks_exact(c)).zip(x.chunks_exact(c));
    for (r, ((dx, dout), x)) in rows.enumerate() {
        let (m, s) = (mean[r], rstd[r]);
        dnorm.iter_mut().zip(dout).zip(gamma).for_each(|((dn, &d), &g)| *dn = d * g);
        let dnorm_mean = lane_sum(dnorm, dnorm, |dn, _| dn) / c as f32;
        let dnorm_norm_mean = lane_sum(dnorm, x, |dn, v| dn * (v - m) * s) / c as f32;
        let dxs = dx.iter_mut().zip(&*dnorm).zip(x);
        let grad = |dn: f32, v: f32| s * (dn - dnorm_mean - (v - m) * s * dnorm_norm_mean);
        if accumulate {
            dxs.for_each(|((dx, &dn), &v)| *dx += grad(dn, v));
        } else {
            dxs.for_each(|((dx, &dn), &v)| *dx = grad(dn, v));
        }
    }
}

crate::simd::simd_dispatch!(fn param_grad_rows => param_grad_rows_body(
    dg: &mut [f32], db: &mut [f32], dout: &[f32], x: &[f32], saved: (&[f32], &[f32])
));

/// Adds a chunk of rows' contributions to dgamma (`dg`) and dbeta (`db`).
#[inline(always)]
fn param_grad_rows_body(
    dg: &mut [f32],
    db: &mut [f32],
    dout: &[f32],
    x: &[f32],
    (mean, rstd): (&[f32], &[f32]),
) {
    let c = dg.len();
    for (r, (dout, x)) in dout.chunks_exact(c).zip(x.chunks_exact(c)).enumerate() {
        let (m, s) = (mean[r], rstd[r]);
        for (((dg, db), &d), &v) in dg.iter_mut().zip(db.iter_mut()).zip(dout).zip(x) {
            *dg += d * (v - m) * s;
            *db += d;
        }
    }
}

impl Tape {
    /// x (..., c), gamma (c), beta (c) → (..., c).
    pub fn layernorm(&mut self, x: TensorId, gamma: TensorId, beta: TensorId) -> TensorId {
        let xs = self.shape(x).to_vec();
        let (n, c) = rows_cols(&xs);
        let (gs, bs) = (self.shape(gamma), self.shape(beta));
        assert!(
            gs == [c] && bs == [c],
            "layernorm: x is {xs:?} but gamma is {gs:?} and beta is {bs:?}; both must be [{c}]"
        );
        let inputs = [x, gamma, beta];
        let out = self.alloc(&xs, self.any_needs_grad(&inputs));
        let mean = self.alloc(&[n], false);
        let rstd = self.alloc(&[n], false);
        let (ins, outs) = self.split_at_mut(out);
        let (out_t, saved) = outs.split_at_mut(1);
        let (mean_t, rstd_t) = saved.split_at_mut(1);
        layernorm_forward(
            &mut out_t[0].data,
            &mut mean_t[0].data,
            &mut rstd_t[0].data,
            &ins[x.0].data,
            &ins[gamma.0].data,
            &ins[beta.0].data,
            n,
            c,
        );
        self.record(Op::LayerNorm { n, c }, &inputs, out, &[mean, rstd], &[]);
        out
    }
}

pub(crate) fn backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize, c: usize) {
    let [x, gamma, beta] = [rec.inputs[0], rec.inputs[1], rec.inputs[2]];
    let (mean, rstd) = (tape.data(rec.saved[0]), tape.data(rec.saved[1]));
    let (xd, gd) = (tape.data(x), tape.data(gamma));
    let distinct = x != gamma && x != beta && gamma != beta;
    if distinct {
        // The usual case: one fused pass, with the parameter gradients taken out of
        // `grads` while dx is borrowed from it.
        let mut dgamma = tape.needs_grad(gamma).then(|| take_slot(grads, gamma, c));
        let mut dbeta = tape.needs_grad(beta).then(|| take_slot(grads, beta, c));
        let dx = tape.needs_grad(x).then(|| grads.slot_to_write(x, n * c));
        layernorm_backward(dx, dgamma.as_deref_mut(), dbeta.as_deref_mut(), dout, xd, gd, mean, rstd, n, c);
        if let Some(g) = dgamma {
            grads.put(gamma, g);
        }
        if let Some(g) = dbeta {
            grads.put(beta, g);
        }
    } else {
        // The same tensor passed twice: accumulate into one slot at a time.
        if tape.needs_grad(x) {
            layernorm_backward(
                Some((grads.slot(x, n * c), true)),
                None,
                None,
                dout,
                xd,
                gd,
                mean,
                rstd,
                n,
                c,
            );
        }
        if tape.needs_grad(gamma) {
            layernorm_backward(None, Some(grads.slot(gamma, c)), None, dout, xd, gd, mean, rstd, n, c);
        }
        if tape.needs_grad(beta) {
            layernorm_backward(None, None, Some(grads.slot(beta, c)), dout, xd, gd, mean, rstd, n, c);
        }
    }
}

/// Moves the gradient buffer of `id` (sized `numel`) out of `grads`; put it back with
/// [`Grads::put`].
fn take_slot(grads: &mut Grads, id: TensorId, numel: usize) -> Vec<f32> {
    grads.slot(id, numel);
    grads.take(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn layernorm_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(3);
        let x = Tensor::randn(&[3, 7, 37], 1.0, &mut rng);
        let gamma = Tensor::randn(&[37], 1.0, &mut rng);
        let beta = Tensor::randn(&[37], 1.0, &mut rng);
        gradcheck("layernorm", &[&x, &gamma, &beta], |tape, t| tape.layernorm(t[0], t[1], t[2]));
        gradcheck("layernorm (x, g, g)", &[&x, &gamma], |tape, t| tape.layernorm(t[0], t[1], t[1]));
        gradcheck("layernorm (g, g, g)", &[&gamma], |tape, t| tape.layernorm(t[0], t[0], t[0]));
    }

    #[test]
    fn vector_kernels_give_the_bits_of_the_portable_loops() {
        // 37 values per row: whole vectors and a remainder.
        let mut rng = Rng::seeded(5);
        let (n, c) = (5, 37);
        let data = |rng: &mut Rng, len| Tensor::randn(&[len], 1.0, rng).data;
        let (x, dout, gamma, beta) =
            (data(&mut rng, n * c), data(&mut rng, n * c), data(&mut rng, c), data(&mut rng, c));
        let run = |vector: bool| {
            let (mut out, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
            let (mut dx, mut dnorm, mut dg, mut db) =
                (vec![0.5; n * c], vec![0.0; c], vec![0.0; c], vec![0.0; c]);
            if vector {
                normalize_rows(&mut out, &x, (&gamma, &beta), (&mut mean, &mut rstd));
                input_grad_rows(&mut dx, true, &dout, &x, &gamma, (&mean, &rstd), &mut dnorm);
                param_grad_rows(&mut dg, &mut db, &dout, &x, (&mean, &rstd));
            } else {
                normalize_rows_body(&mut out, &x, (&gamma, &beta), (&mut mean, &mut rstd));
                input_grad_rows_body(&mut dx, true, &dout, &x, &gamma, (&mean, &rstd), &mut dnorm);
                param_grad_rows_body(&mut dg, &mut db, &dout, &x, (&mean, &rstd));
            }
            [out, mean, rstd, dx, dg, db].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    fn layernorm_output_has_zero_mean_and_unit_variance() {
        let mut rng = Rng::seeded(4);
        let (n, c) = (21, 19);
        let x = Tensor::randn(&[n, c], 3.0, &mut rng);
        let (mut out, mut mean, mut rstd) = (vec![f32::NAN; n * c], vec![f32::NAN; n], vec![f32::NAN; n]);
        layernorm_forward(&mut out, &mut mean, &mut rstd, &x.data, &[1.0; 19], &[0.0; 19], n, c);
        for row in out.chunks(c) {
            let m = row.iter().sum::<f32>() / c as f32;
            let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f32>() / c as f32;
            assert!(m.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "row mean {m}, variance {var}");
        }
    }

    #[test]
    #[should_panic(expected = "layernorm: x is [4, 8] but gamma is [9]")]
    fn layernorm_panics_on_mismatched_gamma() {
        let mut tape = Tape::new();
        let x = tape.constant(&[4, 8], &[0.0; 32]);
        let g = tape.constant(&[9], &[0.0; 9]);
        let b = tape.constant(&[8], &[0.0; 8]);
        tape.layernorm(x, g, b);
    }
}
