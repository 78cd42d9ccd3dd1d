//! Root-mean-square normalisation (Zhang & Sennrich 2019): each vector divided by its RMS,
//! with no mean subtracted and no shift. Two ops share its kernels: `rmsnorm`, over the
//! last dimension with a gain (the model's RMSNorm layers), and `qk_norm`, over each
//! attention head's query and key inside a fused q/k/v row, without a gain (QK-norm).
//! Forward saves each vector's reciprocal RMS (rstd) so backward need not recompute it.

use crate::grads::Grads;
use crate::ops::elementwise::lane_sum;
use crate::ops::layernorm::EPS;
use crate::ops::{rows_cols, ROW_CHUNK};
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// For each row r of x:
///
/// ```text
/// rstd[r] = 1 / √(Σ_i x_i² / c + EPS)
/// out_i   = x_i · rstd · gamma_i
/// ```
///
/// x: (n, c)  gamma: (c)  →  out: (n, c). Saves rstd (n). EPS is the layer norm's.
pub fn rmsnorm_forward(out: &mut [f32], rstd: &mut [f32], x: &[f32], gamma: &[f32], n: usize, c: usize) {
    debug_assert!(out.len() == n * c && x.len() == n * c && rstd.len() == n && gamma.len() == c);
    if c == 0 {
        return;
    }
    out.par_chunks_mut(ROW_CHUNK * c)
        .zip(x.par_chunks(ROW_CHUNK * c))
        .zip(rstd.par_chunks_mut(ROW_CHUNK))
        .for_each(|((out, x), rstd)| normalize_rows(out, x, Some(gamma), rstd, c));
}

crate::simd::simd_dispatch!(pub(crate) fn normalize_rows => normalize_rows_body(
    out: &mut [f32], x: &[f32], gamma: Option<&[f32]>, rstd: &mut [f32], c: usize
));

/// The forward of a chunk of vectors of c values (see [`rmsnorm_forward`]): out from x
/// and gamma (none: a gain of 1), each vector's rstd saved. `out` may not alias `x`;
/// the same bits come from every variant (no fused multiply-adds).
#[inline(always)]
fn normalize_rows_body(out: &mut [f32], x: &[f32], gamma: Option<&[f32]>, rstd: &mut [f32], c: usize) {
    for ((out, x), rstd) in out.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(rstd) {
        let s = 1.0 / (lane_sum(x, x, |v, _| v * v) / c as f32 + EPS).sqrt();
        match gamma {
            Some(gamma) => out.iter_mut().zip(x).zip(gamma).for_each(|((o, &v), &g)| *o = v * s * g),
            None => out.iter_mut().zip(x).for_each(|(o, &v)| *o = v * s),
        }
        *rstd = s;
    }
}

/// Backward of RMS normalisation. Forward, per vector: norm_i = x_i · rstd and
/// out_i = norm_i · gamma_i. Then, with dnorm_i = dout_i · gamma_i,
///   dgamma_i += Σ_rows dout_i · norm_i
///   dx_i     += rstd · (dnorm_i − norm_i · mean_j(dnorm_j · norm_j))
/// The dx line: ∂norm_j/∂x_i = rstd · (δ_ij − norm_i · norm_j / c), because
/// ∂rstd/∂x_i = −rstd³ · x_i / c = −rstd² · norm_i / c (layer norm's without the mean).
/// dout, x: (n, c)  gamma: (c) or none  rstd: (n) as saved. dx comes with whether to add
/// into it (`true`) or overwrite it; dgamma sums rows in chunks of [`ROW_CHUNK`] added
/// in order, so the result does not depend on the thread count.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm_backward(
    dx: Option<(&mut [f32], bool)>,
    dgamma: Option<&mut [f32]>,
    dout: &[f32],
    x: &[f32],
    gamma: Option<&[f32]>,
    rstd: &[f32],
    n: usize,
    c: usize,
) {
    debug_assert!(dout.len() == n * c && x.len() == n * c && rstd.len() == n);
    if c == 0 {
        return;
    }
    if let Some((dx, accumulate)) = dx {
        dx.par_chunks_mut(ROW_CHUNK * c)
            .zip(dout.par_chunks(ROW_CHUNK * c))
            .zip(x.par_chunks(ROW_CHUNK * c))
            .zip(rstd.par_chunks(ROW_CHUNK))
            .for_each(|(((dx, dout), x), rstd)| {
                let mut dnorm = vec![0.0f32; c];
                input_grad_rows(dx, accumulate, dout, x, gamma, rstd, &mut dnorm);
            });
    }
    if let Some(dgamma) = dgamma {
        let partials: Vec<Vec<f32>> = dout
            .par_chunks(ROW_CHUNK * c)
            .zip(x.par_chunks(ROW_CHUNK * c))
            .zip(rstd.par_chunks(ROW_CHUNK))
            .map(|((dout, x), rstd)| {
                let mut dg = vec![0.0f32; c];
                gain_grad_rows(&mut dg, dout, x, rstd);
                dg
            })
            .collect();
        for dg in &partials {
            dgamma.iter_mut().zip(dg).for_each(|(a, v)| *a += v);
        }
    }
}

