//! Every op as a forward/backward kernel pair over flat slices. Each file holds, in
//! order: the forward kernel, the backward kernel, the `Tape` method that runs forward
//! and records to the tape, the `backward` that unpacks a record, then its tests.

/// Defines `$vis fn $name(args) -> ret` that runs `$body(args)` compiled for the widest
/// vector instructions the CPU has: AVX-512, else AVX2 + FMA, else the build's baseline.
/// `$body` must be `#[inline(always)]`: it is inlined into each variant, and its loops are
/// vectorised for whatever that variant may use. (A closure handed to a
/// `#[target_feature]` function is not reliably inlined into it, and then runs with the
/// baseline's 128-bit vectors: pass the work as a function instead.) Bodies written without
/// `mul_add` give the same bits in every variant, as Rust never fuses a multiply and an add
/// on its own.
#[macro_export]
macro_rules! simd_dispatch {
    ($vis:vis fn $name:ident => $body:ident ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                let avx2_fma =
                    ::std::is_x86_feature_detected!("avx2") && ::std::is_x86_feature_detected!("fma");
                if avx2_fma && ::std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, AVX2 and FMA, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if avx2_fma {
                    // SAFETY: the CPU supports AVX2 and FMA, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub mod attention;
pub mod batch_matmul;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod exp;
pub mod layernorm;
pub mod matmul;
pub mod reduce;
pub mod shape;
pub mod softmax;

/// Rows per parallel task in row-wise kernels, and elements per chunk in reductions.
/// Fixed, never derived from the thread count, so results do not depend on it.
pub const ROW_CHUNK: usize = 16;
pub const REDUCE_CHUNK: usize = 4096;

/// Rows of `c` values (everything but the last dimension flattened), and `c`.
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    let c = *shape.last().expect("a tensor with at least one dimension");
    (shape.iter().product::<usize>() / c.max(1), c)
}
