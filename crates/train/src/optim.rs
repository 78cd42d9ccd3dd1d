//! The run's optimizer: AdamW with decoupled weight decay (Loshchilov & Hutter), PyTorch's
//! formulation, for every parameter, or [`Muon`] for the hidden weight matrices and AdamW
//! for the rest ([`Optimizer`]); and gradient clipping by global norm.
//!
//! The optimizer works on the parameters of a [`Tape`] (ids `0..n_params`) and their
//! gradients in [`Grads`]. Weight decay follows nanoGPT's two groups: every parameter with
//! two or more dimensions (embeddings and Linear weights) decays, biases and LayerNorm
//! parameters do not. The update is one fused pass over every parameter, split into chunks
//! of a fixed size that run in parallel (compiled for the CPU's widest vectors); it is
//! elementwise, so neither the thread count nor the instruction set changes the result.

use std::ops::Range;

use model::checkpoint::OptimizerState;
use rayon::prelude::*;
use tensor::kernels::{sum_squares, vectorised};
use tensor::{Grads, Tape, TensorId};

use crate::muon::{Muon, MuonConfig};

/// Elements per parallel task in the update and in the norm.
pub(crate) const CHUNK: usize = 16 * 1024;

/// AdamW's hyper-parameters (the learning rate comes per step, from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

/// AdamW's state: the step count and first and second moments, one buffer per parameter
/// (empty for a parameter another optimizer updates). A shard (ZeRO stage 1,
/// [`AdamW::keep_only`]) keeps the moments of a range of each parameter, and updates only
/// those values.
pub struct AdamW {
    pub config: AdamWConfig,
    /// Updates applied so far.
    pub step: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    decay: Vec<bool>,
    /// Whether AdamW updates each parameter (false where another optimizer does).
    updates: Vec<bool>,
    /// The values of each parameter this optimizer updates (all of them, unless sharded;
    /// none of a parameter it does not update).
    owned: Vec<Range<usize>>,
    /// Each parameter's number of values.
    numel: Vec<usize>,
}

/// Whether a parameter of this shape is weight-decayed: nanoGPT decays every tensor with
/// two or more dimensions (wte, wpe, Linear weights) and no bias or LayerNorm parameter.
pub fn decays(shape: &[usize]) -> bool {
    shape.len() >= 2
}

impl AdamW {
    /// Zero moments for every parameter of the tape.
    pub fn new(tape: &Tape, config: AdamWConfig) -> AdamW {
        AdamW::except(tape, config, |_| false)
    }

    /// Zero moments for every parameter of the tape but those `skip` names (which it
    /// leaves alone: another optimizer updates them).
    pub fn except(tape: &Tape, config: AdamWConfig, skip: impl Fn(TensorId) -> bool) -> AdamW {
        let updates: Vec<bool> = tape.params().map(|(id, _, _)| !skip(id)).collect();
        let numel: Vec<usize> = tape.params().map(|(_, _, t)| t.numel()).collect();
        let owned: Vec<Range<usize>> =
            numel.iter().zip(&updates).map(|(&n, &own)| if own { 0..n } else { 0..0 }).collect();
        let m: Vec<Vec<f32>> = owned.iter().map(|r| vec![0.0; r.len()]).collect();
        let v = m.clone();
        let decay = tape.params().map(|(_, _, t)| decays(&t.shape)).collect();
        AdamW { config, step: 0, m, v, decay, updates, owned, numel }
    }

    /// Keeps the moments of `owned[i]` of each parameter i only (a range of its values),
    /// and from now on updates only those: the optimizer's shard on one rank of several.
    /// AdamW is elementwise, so the values a shard updates get the same bits as unsharded.
    /// A parameter AdamW does not update keeps no range.
    pub fn keep_only(&mut self, owned: Vec<Range<usize>>) {
        assert_eq!(owned.len(), self.m.len(), "AdamW::keep_only: one range per parameter");
        for (i, range) in owned.into_iter().enumerate() {
            if !self.updates[i] {
                continue;
            }
            let local = range.start - self.owned[i].start..range.end - self.owned[i].start;
            self.m[i] = self.m[i][local.clone()].to_vec();
            self.v[i] = self.v[i][local].to_vec();
            self.owned[i] = range;
        }
    }

    /// The values of each parameter this optimizer updates and keeps moments for.
    pub fn owned(&self) -> &[Range<usize>] {
        &self.owned
    }

