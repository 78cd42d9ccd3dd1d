//! Principal component analysis, computed here: the covariance of the rows (d × d, in
//! f64), its eigenvectors by the cyclic Jacobi method, and the projection of any row onto
//! the leading ones. Enough for pictures of embeddings (d up to a few hundred).

/// The leading principal components of a set of rows.
#[derive(Clone, Debug)]
pub struct Pca {
    /// The mean row (d).
    pub mean: Vec<f64>,
    /// The components, unit vectors, largest variance first (k × d).
    pub components: Vec<Vec<f64>>,
    /// The variance along each component (k).
    pub variance: Vec<f64>,
    /// The total variance (the covariance's trace), to say how much the k components explain.
    pub total_variance: f64,
}

impl Pca {
    /// The first `k` components of `rows` (n rows of d values, row-major). Each component's
    /// sign is chosen so that its largest entry is positive, so the picture is the same
    /// from run to run. Panics when `rows` is not n × d or k > d.
    pub fn fit(rows: &[f32], d: usize, k: usize) -> Pca {
        assert!(
            d > 0 && rows.len().is_multiple_of(d) && k <= d,
            "Pca::fit: {} values are not rows of {d}, or k = {k} > d",
            rows.len()
        );
        let n = rows.len() / d;
        let mut mean = vec![0.0f64; d];
        for row in rows.chunks_exact(d) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += f64::from(x));
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut cov = vec![0.0f64; d * d];
        for row in rows.chunks_exact(d) {
            let centred: Vec<f64> = row.iter().zip(&mean).map(|(&x, m)| f64::from(x) - m).collect();
            for i in 0..d {
                for j in i..d {
                    cov[i * d + j] += centred[i] * centred[j];
                }
            }
        }
        let denominator = n.saturating_sub(1).max(1) as f64;
        for i in 0..d {
            for j in i..d {
                cov[i * d + j] /= denominator;
                cov[j * d + i] = cov[i * d + j];
            }
        }
        let total_variance = (0..d).map(|i| cov[i * d + i]).sum();
        let (values, vectors) = jacobi_eigen(cov, d);
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let components = order[..k]
            .iter()
            .map(|&col| {
                let mut v: Vec<f64> = (0..d).map(|row| vectors[row * d + col]).collect();
                let largest = v.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
                if largest < 0.0 {
                    v.iter_mut().for_each(|x| *x = -*x);
                }
                v
            })
            .collect();
        let variance = order[..k].iter().map(|&i| values[i]).collect();
        Pca { mean, components, variance, total_variance }
    }

    /// The coordinates of `row` (d) along each component.
    pub fn project(&self, row: &[f32]) -> Vec<f64> {
        self.components
            .iter()
            .map(|c| {
                c.iter().zip(row.iter().zip(&self.mean)).map(|(c, (&x, m))| c * (f64::from(x) - m)).sum()
            })
            .collect()
    }

    /// The share of the total variance the components explain, in [0, 1].
    pub fn explained(&self) -> f64 {
        if self.total_variance > 0.0 {
            self.variance.iter().sum::<f64>() / self.total_variance
        } else {
            0.0
        }
    }
}

/// Eigenvalues and eigenvectors (as the columns of a d × d row-major matrix) of the
/// symmetric matrix `a`, by cyclic Jacobi rotations (Golub & Van Loan, §8.5): each
/// rotation zeroes one off-diagonal pair; sweeps repeat until the off-diagonal part is
/// negligible against the diagonal.
pub fn jacobi_eigen(mut a: Vec<f64>, d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; d * d];
    (0..d).for_each(|i| v[i * d + i] = 1.0);
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        let diag: f64 = (0..d).map(|i| a[i * d + i].powi(2)).sum();
        if off <= 1e-24 * diag.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation (c, s) with tan 2θ = 2 a_pq / (a_qq − a_pp), the smaller angle.
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_finds_the_eigenpairs_of_a_known_matrix() {
        // [[2, 1, 0], [1, 2, 0], [0, 0, 5]]: eigenvalues 5, 3 (along (1, 1, 0)/√2), 1.
        let (values, vectors) = jacobi_eigen(vec![2.0, 1.0, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0, 5.0], 3);
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for (got, want) in sorted.iter().zip([5.0, 3.0, 1.0]) {
            assert!((got - want).abs() < 1e-12, "eigenvalues {values:?}");
        }
        let three = values.iter().position(|v| (v - 3.0).abs() < 1e-9).expect("eigenvalue 3");
        let column: Vec<f64> = (0..3).map(|r| vectors[r * 3 + three].abs()).collect();
        let h = 0.5f64.sqrt();
        assert!((column[0] - h).abs() < 1e-12 && (column[1] - h).abs() < 1e-12 && column[2] < 1e-12);
    }

    #[test]
    fn pca_matches_numpy_on_a_small_matrix() {
        // Reference: numpy.linalg.eigh of numpy.cov(X.T) for these 6 rows of 4 values
        // (the eigenvalues, largest first, and the first component up to its sign).
        let x: [f32; 24] = [
            2.5, 2.4, 0.5, 1.0, 0.5, 0.7, -1.0, 0.3, 2.2, 2.9, 0.1, 0.8, 1.9, 2.2, 0.7, -0.4, 3.1, 3.0, -0.3,
            0.2, 2.3, 2.7, 1.2, 0.6,
        ];
        let pca = Pca::fit(&x, 4, 2);
        let want_values = [REF_VALUES[0], REF_VALUES[1]];
        for (got, want) in pca.variance.iter().zip(want_values) {
            assert!((got - want).abs() < 1e-9, "variance {got} vs numpy {want}");
        }
        let sign =
            if REF_FIRST.iter().copied().fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m }) < 0.0 {
                -1.0
            } else {
                1.0
            };
        for (got, want) in pca.components[0].iter().zip(REF_FIRST) {
            assert!(
                (got - sign * want).abs() < 1e-9,
                "first component {:?} vs numpy {REF_FIRST:?}",
                pca.components[0]
            );
        }
        let total: f64 = REF_VALUES.iter().sum();
        assert!((pca.total_variance - total).abs() < 1e-9);
        // Projections are centred: they sum to zero over the rows.
        let sum: f64 = x.chunks_exact(4).map(|r| pca.project(r)[0]).sum();
        assert!(sum.abs() < 1e-9);
    }

    const REF_VALUES: [f64; 4] =
        [1.6782734927884093, 0.38370800583992926, 0.23357276428307977, 0.041445760095980264];
    const REF_FIRST: [f64; 4] =
        [-0.6393984078253541, -0.6360646647598663, -0.4221416937084784, -0.09158498101358549];
}
