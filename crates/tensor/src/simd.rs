//! The one place that picks the instruction set. Every kernel that wants vectors is
//! compiled three times from one body, by the crate's `simd_dispatch!` macro: for AVX-512, for AVX2 + FMA,
//! and for the build's baseline; [`level`] says which of the three this CPU runs, and each
//! call goes to that one. The GEMM maps the same [`Level`] to its micro-kernel.
//!
//! Bodies written without fused multiply-adds give the same bits in every variant (Rust
//! never fuses a multiply and an add on its own, and never reorders float additions);
//! bodies that fuse them (`f32::mul_add`) give the same bits too, since the portable
//! variant then calls the library's exactly rounded `fmaf` (right, but slow).

/// The instruction sets a kernel is compiled for, narrowest first.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The build's baseline (SSE2 on x86-64).
    Portable,
    /// AVX2 with fused multiply-adds: 8-wide `f32` vectors.
    Avx2Fma,
    /// AVX-512F (with AVX2 and FMA): 16-wide `f32` vectors.
    Avx512,
}

/// The widest [`Level`] this CPU supports (the detection is cached by the standard library).
#[inline]
pub fn level() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2_fma = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        if avx2_fma && std::is_x86_feature_detected!("avx512f") {
            return Level::Avx512;
        }
        if avx2_fma {
            return Level::Avx2Fma;
        }
    }
    Level::Portable
}

/// Defines `$vis fn $name(args) -> ret` that runs `$body(args)` compiled for the CPU's
/// [`level`]: AVX-512, else AVX2 + FMA, else the build's baseline. `$body` must be
/// `#[inline(always)]`: it is inlined into each variant, and its loops are vectorised for
/// whatever that variant may use. (A closure handed to a `#[target_feature]` function is
/// not reliably inlined into it, and then runs with the baseline's 128-bit vectors: pass
/// long loops as a function, short ones through [`vectorised`].)
///
/// Written `=> body::<FMA>(args)`, the body takes a `const FMA: bool` that is true in the
/// AVX-512 and AVX2 + FMA variants: a body with hand-written AVX2 + FMA intrinsics calls
/// them only when `FMA` holds, and a portable loop otherwise. A generic body names its type
/// parameters after it: `=> body::<FMA, W>(args)`.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident $(<$($gen:ident $(: $bound:path)?),+>)?
        => $body:ident $(::<$fma:ident $(, $targ:ident)*>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        $(#[$meta])*
        $vis fn $name $(<$($gen $(: $bound)?),+>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512 $(<$($gen $(: $bound)?),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body $(::<{ $crate::simd::fma_flag!($fma, true) } $(, $targ)*>)? ($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2 $(<$($gen $(: $bound)?),+>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body $(::<{ $crate::simd::fma_flag!($fma, true) } $(, $targ)*>)? ($($arg),*)
                }
                match $crate::simd::level() {
                    // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (`level` checked).
                    $crate::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: the CPU supports AVX2 and FMA (`level` checked).
                    $crate::simd::Level::Avx2Fma => return unsafe { avx2($($arg),*) },
                    $crate::simd::Level::Portable => {}
                }
            }
            $body $(::<{ $crate::simd::fma_flag!($fma, false) } $(, $targ)*>)? ($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// `fma_flag!(FMA, value)` is `value`: lets [`simd_dispatch!`] accept only the word `FMA`
/// as the name of a body's const parameter, so a call site reads as the body's signature.
macro_rules! fma_flag {
    (FMA, $value:expr) => {
        $value
    };
}
pub(crate) use fma_flag;

simd_dispatch!(
    /// Runs `body` compiled for the CPU's [`level`], for short loops written in place (a
    /// reduction over a chunk, the optimizer's update): the vector width changes, the
    /// arithmetic does not, so the bits are the same whichever variant runs. `body` gets
    /// the wider instructions only when LLVM inlines it into the variant, which it does
    /// not always do for long ones; give those a function through `simd_dispatch!`.
    #[inline(always)]
    pub fn vectorised<R, F: FnOnce() -> R> => call(body: F) -> R
);

/// `body()`: what [`vectorised`] compiles into each variant.
#[inline(always)]
fn call<R>(body: impl FnOnce() -> R) -> R {
    body()
}
