//! The random streams of a run, each derived from `train.seed` and its purpose, so that
//! weights, training batches, dropout, the evaluation batches and the samples shown never
//! share a generator (and one can change without moving the others).

/// What a random stream is for; its value keeps the seed of each purpose fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The batch sampler of the training split.
    TrainBatches = 1,
    /// Dropout masks during training.
    Dropout = 2,
    /// The fixed batches of the training split at each evaluation.
    EvalTrain = 3,
    /// The fixed batches of the validation split at each evaluation.
    EvalVal = 4,
    /// The text sampled at each evaluation (offset by the step).
    Sample = 5,
}

/// The seed of `stream` in a run seeded with `seed`.
pub fn stream_seed(seed: u64, stream: Stream) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(stream as u64)
}

/// The dropout stream of rank `rank` > 0 of a job started (or resumed) at `step`: each
/// rank runs other micro-batches than rank 0, whose stream is the run's own.
pub fn rank_dropout_seed(seed: u64, rank: usize, step: u64) -> u64 {
    stream_seed(seed, Stream::Dropout)
        ^ (rank as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ step.rotate_left(32)
}
