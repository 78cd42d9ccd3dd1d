//! Every op as a forward/backward kernel pair over flat slices. Each file holds, in
//! order: the forward kernel, the backward kernel, the `Tape` method that runs forward
//! and records to the tape, the `backward` that unpacks a record, then its tests.
//! `rows.rs` holds their mirror for inference without the tape (a few rows at a time);
//! `newton_schulz.rs`, the orthogonalisation of the Muon optimizer, records nothing either.

pub mod attention;
pub mod batch_matmul;
pub mod bf16;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod exp;
pub mod layernorm;
pub mod matmul;
pub mod newton_schulz;
pub mod reduce;
pub mod rmsnorm;
pub mod rope;
pub mod rows;
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