crate::simd::simd_dispatch!(fn input_grad_rows => input_grad_rows_body(
    dx: &mut [f32], accumulate: bool, dout: &[f32], x: &[f32], gamma: Option<&[f32]>, rstd: &[f32],
    dnorm: &mut [f32]
));

/// dx of a chunk of vectors (see [`rmsnorm_backward`]); `dnorm` is scratch of one vector.
#[inline(always)]
fn input_grad_rows_body(
    dx: &mut [f32],
    accumulate: bool,
    dout: &[f32],
    x: &[f32],
    gamma: Option<&[f32]>,
    rstd: &[f32],
    dnorm: &mut [f32],
) {
    let c = dnorm.len();
    let rows = dx.chunks_exact_mut(c).zip(dout.chunks_exact(c)).zip(x.chunks_exact(c)).zip(rstd);
    for (((dx, dout), x), &s) in rows {
        match gamma {
            Some(gamma) => dnorm.iter_mut().zip(dout).zip(gamma).for_each(|((dn, &d), &g)| *dn = d * g),
            None => dnorm.copy_from_slice(dout),
        }
        let dnorm_norm_mean = lane_sum(dnorm, x, |dn, v| dn * v * s) / c as f32;
        let dxs = dx.iter_mut().zip(&*dnorm).zip(x);
        let grad = |dn: f32, v: f32| s * (dn - v * s * dnorm_norm_mean);
        if accumulate {
            dxs.for_each(|((dx, &dn), &v)| *dx += grad(dn, v));
        } else {
            dxs.for_each(|((dx, &dn), &v)| *dx = grad(dn, v));
        }
    }
}

crate::simd::simd_dispatch!(fn gain_grad_rows => gain_grad_rows_body(
    dg: &mut [f32], dout: &[f32], x: &[f32], rstd: &[f32]
));

/// Adds a chunk of rows' contributions to dgamma (`dg`).
#[inline(always)]
fn gain_grad_rows_body(dg: &mut [f32], dout: &[f32], x: &[f32], rstd: &[f32]) {
    let c = dg.len();
    for ((dout, x), &s) in dout.chunks_exact(c).zip(x.chunks_exact(c)).zip(rstd) {
        dg.iter_mut().zip(dout).zip(x).for_each(|((dg, &d), &v)| *dg += d * v * s);
    }
}

/// QK-norm of fused q/k/v rows: in each row of 3·nh·hs values (q, then k, then v; heads
/// side by side within each), every head's q and k divided by its RMS (no gain), v
/// copied. qkv, out: (n, 3·nh·hs). Saves rstd (n, 2·nh): q's heads, then k's.
pub fn qk_norm_forward(out: &mut [f32], rstd: &mut [f32], qkv: &[f32], n: usize, nh: usize, hs: usize) {
    let row = 3 * nh * hs;
    debug_assert!(out.len() == n * row && qkv.len() == n * row && rstd.len() == n * 2 * nh);
    if row == 0 {
        return;
    }
    out.par_chunks_mut(ROW_CHUNK * row)
        .zip(qkv.par_chunks(ROW_CHUNK * row))
        .zip(rstd.par_chunks_mut(ROW_CHUNK * 2 * nh))
        .for_each(|((out, qkv), rstd)| {
            for ((out, qkv), rstd) in
                out.chunks_exact_mut(row).zip(qkv.chunks_exact(row)).zip(rstd.chunks_exact_mut(2 * nh))
            {
                let (qk_out, v_out) = out.split_at_mut(2 * nh * hs);
                normalize_rows(qk_out, &qkv[..2 * nh * hs], None, rstd, hs);
                v_out.copy_from_slice(&qkv[2 * nh * hs..]);
            }
        });
}

