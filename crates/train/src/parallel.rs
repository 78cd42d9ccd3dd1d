//! Data parallelism over the ranks of a [`World`]: which micro-batches of a step a rank
//! runs, the gradient summed across ranks once per step, and how the flat parameter vector
//! (every parameter, in order, end to end) is cut into the ranks' slices.
//!
//! The sum is a reduce-scatter then an all-gather, as a ring all-reduce moves it: rank r
//! adds up every rank's copy of slice r (in rank order, so the bits never depend on the
//! MPI library), then the summed slices go to every rank. With `train.shard_optimizer`
//! (ZeRO stage 1) a rank keeps AdamW's moments for its own slice only: it updates those
//! weights, and the all-gather shares weights instead of gradients. Slices end on the
//! gradient norm's chunk boundaries, so each rank adds the squares of whole chunks and
//! the norm is the one-process norm, bit for bit.
//!
//! On one rank every method here is the one-process code: the gradient is already the
//! sum, and nothing is copied.

use std::ops::Range;

use model::checkpoint::OptimizerState;
use rayon::prelude::*;
use tensor::kernels::sum_squares;
use tensor::{Grads, Tape, TensorId};

use crate::optim::{grad_norm, Optimizer, CHUNK};
use crate::world::World;
use crate::TrainError;

/// The test switch [`injected_fault`] reads: `RANK:STEP`.
pub const FAULT_VAR: &str = "QUILL_FAIL_RANK_AT_STEP";

/// A run's ranks seen from one of them: its share of each step and the buffers of the sum.
pub struct DataParallel<'w> {
    pub world: &'w World,
    /// Each rank keeps AdamW's moments for its slice only (ZeRO stage 1).
    pub sharded: bool,
    /// Values of each parameter, in parameter order.
    numel: Vec<usize>,
    /// The gradient norm's chunks, in flat order: their lengths.
    chunks: Vec<usize>,
    /// Values in each rank's slice of the flat vector, in rank order.
    counts: Vec<usize>,
    /// Norm chunks in each rank's slice, in rank order.
    chunk_counts: Vec<usize>,
    /// Where this rank's slice starts in the flat vector, and its first norm chunk.
    start: usize,
    first_chunk: usize,
    // Buffers kept from step to step: the flat vector, this rank's slice, the copies of it
    // the other ranks send.
    flat: Vec<f32>,
    mine: Vec<f32>,
    copies: Vec<f32>,
}

