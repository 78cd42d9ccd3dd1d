//! The GEMM micro-kernels: one generic register-tile loop ([`micro_kernel`]) over a small
//! SIMD abstraction ([`Simd`]), compiled for AVX-512, for AVX2 + FMA, and in plain Rust.
//!
//! Each `#[target_feature]` wrapper inlines the generic loop, so the loop is compiled with
//! that instruction set; the caller checks at run time that the CPU has it.

use super::KC;

/// A micro-kernel and the block sizes that suit it.
pub(super) trait Kernel {
    /// Rows of the register tile.
    const MR: usize;
    /// Columns of the register tile.
    const NR: usize;
    /// Most rows per output tile (a multiple of MR): the packed A block, MC×KC, sits in L2.
    const MC: usize;
    /// Runs one call. Safety: the CPU runs the kernel's instruction set, and the call's
    /// pointers cover what [`Call`] says.
    unsafe fn run(call: Call);
}

/// One micro-kernel call: C[0..MR, 0..NR] (leading dimension `rsc`) = acc, or C + acc
/// unless `overwrite`, where acc = Σ_p a_p ⊗ b_p over `kc` steps; `a` is a packed A panel
/// in `layout`, `b` a packed B panel of kc groups of NR values.
#[derive(Copy, Clone)]
pub(super) struct Call {
    pub kc: usize,
    pub a: *const f32,
    pub layout: Layout,
    pub b: *const f32,
    pub c: *mut f32,
    pub rsc: usize,
    pub overwrite: bool,
}

/// How a packed panel of MR rows of A is laid out: whichever makes packing a plain copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// kc groups of MR values, a[p·MR + r]: packed from an A that is not row-major.
    KMajor,
    /// MR rows of A_ROW_STRIDE values, a[r·A_ROW_STRIDE + p]: packed from a row-major A.
    Rows,
}

/// Row stride of a `Layout::Rows` panel: KC plus one cache line, so that the MR rows do
/// not all fall into the same few L1 sets.
pub(super) const A_ROW_STRIDE: usize = KC + 16;

