//! Quill's model crate: [`GptConfig`], the [`Gpt`] (learned token and position
//! embeddings, pre-LN blocks, tied output head), GPT-2 initialisation and parameter names,
//! the training forward (recorded on the tape), an inference path with a KV cache, and
//! the [`checkpoint`] file that the trainer writes and the sampler reads.

pub mod checkpoint;
pub mod sampling;

use serde::{Deserialize, Serialize};
use tensor::{Grads, Rng, Tape, TensorId};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub block_size: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    pub dropout: f32,
    pub bias: bool,
}

impl GptConfig {
    /// Sizes > 0, n_embd divisible by n_head, dropout in [0, 1). The error names the field.
    pub fn validate(&self) -> Result<(), ModelError> {
        todo!()
    }
    /// Number of parameters (the tied head counted once).
    pub fn num_params(&self) -> usize {
        todo!()
    }
    /// Training FLOPs per token (forward + backward), as in the PaLM appendix:
    /// 6·N + 12·n_layer·n_embd·block_size.
    pub fn flops_per_token(&self) -> f64 {
        todo!()
    }
}

/// The GPT. It owns its tape: parameters are the tape's persistent tensors.
pub struct Gpt {
    pub config: GptConfig,
    pub tape: Tape,
}

/// What a training forward returns.
pub struct ForwardOutput {
    /// (b, t, vocab_size)
    pub logits: TensorId,
    /// Mean cross-entropy, when targets were given.
    pub loss: Option<TensorId>,
}

impl Gpt {
    /// A freshly initialised model (GPT-2 init) from a seed.
    pub fn new(config: GptConfig, seed: u64) -> Gpt {
        todo!("{config:?} {seed}")
    }

    /// Parameter names in registration order, GPT-2's (`transformer.wte.weight`, ...).
    pub fn param_names(&self) -> Vec<String> {
        self.tape.params().map(|(_, name, _)| name.to_string()).collect()
    }

    /// Training forward on tokens (b·t, row-major), recorded on the tape (which is reset
    /// first). Dropout is applied when `dropout_rng` is given and config.dropout > 0.
    pub fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
        dropout_rng: Option<&mut Rng>,
    ) -> ForwardOutput {
        todo!("{} {:?} {b} {t} {:?}", tokens.len(), targets.map(|t| t.len()), dropout_rng.is_some())
    }

    /// Accumulates every parameter's gradient of `loss` into `grads`.
    pub fn backward(&self, loss: TensorId, grads: &mut Grads) {
        self.tape.backward(loss, grads);
    }

    /// After a backward: every parameter has a finite, non-zero gradient. The error names
    /// the first parameter that does not (catches a silently detached layer at step 0).
    pub fn check_grads(&self, grads: &Grads) -> Result<(), String> {
        todo!("{}", grads.get(TensorId(0)).len())
    }
}

/// Keys and values of every layer for the positions seen so far, for incremental decoding.
pub struct KvCache {}

impl Gpt {
    /// An empty cache for up to block_size positions.
    pub fn new_cache(&self) -> KvCache {
        todo!()
    }

    /// Inference without the tape: feeds `tokens` (one or more, continuing the cache) and
    /// returns the logits (vocab_size) of the last position. Panics past block_size.
    pub fn forward_cached(&self, cache: &mut KvCache, tokens: &[u32]) -> Vec<f32> {
        todo!("{}", tokens.len())
    }
}
