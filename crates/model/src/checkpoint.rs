//! The checkpoint file: one self-describing file with everything needed to sample from a
//! model or to resume its training exactly.
//!
//! Layout: magic, format version, payload length, CRC-32 of the payload, then the
//! payload (bincode). Written to a temporary file, synced, then renamed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Gpt, GptConfig};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// AdamW's state: step count and the first and second moments, one per parameter in
/// parameter order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    pub step: u64,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub model: GptConfig,
    /// The resolved run configuration, as TOML.
    pub run_config: String,
    /// The tokenizer, as written by `Tokenizer::to_bytes`.
    pub tokenizer: Vec<u8>,
    pub params: Vec<NamedTensor>,
    pub optimizer: Option<OptimizerState>,
    /// Optimizer steps completed.
    pub step: u64,
    /// Trainer-owned state (RNG, sampler state, metrics so far), opaque here.
    pub train_state: Vec<u8>,
}

impl Checkpoint {
    /// Atomically writes the checkpoint (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        todo!("{path:?}")
    }

    /// Reads and verifies a checkpoint; one clear error per kind of problem.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        todo!("{path:?}")
    }

    /// The model's parameters, by name.
    pub fn params_of(gpt: &Gpt) -> Vec<NamedTensor> {
        todo!("{}", gpt.tape.n_params())
    }

    /// A model with this checkpoint's weights; errors name a missing or misshapen parameter.
    pub fn to_model(&self) -> Result<Gpt, CheckpointError> {
        todo!()
    }

    /// Copies this checkpoint's weights into an existing model of the same config.
    pub fn load_into(&self, gpt: &mut Gpt) -> Result<(), CheckpointError> {
        todo!("{}", gpt.tape.n_params())
    }
}