    /// Which parameters decay, in parameter order.
    pub fn decay_mask(&self) -> &[bool] {
        &self.decay
    }

    /// One update of every parameter with its gradient times `grad_scale` (the clipping
    /// factor): p ← p − lr·wd·p, then the Adam step with bias-corrected moments.
    pub fn update(&mut self, tape: &mut Tape, grads: &Grads, lr: f32, grad_scale: f32) {
        self.step += 1;
        let AdamWConfig { beta1, beta2, eps, weight_decay } = self.config;
        // PyTorch: step_size = lr / (1 − β1ᵗ); denom = √v / √(1 − β2ᵗ) + eps
        let bias1 = 1.0 - (beta1 as f64).powi(self.step as i32);
        let bias2 = 1.0 - (beta2 as f64).powi(self.step as i32);
        let step_size = (lr as f64 / bias1) as f32;
        let inv_bias2_sqrt = (1.0 / bias2.sqrt()) as f32;
        // Every parameter's chunks in one parallel pass: the model's many small tensors
        // (layer norms) would each cost a fork and a join.
        let mut work = Vec::new();
        let params = tape.params_mut();
        assert_eq!(params.len(), self.m.len(), "AdamW: the tape has another number of parameters");
        for (i, ((p, m), v)) in params.iter_mut().zip(&mut self.m).zip(&mut self.v).enumerate() {
            if !self.updates[i] {
                continue;
            }
            let g = grads.get(TensorId(i));
            assert_eq!(
                g.len(),
                p.data.len(),
                "AdamW: parameter {i} has {} values but a gradient of {} (no backward this step?)",
                p.data.len(),
                g.len()
            );
            let decay_factor = if self.decay[i] { 1.0 - lr * weight_decay } else { 1.0 };
            let range = self.owned[i].clone();
            let (p, g) = (&mut p.data[range.clone()], &g[range]);
            let chunks = p.chunks_mut(CHUNK).zip(m.chunks_mut(CHUNK)).zip(v.chunks_mut(CHUNK));
            work.extend(chunks.zip(g.chunks(CHUNK)).map(|(((p, m), v), g)| (p, m, v, g, decay_factor)));
        }
        work.into_par_iter().for_each(|(p, m, v, g, decay_factor)| {
            vectorised(|| {
                for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
                    let g = g * grad_scale;
                    *m = beta1 * *m + (1.0 - beta1) * g;
                    *v = beta2 * *v + (1.0 - beta2) * g * g;
                    let denom = v.sqrt() * inv_bias2_sqrt + eps;
                    *p = *p * decay_factor - step_size * *m / denom;
                }
            })
        });
    }

    /// The state to put in a checkpoint (a shard's own moments only: gather the shards
    /// for a checkpoint).
    pub fn state(&self) -> OptimizerState {
        OptimizerState { step: self.step, m: self.m.clone(), v: self.v.clone() }
    }

    /// Restores a checkpoint's state (a shard takes its ranges of it); the error says which parameter does not match.
    pub fn restore(&mut self, state: &OptimizerState) -> Result<(), String> {
        if state.m.len() != self.m.len() || state.v.len() != self.v.len() {
            return Err(format!(
                "the optimizer state holds {} parameters, the model {}",
                state.m.len(),
                self.m.len()
            ));
        }
        for (i, (m, v)) in state.m.iter().zip(&state.v).enumerate() {
            if !self.updates[i] {
                if !m.is_empty() || !v.is_empty() {
                    return Err(format!(
                        "parameter {i} holds AdamW moments, but this run updates it with Muon"
                    ));
                }
                continue;
            }
            if m.len() != self.numel[i] || v.len() != self.numel[i] {
                return Err(format!(
                    "optimizer moments of parameter {i} hold {} values, the model {}",
                    m.len(),
                    self.numel[i]
                ));
            }
            let range = self.owned[i].clone();
            self.m[i].copy_from_slice(&m[range.clone()]);
            self.v[i].copy_from_slice(&v[range]);
        }
        self.step = state.step;
        Ok(())
    }
}

/// The learning rates of one step: AdamW's and Muon's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearningRates {
    pub adamw: f32,
    pub muon: f32,
}

/// The run's optimizer (`optim.optimizer`): AdamW for every parameter, or Muon for the
/// hidden weight matrices ([`crate::muon::muon_blocks`]) and AdamW for the rest.
///
/// Its checkpoint state is AdamW's [`OptimizerState`]: for a Muon parameter, `m` holds
/// Muon's momentum and `v` is empty; `step` counts the steps of both.
pub struct Optimizer {
    pub adamw: AdamW,
    pub muon: Option<Muon>,
}

