//! General matrix multiply, the hot loop of every transformer: C (m×n) (+)= A (m×k) · B (k×n)
//! with arbitrary row/column strides, so transposed operands need no copy.
//!
//! The work is split into output tiles of a fixed size and the tiles run in parallel
//! with rayon. Each output element is computed by exactly one task with the same order of
//! additions over k, so the result does not depend on the number of threads.

use rayon::prelude::*;

/// A read-only matrix operand: element (i, j) is at `data[i * rs + j * cs]`.
#[derive(Copy, Clone, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: cols, cs: 1 }
    }

    /// The transpose of a row-major matrix that has `cols` columns.
    pub fn transposed(data: &'a [f32], cols: usize) -> Mat<'a> {
        Mat { data, rs: 1, cs: cols }
    }
}

/// Output rows per parallel task.
const TILE_M: usize = 64;
/// Output columns per parallel task.
const TILE_N: usize = 256;

/// C (m×n, row-major, leading dimension n) = A · B, or += A · B when `accumulate`.
pub fn gemm(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    debug_assert!(c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    let beta = if accumulate { 1.0 } else { 0.0 };
    let tiles_n = n.div_ceil(TILE_N);
    // One task per (row block, column block); each task owns a disjoint part of C.
    let c_ptr = SendPtr(c.as_mut_ptr());
    let tiles_m = m.div_ceil(TILE_M);
    (0..tiles_m * tiles_n).into_par_iter().for_each(|tile| {
        let (tm, tn) = (tile / tiles_n, tile % tiles_n);
        let (i0, j0) = (tm * TILE_M, tn * TILE_N);
        let (mi, nj) = (TILE_M.min(m - i0), TILE_N.min(n - j0));
        let c_ptr = &c_ptr;
        // SAFETY: tiles are disjoint rectangles of C, each written by one task only, and
        // every operand index stays inside the slices checked by the debug assertions.
        unsafe {
            matrixmultiply::sgemm(
                mi,
                k,
                nj,
                1.0,
                a.data.as_ptr().add(i0 * a.rs),
                a.rs as isize,
                a.cs as isize,
                b.data.as_ptr().add(j0 * b.cs),
                b.rs as isize,
                b.cs as isize,
                beta,
                c_ptr.0.add(i0 * n + j0),
                n as isize,
                1,
            );
        }
    });
}

struct SendPtr(*mut f32);
// SAFETY: the pointer is only used to write disjoint tiles from different tasks.
unsafe impl Sync for SendPtr {}
unsafe impl Send for SendPtr {}

/// The plain triple loop, kept as the reference the fast path is tested against.
pub fn gemm_reference(m: usize, k: usize, n: usize, a: Mat, b: Mat, c: &mut [f32], accumulate: bool) {
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f32;
            for p in 0..k {
                sum += a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs];
            }
            let dst = &mut c[i * n + j];
            *dst = if accumulate { *dst + sum } else { sum };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn gemm_matches_reference_on_awkward_shapes_and_layouts() {
        let mut rng = Rng::seeded(1);
        for &(m, k, n) in &[(1, 1, 1), (7, 13, 5), (65, 33, 257), (130, 17, 300)] {
            let a = Tensor::randn(&[m, k], 1.0, &mut rng);
            let at = Tensor::randn(&[k, m], 1.0, &mut rng);
            let b = Tensor::randn(&[k, n], 1.0, &mut rng);
            let bt = Tensor::randn(&[n, k], 1.0, &mut rng);
            for (am, bm) in [
                (Mat::rows(&a.data, k), Mat::rows(&b.data, n)),
                (Mat::transposed(&at.data, m), Mat::transposed(&bt.data, k)),
            ] {
                for accumulate in [false, true] {
                    let mut fast = vec![0.5; m * n];
                    let mut slow = vec![0.5; m * n];
                    gemm(m, k, n, am, bm, &mut fast, accumulate);
                    gemm_reference(m, k, n, am, bm, &mut slow, accumulate);
                    for (x, y) in fast.iter().zip(&slow) {
                        assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "gemm ({m},{k},{n}): {x} vs {y}");
                    }
                }
            }
        }
    }
}
