//! A vectorisable `exp` for the softmax inside attention and cross-entropy.
//!
//! `f32::exp` calls the C library one element at a time, and a softmax over a row is
//! mostly exponentials, so it would dominate both kernels. Here `exp` is Cephes' `expf`
//! written as plain arithmetic (a range reduction to 2ⁿ · eʳ with |r| ≤ ln2/2, a degree-7
//! polynomial for eʳ, and 2ⁿ built from its exponent bits), which LLVM turns into SIMD
//! code. Its relative error is about 2e-7, close to one rounding of `f32`.
//!
//! [`exp_sum`] is the one entry point; it runs the widest build of the same loop the CPU
//! has (see [`crate::simd`]). No fused multiply-adds are used, so every build gives the
//! same bits.

/// Elements handled together: the width of the partial sums in [`exp_sum`].
const LANES: usize = 16;

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two so that n · LN2_HI is exact for the n that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Inputs are clamped to this range: below it eˣ is under f32's smallest normal number,
/// above it eˣ overflows.
const X_MIN: f32 = -87.3;
const X_MAX: f32 = 88.3;
/// 1.5 · 2²³: adding it rounds a float of magnitude < 2²² to an integer, which then sits
/// in the low bits of the sum's mantissa.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// eˣ to within about 2e-7 relative error, for x in [−87.3, 88.3] (clamped outside it).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    exp_with::<false>(x)
}

/// a · b + c: fused (one rounding, as `f32::mul_add`) when `FMA`, else a product then a sum.
/// Fused code is fast only where the caller is compiled for FMA (see [`crate::simd::vectorised`]).
#[inline(always)]
pub fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// [`exp`], with the polynomial's multiply-adds fused when `FMA` (slightly different bits).
#[inline(always)]
pub fn exp_with<const FMA: bool>(x: f32) -> f32 {
    let x = if x < X_MIN { X_MIN } else { x };
    let x = if x > X_MAX { X_MAX } else { x };
    // x = n · ln2 + r, with n the nearest integer to x / ln2.
    let shifted = x * LOG2E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = madd::<FMA>(-n, LN2_LO, madd::<FMA>(-n, LN2_HI, x));
    // eʳ by Cephes' polynomial.
    let mut p = 1.987_569_1e-4;
    p = madd::<FMA>(p, r, 1.398_199_9e-3);
    p = madd::<FMA>(p, r, 8.333_452e-3);
    p = madd::<FMA>(p, r, 4.166_579_6e-2);
    p = madd::<FMA>(p, r, 1.666_666_5e-1);
    p = madd::<FMA>(p, r, 0.5);
    let er = madd::<FMA>(p * r, r, r) + 1.0;
    // 2ⁿ: the integer n is in the low mantissa bits of `shifted`; put n + 127 in the exponent.
    let n_int = shifted.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()) as i32;
    let two_n = f32::from_bits(((n_int + 127) as u32) << 23);
    er * two_n
}

crate::simd::simd_dispatch!(
    /// `xs[i] ← exp(scale · xs[i] − shift)` for every element; returns `Σ xs[i]` after the
    /// update. The sum runs in `LANES` partial sums combined in a fixed order, so it depends
    /// only on the values, not on the CPU's vector width.
    pub fn exp_sum => exp_sum_body(xs: &mut [f32], scale: f32, shift: f32) -> f32
);

#[inline(always)]
fn exp_sum_body(xs: &mut [f32], scale: f32, shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = xs.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, x) in acc.iter_mut().zip(chunk.iter_mut()) {
            *x = exp(*x * scale - shift);
            *a += *x;
        }
    }
    for (a, x) in acc.iter_mut().zip(chunks.into_remainder()) {
        *x = exp(*x * scale - shift);
        *a += *x;
    }
    acc.iter().sum()
}

/// The largest element of a non-empty slice, in lanes so that LLVM vectorises it.
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (a, &x) in acc.iter_mut().zip(chunk) {
            *a = if x > *a { x } else { *a };
        }
    }
    for (a, &x) in acc.iter_mut().zip(chunks.remainder()) {
        *a = if x > *a { x } else { *a };
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &a| if a > m { a } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_a_few_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let rel = ((exp(x) as f64 - (x as f64).exp()) / (x as f64).exp()).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "exp: worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) < 1e-37 && exp(-1000.0) >= 0.0);
    }

    #[test]
    fn simd_and_portable_builds_give_the_same_bits() {
        let xs: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 30.0).collect();
        let (mut a, mut b) = (xs.clone(), xs);
        let (sa, sb) = (exp_sum(&mut a, 0.7, 2.0), exp_sum_body(&mut b, 0.7, 2.0));
        assert_eq!(sa.to_bits(), sb.to_bits());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }

    #[test]
    fn exp_sum_and_max_agree_with_plain_loops() {
        for len in [1usize, 7, 16, 33, 100] {
            let xs: Vec<f32> = (0..len).map(|i| ((i * 37 % 11) as f32) * 0.3 - 1.0).collect();
            let m = max(&xs);
            assert_eq!(m, xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
            let mut ys = xs.clone();
            let sum = exp_sum(&mut ys, 0.5, 0.25);
            let expect: f64 = xs.iter().map(|&x| (0.5 * x as f64 - 0.25).exp()).sum();
            assert!((sum as f64 - expect).abs() < 1e-5 * expect, "exp_sum len {len}: {sum} vs {expect}");
            for (y, x) in ys.iter().zip(&xs) {
                assert!((*y as f64 - (0.5 * *x as f64 - 0.25).exp()).abs() < 1e-6);
            }
        }
    }
}