/// Backward of QK-norm: each head's q and k through [`rmsnorm_backward`]'s dx without a
/// gain; v's gradient passes through. dqkv, dout, qkv: (n, 3·nh·hs)  rstd: (n, 2·nh).
#[allow(clippy::too_many_arguments)]
pub fn qk_norm_backward(
    dqkv: &mut [f32],
    accumulate: bool,
    dout: &[f32],
    qkv: &[f32],
    rstd: &[f32],
    n: usize,
    nh: usize,
    hs: usize,
) {
    let row = 3 * nh * hs;
    debug_assert!(dqkv.len() == n * row && dout.len() == n * row && rstd.len() == n * 2 * nh);
    if row == 0 {
        return;
    }
    dqkv.par_chunks_mut(ROW_CHUNK * row)
        .zip(dout.par_chunks(ROW_CHUNK * row))
        .zip(qkv.par_chunks(ROW_CHUNK * row))
        .zip(rstd.par_chunks(ROW_CHUNK * 2 * nh))
        .for_each(|(((dqkv, dout), qkv), rstd)| {
            let mut dnorm = vec![0.0f32; hs];
            let rows = dqkv.chunks_exact_mut(row).zip(dout.chunks_exact(row)).zip(qkv.chunks_exact(row));
            for (((dx, dout), x), rstd) in rows.zip(rstd.chunks_exact(2 * nh)) {
                let qk = 2 * nh * hs;
                let (dqk, dv) = dx.split_at_mut(qk);
                input_grad_rows(dqk, accumulate, &dout[..qk], &x[..qk], None, rstd, &mut dnorm);
                if accumulate {
                    dv.iter_mut().zip(&dout[qk..]).for_each(|(dx, &d)| *dx += d);
                } else {
                    dv.copy_from_slice(&dout[qk..]);
                }
            }
        });
}

impl Tape {
    /// RMSNorm: x (..., c), gamma (c) → (..., c).
    pub fn rmsnorm(&mut self, x: TensorId, gamma: TensorId) -> TensorId {
        let xs = self.shape(x).to_vec();
        let (n, c) = rows_cols(&xs);
        let gs = self.shape(gamma);
        assert!(gs == [c], "rmsnorm: x is {xs:?} but gamma is {gs:?}; it must be [{c}]");
        let out = self.alloc(&xs, self.any_needs_grad(&[x, gamma]));
        let rstd = self.alloc(&[n], false);
        let (ins, outs) = self.split_at_mut(out);
        let (out_t, rstd_t) = outs.split_at_mut(1);
        rmsnorm_forward(&mut out_t[0].data, &mut rstd_t[0].data, &ins[x.0].data, &ins[gamma.0].data, n, c);
        self.record(Op::RmsNorm { n, c }, &[x, gamma], out, &[rstd], &[]);
        out
    }

    /// QK-norm: qkv (b, t, 3C) with C = n_head · hs → (b, t, 3C), each head's q and k
    /// RMS-normalised without a gain, v unchanged.
    pub fn qk_norm(&mut self, qkv: TensorId, n_head: usize) -> TensorId {
        let shape = self.shape(qkv).to_vec();
        let (n, row) = rows_cols(&shape);
        assert!(
            n_head > 0 && row.is_multiple_of(3 * n_head),
            "qk_norm: qkv is {shape:?}; its last dimension must be 3 · n_head · head size with n_head = {n_head}"
        );
        let hs = row / (3 * n_head);
        let out = self.alloc(&shape, self.any_needs_grad(&[qkv]));
        let rstd = self.alloc(&[n, 2 * n_head], false);
        let (ins, outs) = self.split_at_mut(out);
        let (out_t, rstd_t) = outs.split_at_mut(1);
        qk_norm_forward(&mut out_t[0].data, &mut rstd_t[0].data, &ins[qkv.0].data, n, n_head, hs);
        self.record(Op::QkNorm { n, nh: n_head, hs }, &[qkv], out, &[rstd], &[]);
        out
    }
}

pub(crate) fn backward(tape: &Tape, rec: &Record, dout: &[f32], grads: &mut Grads, n: usize, c: usize) {
    let (x, gamma) = (rec.inputs[0], rec.inputs[1]);
    let rstd = tape.data(rec.saved[0]);
    let (xd, gd) = (tape.data(x), tape.data(gamma));
    if x != gamma {
        let mut dgamma = tape.needs_grad(gamma).then(|| {
            grads.slot(gamma, c);
            grads.take(gamma)
        });
        let dx = tape.needs_grad(x).then(|| grads.slot_to_write(x, n * c));
        rmsnorm_backward(dx, dgamma.as_deref_mut(), dout, xd, Some(gd), rstd, n, c);
        if let Some(g) = dgamma {
            grads.put(gamma, g);
        }
    } else if tape.needs_grad(x) {
        // The same tensor as input and gain: one contribution at a time into one slot.
        rmsnorm_backward(Some((grads.slot(x, n * c), true)), None, dout, xd, Some(gd), rstd, n, c);
        rmsnorm_backward(None, Some(grads.slot(x, c)), dout, xd, Some(gd), rstd, n, c);
    }
}

