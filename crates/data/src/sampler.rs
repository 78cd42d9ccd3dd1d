//! Batches for training and evaluation. Training draws windows at uniformly random offsets
//! from a seeded ChaCha generator whose state is saved in checkpoints, so a resumed run sees
//! exactly the batches it would have seen; evaluation walks the file in order.
//!
//! A window holds `block_size + 1` tokens: the inputs are its first `block_size`, the
//! targets the same tokens shifted by one (each position predicts the next token).

use serde::{Deserialize, Serialize};
use tensor::Rng;

use crate::shard::TokenFile;
use crate::DataError;

/// The state of a [`BatchSampler`], saved in checkpoints for exact resume.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SamplerState {
    pub rng: Rng,
    pub batches_drawn: u64,
}

/// Draws batches of `batch_size` random windows of `block_size + 1` tokens: inputs are
/// the first `block_size`, targets the same window shifted by one.
pub struct BatchSampler {
    batch_size: usize,
    block_size: usize,
    rng: Rng,
    batches_drawn: u64,
    window: Vec<u32>,
}

impl BatchSampler {
    /// Fails when the file holds fewer than `block_size + 1` tokens.
    pub fn new(
        file: &TokenFile,
        batch_size: usize,
        block_size: usize,
        seed: u64,
    ) -> Result<BatchSampler, DataError> {
        if batch_size == 0 || block_size == 0 {
            return Err(DataError::Message(format!(
                "batch_size ({batch_size}) and block_size ({block_size}) must both be at least 1"
            )));
        }
        check_long_enough(file, block_size)?;
        Ok(BatchSampler {
            batch_size,
            block_size,
            rng: Rng::seeded(seed),
            batches_drawn: 0,
            window: vec![0; block_size + 1],
        })
    }

    /// Fills `inputs` and `targets` (each batch_size × block_size, row-major).
    pub fn next_batch(&mut self, file: &TokenFile, inputs: &mut Vec<u32>, targets: &mut Vec<u32>) {
        let (b, t) = (self.batch_size, self.block_size);
        assert!(
            file.len() > t,
            "BatchSampler::next_batch: {} has {} tokens, fewer than block_size + 1 = {}",
            file.path().display(),
            file.len(),
            t + 1
        );
        inputs.resize(b * t, 0);
        targets.resize(b * t, 0);
        for row in 0..b {
            // Offsets 0 ..= len - (t + 1): every full window is equally likely.
            let start = self.rng.below(file.len() - t);
            file.read_into(start, &mut self.window);
            inputs[row * t..(row + 1) * t].copy_from_slice(&self.window[..t]);
            targets[row * t..(row + 1) * t].copy_from_slice(&self.window[1..]);
        }
        self.batches_drawn += 1;
    }

    /// The generator state and batch count, to save in a checkpoint.
    pub fn state(&self) -> SamplerState {
        SamplerState { rng: self.rng.clone(), batches_drawn: self.batches_drawn }
    }

    /// Continues from a saved state: the next batches are the ones the saved sampler would
    /// have drawn.
    pub fn restore(&mut self, state: SamplerState) {
        self.rng = state.rng;
        self.batches_drawn = state.batches_drawn;
    }

    /// Windows per batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Input tokens per window.
    pub fn block_size(&self) -> usize {
        self.block_size
    }
}

fn check_long_enough(file: &TokenFile, block_size: usize) -> Result<(), DataError> {
    if file.len() <= block_size {
        return Err(DataError::TooFewTokens {
            path: file.path().to_path_buf(),
            tokens: file.len(),
            need: block_size + 1,
        });
    }
    Ok(())
}

/// Consecutive, non-overlapping windows covering a file in order, for evaluation.
/// Yields up to `max_batches` batches (each batch_size × block_size inputs and targets);
/// the final partial batch is dropped.
pub fn sequential_batches(
    file: &TokenFile,
    batch_size: usize,
    block_size: usize,
    max_batches: usize,
) -> impl Iterator<Item = (Vec<u32>, Vec<u32>)> + '_ {
    let (b, t) = (batch_size, block_size);
    // Window w covers tokens [w·t, w·t + t + 1): its inputs do not overlap the next window's.
    let windows = file.len().saturating_sub(1).checked_div(t).unwrap_or(0);
    let batches = windows.checked_div(b).unwrap_or(0).min(max_batches);
    (0..batches).map(move |batch| {
        let (mut inputs, mut targets) = (Vec::new(), Vec::new());
        read_windows(file, batch * b..(batch + 1) * b, t, &mut inputs, &mut targets);
        (inputs, targets)
    })
}

/// `inputs` and `targets` ← the windows `windows` of a file's consecutive, non-overlapping
/// windows of `block_size` tokens: window w's inputs are tokens w·t .. w·t + t, its targets
/// the same shifted by one (rows of t, in order).
pub fn read_windows(
    file: &TokenFile,
    windows: std::ops::Range<usize>,
    block_size: usize,
    inputs: &mut Vec<u32>,
    targets: &mut Vec<u32>,
) {
    let t = block_size;
    let mut window = vec![0; t + 1];
    inputs.clear();
    targets.clear();
    for w in windows {
        file.read_into(w * t, &mut window);
        inputs.extend_from_slice(&window[..t]);
        targets.extend_from_slice(&window[1..]);
    }
}

/// How many full batches [`sequential_batches`] yields for a file of `len` tokens (before
/// the `max_batches` cap).
pub fn sequential_batch_count(len: usize, batch_size: usize, block_size: usize) -> usize {
    len.saturating_sub(1).checked_div(block_size).and_then(|w| w.checked_div(batch_size)).unwrap_or(0)
}