impl Optimizer {
    /// Fresh state for the tape's parameters: AdamW alone (`muon` None), or Muon and AdamW.
    pub fn new(tape: &Tape, adamw: AdamWConfig, muon: Option<MuonConfig>) -> Optimizer {
        match muon {
            None => Optimizer { adamw: AdamW::new(tape, adamw), muon: None },
            Some(config) => {
                let muon = Muon::new(tape, config);
                let adamw = AdamW::except(tape, adamw, |id| muon.owns(id));
                Optimizer { adamw, muon: Some(muon) }
            }
        }
    }

    /// Updates applied so far.
    pub fn step(&self) -> u64 {
        self.adamw.step
    }

    /// One update of every parameter with its gradient times `grad_scale` (the clipping
    /// factor): Muon's parameters with `lr.muon`, the rest with AdamW and `lr.adamw`.
    pub fn update(&mut self, tape: &mut Tape, grads: &Grads, lr: LearningRates, grad_scale: f32) {
        self.adamw.update(tape, grads, lr.adamw, grad_scale);
        if let Some(muon) = &mut self.muon {
            muon.update(tape, grads, lr.muon, grad_scale);
        }
    }

    /// The state to put in a checkpoint.
    pub fn state(&self) -> OptimizerState {
        let mut state = self.adamw.state();
        for (id, momentum) in self.muon.iter().flat_map(Muon::momenta) {
            state.m[id.0] = momentum.to_vec();
        }
        state
    }

    /// Restores a checkpoint's state; the error says which parameter does not match.
    pub fn restore(&mut self, state: &OptimizerState) -> Result<(), String> {
        let Some(muon) = &mut self.muon else {
            return self.adamw.restore(state);
        };
        let mut adamw = state.clone();
        for (i, (m, v)) in state.m.iter().zip(&state.v).enumerate() {
            if muon.owns(TensorId(i)) {
                if !v.is_empty() {
                    return Err(format!(
                        "parameter {i} holds AdamW moments, but this run updates it with Muon"
                    ));
                }
                muon.restore(TensorId(i), m)?;
                adamw.m[i].clear();
            }
        }
        self.adamw.restore(&adamw)
    }
}

/// The global L2 norm of every parameter gradient: squares summed in f64 per chunk of a
/// fixed size (all chunks of all parameters in one parallel pass), then the chunk sums in
/// parameter and chunk order, so the thread count does not change it.
pub fn grad_norm(tape: &Tape, grads: &Grads) -> f64 {
    let chunks: Vec<&[f32]> =
        (0..tape.n_params()).flat_map(|i| grads.get(TensorId(i)).chunks(CHUNK)).collect();
    let sums: Vec<f64> = chunks.into_par_iter().map(sum_squares).collect();
    sums.iter().sum::<f64>().sqrt()
}

/// The factor that scales gradients of norm `norm` down to `max_norm` (PyTorch's
/// `clip_grad_norm_`: max_norm / (norm + 1e-6), at most 1). `max_norm` 0 disables clipping.
pub fn clip_scale(norm: f64, max_norm: f64) -> f32 {
    if max_norm <= 0.0 {
        return 1.0;
    }
    (max_norm / (norm + 1e-6)).min(1.0) as f32
}

/// Scales every parameter gradient so that the global norm is at most `max_norm`; returns
/// the norm before clipping.
pub fn clip_grad_norm(tape: &Tape, grads: &mut Grads, max_norm: f64) -> f64 {
    let norm = grad_norm(tape, grads);
    let scale = clip_scale(norm, max_norm);
    if scale < 1.0 {
        for i in 0..tape.n_params() {
            grads
                .get_mut(TensorId(i))
                .par_chunks_mut(CHUNK)
                .for_each(|g| g.iter_mut().for_each(|x| *x *= scale));
        }
    }
    norm
}

/// The first parameter (in order) whose gradient holds a NaN or an infinity.
pub fn first_non_finite(tape: &Tape, grads: &Grads) -> Option<String> {
    (0..tape.n_params())
        .find(|&i| grads.get(TensorId(i)).iter().any(|x| !x.is_finite()))
        .map(|i| tape.param_name(TensorId(i)).to_string())
}