/// The few SIMD operations the micro-kernel needs, over vectors of `LANES` f32.
pub(super) trait Simd {
    type V: Copy;
    const LANES: usize;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(x: f32) -> Self::V;
    unsafe fn load(p: *const f32) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    /// a · b + acc, rounded once.
    unsafe fn fma(a: Self::V, b: Self::V, acc: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// Hints that the cache line holding `p` will be needed soon.
    #[inline(always)]
    unsafe fn prefetch(_p: *const f32) {}
}

/// The register tile: MR rows × NV vectors of accumulators. Per step p it loads NV vectors
/// of B and, for each row r, broadcasts A's element (r, p), found at
/// `a[r·a_rs + p·a_ks]`, and does NV fused multiply-adds. Callers pass constant strides,
/// so that each layout gets its own loop with fixed offsets.
#[inline(always)]
pub(super) unsafe fn micro_kernel<S: Simd, const MR: usize, const NV: usize>(
    call: Call,
    (a_rs, a_ks): (usize, usize),
) {
    let Call { kc, a, b, c, rsc, overwrite, .. } = call;
    // C is touched only after the loop; start loading its lines now (it is often far away).
    for r in 0..MR {
        S::prefetch(c.add(r * rsc));
        S::prefetch(c.add(r * rsc + NV * S::LANES - 1));
    }
    let mut acc = [[S::zero(); NV]; MR];
    for p in 0..kc {
        let mut bv = [S::zero(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = S::load(b.add((p * NV + v) * S::LANES));
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let ar = S::splat(*a.add(r * a_rs + p * a_ks));
            for (x, &bx) in acc_row.iter_mut().zip(&bv) {
                *x = S::fma(ar, bx, *x);
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        for (v, &x) in acc_row.iter().enumerate() {
            let dst = c.add(r * rsc + v * S::LANES);
            S::store(dst, if overwrite { x } else { S::add(S::load(dst), x) });
        }
    }
}

/// (a_rs, a_ks) of a panel of `mr` rows in `layout`, for [`micro_kernel`].
#[inline(always)]
pub(super) const fn a_strides(layout: Layout, mr: usize) -> (usize, usize) {
    match layout {
        Layout::KMajor => (1, mr),
        Layout::Rows => (A_ROW_STRIDE, 1),
    }
}

/// The AVX-512 micro-kernel: 14 rows × 32 columns, 28 zmm accumulators.
pub(super) struct Avx512Kernel;
impl Kernel for Avx512Kernel {
    const MR: usize = 14;
    const NR: usize = 32;
    const MC: usize = 14 * 12;
    unsafe fn run(call: Call) {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(call: Call) {
            match call.layout {
                Layout::KMajor => micro_kernel::<x86::Avx512, 14, 2>(call, a_strides(Layout::KMajor, 14)),
                Layout::Rows => micro_kernel::<x86::Avx512, 14, 2>(call, a_strides(Layout::Rows, 14)),
            }
        }
        #[cfg(target_arch = "x86_64")]
        avx512(call);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm: the AVX-512 kernel exists only on x86_64 (kc = {})", call.kc);
    }
}

/// The AVX2 + FMA micro-kernel: 6 rows × 16 columns, 12 ymm accumulators.
pub(super) struct Avx2Kernel;
impl Kernel for Avx2Kernel {
    const MR: usize = 6;
    const NR: usize = 16;
    const MC: usize = 6 * 16;
    unsafe fn run(call: Call) {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(call: Call) {
            match call.layout {
                Layout::KMajor => micro_kernel::<x86::Avx2, 6, 2>(call, a_strides(Layout::KMajor, 6)),
                Layout::Rows => micro_kernel::<x86::Avx2, 6, 2>(call, a_strides(Layout::Rows, 6)),
            }
        }
        #[cfg(target_arch = "x86_64")]
        avx2(call);
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("gemm: the AVX2 kernel exists only on x86_64 (kc = {})", call.kc);
    }
}

/// The portable micro-kernel: 6 rows × 16 columns, any CPU.
pub(super) struct PortableKernel;
impl Kernel for PortableKernel {
    const MR: usize = 6;
    const NR: usize = 16;
    const MC: usize = 6 * 16;
    unsafe fn run(call: Call) {
        micro_kernel::<Portable<8>, 6, 2>(call, a_strides(call.layout, 6))
    }
}

/// A plain-Rust "vector" of L lanes, using `mul_add` so that it rounds exactly like the
/// SIMD kernels.
pub(super) struct Portable<const L: usize>;
impl<const L: usize> Simd for Portable<L> {
    type V = [f32; L];
    const LANES: usize = L;
    unsafe fn zero() -> [f32; L] {
        [0.0; L]
    }
    unsafe fn splat(x: f32) -> [f32; L] {
        [x; L]
    }
    unsafe fn load(p: *const f32) -> [f32; L] {
        std::ptr::read_unaligned(p as *const [f32; L])
    }
    unsafe fn store(p: *mut f32, v: [f32; L]) {
        std::ptr::write_unaligned(p as *mut [f32; L], v)
    }
    unsafe fn fma(a: [f32; L], b: [f32; L], acc: [f32; L]) -> [f32; L] {
        std::array::from_fn(|i| a[i].mul_add(b[i], acc[i]))
    }
    unsafe fn add(a: [f32; L], b: [f32; L]) -> [f32; L] {
        std::array::from_fn(|i| a[i] + b[i])
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// 8 lanes in a ymm register.
    pub struct Avx2;
    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, acc: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, acc)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
    }

    /// 16 lanes in a zmm register.
    pub struct Avx512;
    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, acc: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, acc)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn prefetch(p: *const f32) {
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
        }
    }
}
