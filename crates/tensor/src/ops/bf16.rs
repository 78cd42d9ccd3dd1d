//! bfloat16 weights for inference: the top 16 bits of an `f32` (sign, the whole 8-bit
//! exponent, 7 of the 23 mantissa bits), so the same range at half the bytes, with a
//! relative rounding error of at most 2⁻⁸ per value (8 significant bits). Sampling streams every weight once
//! per token, so at batch 1 it runs at the memory bandwidth divided by the weights' bytes;
//! halving the bytes nearly doubles the speed of a model whose weights do not fit in cache.
//!
//! The row kernels of `rows.rs` read a weight matrix of either element type through
//! [`WeightElem`]: a bfloat16 value widens to `f32` exactly (a shift by 16 bits; with AVX2,
//! eight at a time in registers), and every product and sum is the `f32` kernel's. So a
//! bfloat16 product gives the bits of the `f32` product over the widened weights.

/// One bfloat16 value, stored as its 16 bits.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub struct Bf16(pub u16);

impl Bf16 {
    /// The nearest bfloat16 to x, ties to even (values past the largest bfloat16 round to
    /// ±∞, as in IEEE arithmetic); a NaN stays a (quiet) NaN.
    pub fn from_f32(x: f32) -> Bf16 {
        let bits = x.to_bits();
        if x.is_nan() {
            return Bf16((bits >> 16) as u16 | 0x40);
        }
        // Adding 0x7fff rounds the low half up when it exceeds one half; the low bit of the
        // kept half breaks the exact tie towards an even result.
        let round = 0x7fff + ((bits >> 16) & 1);
        Bf16((bits.wrapping_add(round) >> 16) as u16)
    }

    /// The exact `f32` of this value.
    #[inline(always)]
    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

/// Every value of xs rounded to bfloat16 ([`Bf16::from_f32`]).
pub fn to_bf16(xs: &[f32]) -> Vec<Bf16> {
    xs.iter().map(|&x| Bf16::from_f32(x)).collect()
}

/// An element of a weight matrix the row kernels read: `f32`, or [`Bf16`] widened on the
/// fly. Sealed: the row kernels' safety rests on these two implementations.
pub trait WeightElem: Copy + Send + Sync + sealed::Sealed {
    /// The value as `f32` (exact for both types).
    fn widen(self) -> f32;

    /// Eight consecutive values from `p`, widened to `f32`.
    ///
    /// # Safety
    /// The CPU has AVX2, and `p` points at eight readable values.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for super::Bf16 {}
}

impl WeightElem for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl WeightElem for Bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }

    /// Eight u16 loaded, zero-extended to u32 and shifted left by 16: the `f32` bits.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load8(p: *const Bf16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        let halves = _mm_loadu_si128(p as *const __m128i);
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even_and_round_trips() {
        // Exactly representable values come back unchanged.
        for x in [0.0f32, -0.0, 1.0, -2.5, 0.15625, 1.7014118e38, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(Bf16::from_f32(x).to_f32().to_bits(), x.to_bits(), "{x}");
        }
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: the tie goes to the even 1.
        assert_eq!(Bf16::from_f32(1.0 + 1.0 / 256.0).to_f32(), 1.0);
        // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: the tie goes to the even 1 + 2⁻⁶.
        assert_eq!(Bf16::from_f32(1.0 + 3.0 / 256.0).to_f32(), 1.0 + 4.0 / 256.0);
        // Just above a half rounds up.
        assert_eq!(Bf16::from_f32(f32::from_bits(0x3f80_8001)).to_f32(), 1.0 + 1.0 / 128.0);
        assert!(Bf16::from_f32(f32::NAN).to_f32().is_nan());
        // Past the largest bfloat16, to infinity.
        assert_eq!(Bf16::from_f32(f32::MAX).to_f32(), f32::INFINITY);
    }

    #[test]
    fn relative_error_is_at_most_two_to_the_minus_eight() {
        let mut x = 1.0e-30f32;
        while x < 1.0e30 {
            for v in [x, -x, x * 1.37, x * 1.999] {
                let back = Bf16::from_f32(v).to_f32();
                assert!(((back - v) / v).abs() <= 1.0 / 256.0, "{v} → {back}");
            }
            x *= 3.7;
        }
    }
}
