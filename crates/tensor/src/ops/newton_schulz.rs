//! Orthogonalisation by a quintic Newton-Schulz iteration, the core of the Muon optimizer
//! (Keller Jordan, 2024, "Muon: An optimizer for hidden layers in neural networks").
//!
//! For x = U Σ Vᵀ, the iteration maps x to U f(Σ) Vᵀ, where f applies the odd polynomial
//! p(σ) = a·σ + b·σ³ + c·σ⁵ to each singular value, `steps` times, after x is scaled to a
//! Frobenius norm of 1 (so every σ ≤ 1). The coefficients (3.4445, −4.7750, 2.0315) make
//! p steep at 0 (slope a), so small singular values grow fast, at the price of not
//! converging to exactly 1: after five steps every σ above about 1% of the largest lands in
//! roughly [0.68, 1.13]. The result is close to the orthogonal factor U Vᵀ, the update
//! Muon applies, in a handful of matrix products and without an SVD.
//!
//! Written with X Xᵀ it is X ← a·X + (b·A + c·A²)·X with A = X Xᵀ; for a tall matrix the
//! same polynomial reads X ← a·X + X·(b·A + c·A²) with A = XᵀX, so the Gram matrix is
//! always the smaller one (min(rows, cols) squared). Every product is the GEMM's, so the
//! result does not depend on the thread count.

use crate::gemm::{gemm, Mat};
use crate::ops::reduce::kernels::sum_squares;

/// The quintic's coefficients (a, b, c), Keller Jordan's.
pub const NEWTON_SCHULZ_COEFFICIENTS: (f32, f32, f32) = (3.4445, -4.7750, 2.0315);

/// Iterations Muon runs.
pub const NEWTON_SCHULZ_STEPS: usize = 5;

