//! The kernels a model calls outside the tape: its inference path with a KV cache (layer
//! norm, RMS norm, QK-norm, rotary embeddings, linear layers, causal attention over the
//! cache, GELU and ReLU², from [`crate::ops::rows`] and [`crate::ops::rope`]) and the
//! optimizer's reductions and Newton-Schulz orthogonalisation (Muon). This is the whole
//! public set for those callers; the tape's own kernels stay behind its ops.

pub use crate::ops::bf16::{to_bf16, Bf16};
/// The ε every layer norm adds to the variance (GPT-2's value).
pub use crate::ops::layernorm::EPS as LAYERNORM_EPS;
pub use crate::ops::newton_schulz::{newton_schulz, NEWTON_SCHULZ_COEFFICIENTS, NEWTON_SCHULZ_STEPS};
pub use crate::ops::reduce::kernels::sum_squares;
pub use crate::ops::rope::{rope_angles, rotate_qk, ROPE_BASE};
pub use crate::ops::rows::{
    attend, gelu_in_place, layernorm, linear, linear_rows, qk_norm_in_place, relu2_in_place, rmsnorm,
    Weights, PARALLEL_ATTEND, PARALLEL_MATVEC,
};
pub use crate::simd::vectorised;
