//! Muon (Keller Jordan, 2024): momentum in Nesterov's form, then the update replaced by
//! its orthogonal factor, from a quintic Newton-Schulz iteration
//! ([`tensor::kernels::newton_schulz`]). As in the small-GPT speedruns (modded-nanogpt),
//! it takes the hidden weight matrices, the 2-D parameters inside the transformer blocks
//! (attention and MLP Linear weights); everything else (embeddings, head, norms, biases)
//! stays with AdamW.
//!
//! One step for a weight W of shape (rows, cols), gradient g (times the clipping factor):
//!
//! ```text
//! buf ← β·buf + (1 − β)·g            momentum
//! u   ← (1 − β)·g + β·buf            Nesterov
//! O   ← newton_schulz(u)             ≈ U Vᵀ for u = U Σ Vᵀ
//! W   ← W·(1 − lr·wd) − lr·√max(1, rows/cols)·O
//! ```
//!
//! The scale √max(1, rows/cols) is Keller Jordan's: an orthogonal (rows, cols) matrix with
//! rows > cols has entries of RMS 1/√rows, which the factor brings back to 1/√cols.
//!
//! The fused attention weight c_attn, (3C, C), is three maps stacked (q, k and v), and is
//! orthogonalised block by block, as three (C, C) matrices: that is how the speedrun,
//! whose q, k and v are separate weights (or a (3, C, C) batch), treats them, and what
//! the same model with unfused weights would do. Orthogonalised whole, the three would
//! share one set of C singular directions, and the blocks' updates would be coupled and
//! smaller (each block's part of a (3C, C) matrix with orthonormal columns has a
//! Frobenius norm of about √(C/3) rather than √C).
//!
//! The state is the momentum buffer of each of its parameters. Every weight is
//! orthogonalised on its own (in parallel), with the GEMM, so the thread count does not
//! change the result.

use rayon::prelude::*;
use tensor::kernels::{newton_schulz, vectorised, NEWTON_SCHULZ_STEPS};
use tensor::{Grads, Tape, TensorId};

/// Muon's hyper-parameters (the learning rate comes per step, from the schedule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonConfig {
    pub momentum: f32,
    pub weight_decay: f32,
}

/// One parameter Muon updates: where it is, its shape and its momentum.
struct MuonParam {
    id: TensorId,
    rows: usize,
    cols: usize,
    /// Row blocks orthogonalised one by one: 3 for c_attn (q, k, v), else 1.
    blocks: usize,
    momentum: Vec<f32>,
}

/// Muon's state for the parameters it updates.
pub struct Muon {
    pub config: MuonConfig,
    params: Vec<MuonParam>,
}

/// How many row blocks Muon orthogonalises a parameter in (see the module comment), or
/// None when the parameter is AdamW's: only the 2-D weights inside the blocks
/// (`transformer.h.*`) are Muon's.
pub fn muon_blocks(name: &str, shape: &[usize]) -> Option<usize> {
    if shape.len() != 2 || !name.starts_with("transformer.h.") {
        return None;
    }
    let fused_qkv = name.ends_with("attn.c_attn.weight") && shape[0].is_multiple_of(3);
    Some(if fused_qkv { 3 } else { 1 })
}

impl Muon {
    /// Zero momentum for every parameter of the tape that [`muon_blocks`] gives to Muon.
    pub fn new(tape: &Tape, config: MuonConfig) -> Muon {
        let params = tape
            .params()
            .filter_map(|(id, name, t)| {
                let blocks = muon_blocks(name, &t.shape)?;
                let (rows, cols) = (t.shape[0], t.shape[1]);
                Some(MuonParam { id, rows, cols, blocks, momentum: vec![0.0; t.numel()] })
            })
            .collect();
        Muon { config, params }
    }

    /// Whether Muon updates parameter `id`.
    pub fn owns(&self, id: TensorId) -> bool {
        self.params.iter().any(|p| p.id == id)
    }

    /// The momentum buffer of each of its parameters, by id.
    pub fn momenta(&self) -> impl Iterator<Item = (TensorId, &[f32])> {
        self.params.iter().map(|p| (p.id, p.momentum.as_slice()))
    }

    /// Restores the momentum of parameter `id`; the error says what does not match.
    pub fn restore(&mut self, id: TensorId, momentum: &[f32]) -> Result<(), String> {
        let param = self.params.iter_mut().find(|p| p.id == id).ok_or_else(|| {
            format!("parameter {} holds Muon momentum but is not a hidden weight matrix", id.0)
        })?;
        if momentum.len() != param.momentum.len() {
            return Err(format!(
                "Muon momentum of parameter {} holds {} values, the model {}",
                id.0,
                momentum.len(),
                param.momentum.len()
            ));
        }
        param.momentum.copy_from_slice(momentum);
        Ok(())
    }

    /// One Muon step (module comment) for each of its parameters, with gradients times
    /// `grad_scale` and learning rate `lr`.
    pub fn update(&mut self, tape: &mut Tape, grads: &Grads, lr: f32, grad_scale: f32) {
        let MuonConfig { momentum: beta, weight_decay } = self.config;
        let values = tape.params_mut();
        // Each parameter's tensor, paired with its state (ids ascend, so one pass finds them).
        let mut work = Vec::with_capacity(self.params.len());
        let mut params = self.params.iter_mut().peekable();
        for (i, value) in values.iter_mut().enumerate() {
            if let Some(param) = params.next_if(|p| p.id.0 == i) {
                let g = grads.get(param.id);
                assert_eq!(
                    g.len(),
                    value.data.len(),
                    "Muon: parameter {i} has {} values but a gradient of {} (no backward this step?)",
                    value.data.len(),
                    g.len()
                );
                work.push((param, &mut value.data, g));
            }
        }
        work.into_par_iter().for_each(|(param, w, g)| {
            let mut u = vec![0.0f32; g.len()];
            vectorised(|| {
                for ((u, buf), &g) in u.iter_mut().zip(param.momentum.iter_mut()).zip(g) {
                    let g = g * grad_scale;
                    *buf = beta * *buf + (1.0 - beta) * g;
                    *u = (1.0 - beta) * g + beta * *buf;
                }
            });
            let rows = param.rows / param.blocks;
            for block in u.chunks_mut(rows * param.cols) {
                newton_schulz(block, rows, param.cols, NEWTON_SCHULZ_STEPS);
            }
            let step = lr * (rows as f32 / param.cols as f32).max(1.0).sqrt();
            let decay = 1.0 - lr * weight_decay;
            vectorised(|| w.iter_mut().zip(&u).for_each(|(w, &u)| *w = *w * decay - step * u));
        });
    }
}