/// Replaces x: (rows, cols), row-major, by `steps` quintic Newton-Schulz iterations of
/// x / (‖x‖_F + 1e-7): an approximation of x's orthogonal factor U Vᵀ (see the module
/// comment). A zero matrix stays zero.
pub fn newton_schulz(x: &mut [f32], rows: usize, cols: usize, steps: usize) {
    assert_eq!(x.len(), rows * cols, "newton_schulz: x has {} values, not {rows} × {cols}", x.len());
    let (a, b, c) = NEWTON_SCHULZ_COEFFICIENTS;
    let inv_norm = (1.0 / (sum_squares(x).sqrt() + 1e-7)) as f32;
    x.iter_mut().for_each(|v| *v *= inv_norm);
    let wide = rows <= cols;
    let k = rows.min(cols);
    let mut gram = vec![0.0f32; k * k];
    let mut poly = vec![0.0f32; k * k];
    let mut next = vec![0.0f32; rows * cols];
    for _ in 0..steps {
        // A = X Xᵀ (wide) or XᵀX (tall): (k, k)
        if wide {
            gemm(k, cols, k, Mat::rows(x, cols), Mat::transposed(x, cols), &mut gram, false);
        } else {
            gemm(k, rows, k, Mat::transposed(x, cols), Mat::rows(x, cols), &mut gram, false);
        }
        // B = b·A + c·A²: (k, k)
        gemm(k, k, k, Mat::rows(&gram, k), Mat::rows(&gram, k), &mut poly, false);
        poly.iter_mut().zip(&gram).for_each(|(p, &g)| *p = b * g + c * *p);
        // X ← a·X + B·X (wide) or a·X + X·B (tall): (rows, cols)
        next.iter_mut().zip(x.iter()).for_each(|(n, &v)| *n = a * v);
        if wide {
            gemm(rows, k, cols, Mat::rows(&poly, k), Mat::rows(x, cols), &mut next, true);
        } else {
            gemm(rows, k, cols, Mat::rows(x, cols), Mat::rows(&poly, k), &mut next, true);
        }
        x.copy_from_slice(&next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    /// `n` orthonormal columns of length `len` (len ≥ n), as a (len, n) row-major matrix:
    /// Gram-Schmidt on random vectors, in f64.
    fn orthonormal(len: usize, n: usize, rng: &mut Rng) -> Vec<f64> {
        let mut cols: Vec<Vec<f64>> = Vec::new();
        while cols.len() < n {
            let mut v: Vec<f64> = (0..len).map(|_| rng.normal() as f64).collect();
            for u in &cols {
                let dot: f64 = v.iter().zip(u).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(u).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            cols.push(v.iter().map(|a| a / norm).collect());
        }
        (0..len * n).map(|i| cols[i % n][i / n]).collect()
    }

    /// U diag(s) Vᵀ: (rows, cols) from U (rows, k), V (cols, k).
    fn compose(u: &[f64], s: &[f64], v: &[f64], rows: usize, cols: usize) -> Vec<f64> {
        let k = s.len();
        let mut x = vec![0.0; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                x[i * cols + j] = (0..k).map(|l| u[i * k + l] * s[l] * v[j * k + l]).sum();
            }
        }
        x
    }

    /// A matrix with singular values from 1 down to 1/100 comes out as U f(Σ) Vᵀ, f the
    /// scalar iteration run in f64, and every singular value lands in [0.68, 1.14].
    #[test]
    fn an_ill_conditioned_matrix_comes_out_nearly_orthogonal() {
        let mut rng = Rng::seeded(5);
        for (rows, cols) in [(16, 48), (48, 16), (16, 16)] {
            let k: usize = rows.min(cols);
            let s: Vec<f64> = (0..k).map(|i| 10f64.powf(-2.0 * i as f64 / (k - 1) as f64)).collect();
            let (u, v) = (orthonormal(rows, k, &mut rng), orthonormal(cols, k, &mut rng));
            let x = compose(&u, &s, &v, rows, cols);
            let mut got: Vec<f32> = x.iter().map(|&a| a as f32).collect();
            newton_schulz(&mut got, rows, cols, NEWTON_SCHULZ_STEPS);

            let norm = s.iter().map(|a| a * a).sum::<f64>().sqrt();
            let (a, b, c) = (3.4445f64, -4.7750f64, 2.0315f64);
            let f: Vec<f64> = s
                .iter()
                .map(|&sigma| {
                    (0..NEWTON_SCHULZ_STEPS).fold(sigma / norm, |x, _| a * x + b * x.powi(3) + c * x.powi(5))
                })
                .collect();
            assert!(f.iter().all(|&x| (0.68..1.14).contains(&x)), "singular values after: {f:?}");
            let want = compose(&u, &f, &v, rows, cols);
            let worst = got.iter().zip(&want).map(|(&g, w)| (g as f64 - w).abs()).fold(0.0, f64::max);
            assert!(worst < 2e-5, "({rows}, {cols}): max |ours − U f(Σ) Vᵀ| = {worst:e}");

            // Orthogonality error: the Gram matrix of the shorter side is I up to f² − 1.
            let gram_error = (0..k)
                .flat_map(|i| (0..k).map(move |j| (i, j)))
                .map(|(i, j)| {
                    let dot: f64 = if rows <= cols {
                        (0..cols).map(|l| got[i * cols + l] as f64 * got[j * cols + l] as f64).sum()
                    } else {
                        (0..rows).map(|l| got[l * cols + i] as f64 * got[l * cols + j] as f64).sum()
                    };
                    (dot - if i == j { 1.0 } else { 0.0 }).abs()
                })
                .fold(0.0, f64::max);
            let bound = f.iter().map(|x| (x * x - 1.0).abs()).fold(0.0, f64::max);
            assert!(gram_error <= bound + 1e-4, "orthogonality error {gram_error} past {bound}");
            assert!(gram_error < 0.54, "orthogonality error {gram_error}");
        }
    }

    #[test]
    fn zero_stays_zero() {
        let mut x = vec![0.0f32; 12];
        newton_schulz(&mut x, 3, 4, NEWTON_SCHULZ_STEPS);
        assert!(x.iter().all(|&v| v == 0.0));
    }
}
