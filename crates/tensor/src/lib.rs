//! Quill's tensor crate: a contiguous row-major `f32` [`Tensor`], a reverse-mode
//! autodiff [`Tape`], gradient storage ([`Grads`]), and every op as a forward/backward
//! kernel pair over flat slices (see [`ops`]), the row kernels of inference with a KV
//! cache, and the one choice of instruction set they all share (see [`simd`]). Nothing
//! here knows about GPTs: a model writes its recipes with the tape's ops and with
//! [`kernels`].
//!
//! The flow of one training step:
//!
//! ```text
//! tape.reset()                       forget last step's activations (buffers are kept)
//! let y = tape.matmul(x, w, Some(b)) forward: run the kernel, append a record
//! let loss = tape.cross_entropy(...)
//! tape.backward(loss, &mut grads)    walk the records last to first, accumulate grads
//! ```

pub mod gemm;
pub mod gradcheck;
pub mod grads;
pub mod kernels;
pub mod ops;
pub mod pool;
pub mod profile;
pub mod rng;
pub mod simd;
pub mod tape;
pub mod tensor;

pub use grads::Grads;
pub use pool::on_pool;
pub use profile::Profile;
pub use rng::Rng;
pub use tape::{Op, Record, Tape, TensorId};
pub use tensor::Tensor;