impl<'w> DataParallel<'w> {
    /// The slices of `tape`'s parameters over `world`'s ranks: each rank's slice starts at
    /// the first norm chunk at or past its even share of the values.
    pub fn new(world: &'w World, tape: &Tape, sharded: bool) -> Result<DataParallel<'w>, TrainError> {
        let numel: Vec<usize> = tape.params().map(|(_, _, t)| t.numel()).collect();
        let total: usize = numel.iter().sum();
        if world.size() > 1 && total > i32::MAX as usize {
            return Err(TrainError::Config(format!(
                "the model has {total} parameters; more than 2^31 cannot be exchanged between ranks in one piece, so train it in one process"
            )));
        }
        let chunks: Vec<usize> = numel
            .iter()
            .flat_map(|&n| (0..n.div_ceil(CHUNK)).map(move |c| CHUNK.min(n - c * CHUNK)))
            .collect();
        let n = world.size();
        let (mut counts, mut chunk_counts) = (vec![0; n], vec![0; n]);
        let mut at = 0;
        for &len in &chunks {
            // The rank whose even share holds this chunk's first value.
            let rank = (at as u128 * n as u128 / total.max(1) as u128) as usize;
            counts[rank] += len;
            chunk_counts[rank] += 1;
            at += len;
        }
        let r = world.rank();
        Ok(DataParallel {
            world,
            sharded: sharded && n > 1,
            start: counts[..r].iter().sum(),
            first_chunk: chunk_counts[..r].iter().sum(),
            numel,
            chunks,
            counts,
            chunk_counts,
            flat: Vec::new(),
            mine: Vec::new(),
            copies: Vec::new(),
        })
    }

    /// The micro-batches of a step of `accum` that this rank runs (Config checks that the
    /// ranks divide them evenly).
    pub fn micro_batches(&self, accum: usize) -> Range<usize> {
        let share = accum / self.world.size();
        self.world.rank() * share..(self.world.rank() + 1) * share
    }

    /// The part of each parameter inside this rank's slice (an empty range when none is).
    pub fn owned(&self) -> Vec<Range<usize>> {
        let (start, end) = (self.start, self.start + self.counts[self.world.rank()]);
        let mut offset = 0;
        self.numel
            .iter()
            .map(|&n| {
                let lo = start.clamp(offset, offset + n) - offset;
                let hi = end.clamp(offset, offset + n) - offset;
                offset += n;
                lo..hi
            })
            .collect()
    }

    /// Makes `grads` hold the gradient summed over the ranks (sharded: only in this rank's
    /// slice, the part its optimizer reads) and returns its global norm.
    pub fn sum_gradients(&mut self, tape: &Tape, grads: &mut Grads) -> f64 {
        if self.world.size() == 1 {
            return grad_norm(tape, grads);
        }
        self.flat.clear();
        for i in 0..tape.n_params() {
            self.flat.extend_from_slice(grads.get(TensorId(i)));
        }
        self.mine.resize(self.counts[self.world.rank()], 0.0);
        self.world.reduce_scatter_f32(&self.flat, &self.counts, &mut self.mine, &mut self.copies);
        if !self.sharded {
            self.world.all_gather_f32(&self.mine, &self.counts, &mut self.flat);
            let mut at = 0;
            for i in 0..tape.n_params() {
                let g = grads.get_mut(TensorId(i));
                g.copy_from_slice(&self.flat[at..at + g.len()]);
                at += g.len();
            }
            return grad_norm(tape, grads);
        }
        let owned = self.owned();
        let mut at = 0;
        for (i, range) in owned.iter().enumerate() {
            grads.get_mut(TensorId(i))[range.clone()].copy_from_slice(&self.mine[at..at + range.len()]);
            at += range.len();
        }
        // The squares of this rank's whole chunks, then every rank's in flat order: the
        // sums grad_norm adds, in its order.
        let mut pieces = Vec::with_capacity(self.chunk_counts[self.world.rank()]);
        let mut at = 0;
        for &len in &self.chunks[self.first_chunk..self.first_chunk + self.chunk_counts[self.world.rank()]] {
            pieces.push(&self.mine[at..at + len]);
            at += len;
        }
        let sums: Vec<f64> = pieces.into_par_iter().map(sum_squares).collect();
        let all = self.world.all_gather_f64(&sums, &self.chunk_counts);
        all.iter().sum::<f64>().sqrt()
    }

    /// After a sharded update, every rank's updated slice to every rank.
    pub fn share_weights(&mut self, tape: &mut Tape) {
        if !self.sharded {
            return;
        }
        let owned = self.owned();
        self.mine.clear();
        for (p, range) in tape.params_mut().iter().zip(&owned) {
            self.mine.extend_from_slice(&p.data[range.clone()]);
        }
        self.flat.resize(self.numel.iter().sum(), 0.0);
        self.world.all_gather_f32(&self.mine, &self.counts, &mut self.flat);
        let mut at = 0;
        for p in tape.params_mut() {
            let n = p.data.len();
            p.data.copy_from_slice(&self.flat[at..at + n]);
            at += n;
        }
    }

    /// The optimizer's whole state, for a checkpoint: sharded (AdamW alone: the config
    /// refuses shards with Muon), the ranks' moments gathered to rank 0 (other ranks get
    /// their own shard's, which they do not save).
    pub fn optimizer_state(&self, opt: &Optimizer) -> OptimizerState {
        if !self.sharded {
            return opt.state();
        }
        let own = opt.adamw.state();
        let total: usize = self.numel.iter().sum();
        let gather = |parts: &[Vec<f32>]| {
            let mine: Vec<f32> = parts.concat();
            let mut flat = if self.world.is_root() { vec![0.0; total] } else { Vec::new() };
            self.world.gather_f32_to_root(&mine, &self.counts, &mut flat);
            let mut at = 0;
            let whole: Vec<Vec<f32>> = self
                .numel
                .iter()
                .map(|&n| {
                    let part = flat.get(at..at + n).map_or_else(Vec::new, <[f32]>::to_vec);
                    at += n;
                    part
                })
                .collect();
            whole
        };
        OptimizerState { step: own.step, m: gather(&own.m), v: gather(&own.v) }
    }
}

/// A fault for the tests of a job whose rank fails: with `QUILL_FAIL_RANK_AT_STEP=R:S` in
/// the environment, rank R stops with an error before step S.
pub fn injected_fault(world: &World, step: u64) -> Result<(), TrainError> {
    let Ok(value) = std::env::var(FAULT_VAR) else {
        return Ok(());
    };
    let parsed =
        value.split_once(':').and_then(|(r, s)| Some((r.parse::<usize>().ok()?, s.parse::<u64>().ok()?)));
    match parsed {
        Some((rank, at)) if rank == world.rank() && at == step => {
            Err(TrainError::FaultInjected { rank, step })
        }
        Some(_) => Ok(()),
        None => Err(TrainError::Config(format!("{FAULT_VAR}={value}: expected RANK:STEP, e.g. 1:5"))),
    }
}