pub(crate) fn qk_norm_backward_op(
    tape: &Tape,
    rec: &Record,
    dout: &[f32],
    grads: &mut Grads,
    n: usize,
    nh: usize,
    hs: usize,
) {
    let qkv = rec.inputs[0];
    let rstd = tape.data(rec.saved[0]);
    let (dqkv, accumulate) = grads.slot_to_write(qkv, n * 3 * nh * hs);
    qk_norm_backward(dqkv, accumulate, dout, tape.data(qkv), rstd, n, nh, hs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn rmsnorm_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(3);
        let x = Tensor::randn(&[3, 7, 37], 1.0, &mut rng);
        let gamma = Tensor::randn(&[37], 1.0, &mut rng);
        gradcheck("rmsnorm", &[&x, &gamma], |tape, t| tape.rmsnorm(t[0], t[1]));
        gradcheck("rmsnorm (g, g)", &[&gamma], |tape, t| tape.rmsnorm(t[0], t[0]));
    }

    #[test]
    fn qk_norm_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(4);
        // 20 rows (more than one chunk), 3 heads of 6.
        let qkv = Tensor::randn(&[2, 10, 3 * 3 * 6], 1.0, &mut rng);
        gradcheck("qk_norm", &[&qkv], |tape, t| tape.qk_norm(t[0], 3));
        // Used twice, so the second backward adds into the first's gradient.
        gradcheck("qk_norm (twice)", &[&qkv], |tape, t| {
            let a = tape.qk_norm(t[0], 3);
            let b = tape.qk_norm(t[0], 3);
            tape.add(a, b)
        });
    }

    #[test]
    fn qk_norm_gives_unit_rms_heads_and_keeps_v() {
        let mut rng = Rng::seeded(5);
        let (n, nh, hs) = (5, 2, 8);
        let qkv = Tensor::randn(&[n, 3 * nh * hs], 3.0, &mut rng);
        let (mut out, mut rstd) = (vec![f32::NAN; qkv.numel()], vec![f32::NAN; n * 2 * nh]);
        qk_norm_forward(&mut out, &mut rstd, &qkv.data, n, nh, hs);
        for (row, x) in out.chunks(3 * nh * hs).zip(qkv.data.chunks(3 * nh * hs)) {
            for head in row[..2 * nh * hs].chunks(hs) {
                let ms = head.iter().map(|v| v * v).sum::<f32>() / hs as f32;
                assert!((ms - 1.0).abs() < 1e-3, "a head's mean square is {ms}");
            }
            assert_eq!(&row[2 * nh * hs..], &x[2 * nh * hs..], "v is copied");
        }
    }

    #[test]
    fn vector_kernels_give_the_bits_of_the_portable_loops() {
        let mut rng = Rng::seeded(5);
        let (n, c) = (5, 37);
        let data = |rng: &mut Rng, len| Tensor::randn(&[len], 1.0, rng).data;
        let (x, dout, gamma) = (data(&mut rng, n * c), data(&mut rng, n * c), data(&mut rng, c));
        let run = |vector: bool| {
            let (mut out, mut rstd) = (vec![0.0; n * c], vec![0.0; n]);
            let (mut dx, mut dnorm, mut dg) = (vec![0.5; n * c], vec![0.0; c], vec![0.0; c]);
            if vector {
                normalize_rows(&mut out, &x, Some(&gamma), &mut rstd, c);
                input_grad_rows(&mut dx, true, &dout, &x, Some(&gamma), &rstd, &mut dnorm);
                gain_grad_rows(&mut dg, &dout, &x, &rstd);
            } else {
                normalize_rows_body(&mut out, &x, Some(&gamma), &mut rstd, c);
                input_grad_rows_body(&mut dx, true, &dout, &x, Some(&gamma), &rstd, &mut dnorm);
                gain_grad_rows_body(&mut dg, &dout, &x, &rstd);
            }
            [out, rstd, dx, dg].map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
        };
        assert_eq!(run(true), run(false));
    }

    #[test]
    #[should_panic(expected = "rmsnorm: x is [4, 8] but gamma is [9]")]
    fn rmsnorm_panics_on_mismatched_gamma() {
        let mut tape = Tape::new();
        let x = tape.constant(&[4, 8], &[0.0; 32]);
        let g = tape.constant(&[9], &[0.0; 9]);
        tape.rmsnorm(x, g);
    }
}
