//! The checkpoint file: one self-describing file with everything needed to sample from a
//! model or to resume its training exactly.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"QUILLCKP"
//!      8     4  format version (u32), FORMAT_VERSION
//!     12     8  payload length in bytes (u64)
//!     20     4  CRC-32 (IEEE, crc32fast) of the payload
//!     24     …  payload: the Checkpoint, bincode with fixed-width integers
//! ```
//!
//! Saving goes through `fsio`'s atomic write (a temporary file in the same directory,
//! synced, renamed over the target, the directory synced), so a crash leaves either the
//! old file or the new one.
//! A checkpoint saved under two names at once (the trainer's `latest.ckpt` and `best.ckpt`)
//! is written once and hard-linked.
//! Loading maps the file and checks the magic, the version, that the payload length is
//! exactly what the file holds (before allocating anything), the checksum, and then decodes
//! with bincode limited to the payload's length, so no length read from the file can make
//! it allocate more than the file holds.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bincode::Options;
use serde::{Deserialize, Serialize};

use tensor::TensorId;

use crate::{Arch, Gpt, GptConfig, ModelError};

/// The first eight bytes of every checkpoint.
pub const MAGIC: &[u8; 8] = b"QUILLCKP";
/// The format version this build writes and reads. Version 2 added the architecture
/// options to the model config ([`crate::Arch`]); version-1 files still load, as GPT-2's
/// architecture.
pub const FORMAT_VERSION: u32 = 2;
/// Bytes before the payload: magic, version, payload length, CRC-32.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 4;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint could not be encoded for writing to `path`.
    #[error("{path}: {detail}")]
    Encode { path: PathBuf, detail: String },
    /// The checkpoint's model config cannot be built.
    #[error("checkpoint model config: {0}")]
    InvalidModel(ModelError),
    /// A model config that describes more (or fewer) parameters than the checkpoint
    /// holds values for; checked before the model is allocated.
    #[error("checkpoint model config: {0}; the checkpoint was not written by train or convert")]
    ModelSize(String),
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a Quill checkpoint (it does not start with \"QUILLCKP\"); pass a .ckpt file written by train")]
    NotACheckpoint { path: PathBuf },
    #[error(
        "{path}: checkpoint format version {found} is newer than this build reads (version {supported}); update Quill to load it"
    )]
    NewerVersion { path: PathBuf, found: u32, supported: u32 },
    #[error("{path}: corrupted checkpoint ({detail}); use another checkpoint of the run or train again")]
    Corrupted { path: PathBuf, detail: String },
    #[error(
        "checkpoint parameter {name} has shape {found:?} but the model expects {expected:?}: the checkpoint is of a model of another shape"
    )]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("checkpoint lacks parameter {name}: it is of a model of another shape")]
    MissingParam { name: String },
    #[error("checkpoint has parameter {name}, which the model does not: it is of a model of another shape")]
    UnexpectedParam { name: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// The optimizer's state: step count and the first and second moments, one per parameter
/// in parameter order (a Muon parameter: its momentum in `m`, an empty `v`).
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

/// A version-1 payload: the same fields, with the model config before the architecture
/// options existed.
#[derive(Deserialize)]
struct CheckpointV1 {
    model: GptConfigV1,
    run_config: String,
    tokenizer: Vec<u8>,
    params: Vec<NamedTensor>,
    optimizer: Option<OptimizerState>,
    step: u64,
    train_state: Vec<u8>,
}

/// [`GptConfig`] as version 1 stored it: every model then had GPT-2's architecture.
#[derive(Deserialize)]
struct GptConfigV1 {
    vocab_size: usize,
    block_size: usize,
    n_layer: usize,
    n_head: usize,
    n_embd: usize,
    dropout: f32,
    bias: bool,
}

impl From<CheckpointV1> for Checkpoint {
    fn from(v1: CheckpointV1) -> Checkpoint {
        let m = v1.model;
        Checkpoint {
            model: GptConfig {
                vocab_size: m.vocab_size,
                block_size: m.block_size,
                n_layer: m.n_layer,
                n_head: m.n_head,
                n_embd: m.n_embd,
                dropout: m.dropout,
                bias: m.bias,
                arch: Arch::GPT2,
            },
            run_config: v1.run_config,
            tokenizer: v1.tokenizer,
            params: v1.params,
            optimizer: v1.optimizer,
            step: v1.step,
            train_state: v1.train_state,
        }
    }
}

/// bincode as the payload uses it: fixed-width little-endian integers, at most `limit`
/// bytes read, trailing bytes rejected.
fn payload_options(limit: u64) -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding().with_little_endian().with_limit(limit)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), error: source }
}

impl Checkpoint {
    /// Atomically writes the checkpoint (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        self.save_as(&[path])
    }

    /// Writes the checkpoint under each of `paths`, each replaced atomically: encoded and
    /// written once, the other names then hard links to that file (copies where the file
    /// system has no hard links). A later save replaces a name with a new file, so the
    /// names never share anything but the bytes of this one checkpoint.
    pub fn save_as(&self, paths: &[&Path]) -> Result<(), CheckpointError> {
        let Some((&first, rest)) = paths.split_first() else {
            return Ok(());
        };
        let bytes = self
            .to_bytes()
            .map_err(|e| CheckpointError::Encode { path: first.to_path_buf(), detail: e.to_string() })?;
        fsio::write_atomic(first, &bytes).map_err(io_error(first))?;
        for &path in rest {
            if fsio::link_atomic(first, path).is_err() {
                fsio::write_atomic(path, &bytes).map_err(io_error(path))?;
            }
        }
        Ok(())
    }

    /// The whole file: header then payload.
    pub fn to_bytes(&self) -> Result<Vec<u8>, bincode::Error> {
        let payload_len = payload_options(u64::MAX).serialized_size(self)?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + payload_len as usize);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&payload_len.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]); // the CRC, once the payload is in place
        payload_options(u64::MAX).serialize_into(&mut bytes, self)?;
        debug_assert_eq!(bytes.len(), HEADER_LEN + payload_len as usize, "serialized_size disagrees");
        let crc = crc32fast::hash(&bytes[HEADER_LEN..]);
        bytes[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
        Ok(bytes)
    }

    /// Reads and verifies a checkpoint; one clear error per kind of problem.
    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let mut file = File::open(path).map_err(io_error(path))?;
        let file_len = file.metadata().map_err(io_error(path))?.len();
        let corrupted = |detail: String| CheckpointError::Corrupted { path: path.to_path_buf(), detail };

        let mut header = [0u8; HEADER_LEN];
        let header_read = read_up_to(&mut file, &mut header).map_err(io_error(path))?;
        if header_read < MAGIC.len() || &header[..8] != MAGIC {
            return Err(CheckpointError::NotACheckpoint { path: path.to_path_buf() });
        }
        if header_read < HEADER_LEN {
            return Err(corrupted(format!(
                "truncated: {file_len} bytes, shorter than the {HEADER_LEN}-byte header"
            )));
        }
        let field = |range: std::ops::Range<usize>| header[range].to_vec();
        let version = u32::from_le_bytes(field(8..12).try_into().expect("4 bytes"));
        let payload_len = u64::from_le_bytes(field(12..20).try_into().expect("8 bytes"));
        let crc = u32::from_le_bytes(field(20..24).try_into().expect("4 bytes"));
        if version > FORMAT_VERSION {
            return Err(CheckpointError::NewerVersion {
                path: path.to_path_buf(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version != FORMAT_VERSION && version != 1 {
            return Err(corrupted(format!(
                "format version {version} is not one this build reads (1 or {FORMAT_VERSION})"
            )));
        }
        let held = file_len.saturating_sub(HEADER_LEN as u64);
        if payload_len > held {
            return Err(corrupted(format!(
                "truncated: the header promises {payload_len} payload bytes, the file holds {held}"
            )));
        }
        if payload_len < held {
            return Err(corrupted(format!(
                "{} stray bytes after the {payload_len}-byte payload",
                held - payload_len
            )));
        }
        // The payload is read from a map of the file: no buffer of its own, and its pages come
        // straight from the page cache.
        // SAFETY: Quill replaces a checkpoint by renaming a new file over it, never by writing
        // into it, so the mapped bytes do not change while they are read. (Another program
        // truncating the file meanwhile could fault, as it could for any mapped file.)
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(path))?;
        // payload_len == what the file holds (checked above).
        let payload = &map[HEADER_LEN..];
        let actual = crc32fast::hash(payload);
        if actual != crc {
            return Err(corrupted(format!("checksum mismatch: stored {crc:08x}, computed {actual:08x}")));
        }
        let checkpoint: Checkpoint = if version == 1 {
            let v1: CheckpointV1 =
                payload_options(payload_len).deserialize(payload).map_err(|e| corrupted(decode_error(&e)))?;
            v1.into()
        } else {
            payload_options(payload_len).deserialize(payload).map_err(|e| corrupted(decode_error(&e)))?
        };
        checkpoint.check_sizes().map_err(corrupted)?;
        Ok(checkpoint)
    }

    /// Every tensor holds as many values as its shape says, the model config describes
    /// as many parameters as the tensors hold, and the optimizer has one moment of the
    /// right size per parameter.
    fn check_sizes(&self) -> Result<(), String> {
        for p in &self.params {
            let numel = p.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if numel != Some(p.data.len()) {
                return Err(format!(
                    "parameter {} has shape {:?} but {} values",
                    p.name,
                    p.shape,
                    p.data.len()
                ));
            }
        }
        self.check_model_size()?;
        if let Some(opt) = &self.optimizer {
            if opt.m.len() != self.params.len() || opt.v.len() != self.params.len() {
                return Err(format!(
                    "{} parameters but {} first and {} second optimizer moments",
                    self.params.len(),
                    opt.m.len(),
                    opt.v.len()
                ));
            }
            for ((p, m), v) in self.params.iter().zip(&opt.m).zip(&opt.v) {
                if m.len() != p.data.len() || !(v.len() == p.data.len() || v.is_empty()) {
                    return Err(format!(
                        "optimizer moments of {} do not match its {} values",
                        p.name,
                        p.data.len()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The model config describes as many parameter values as the checkpoint holds, so a
    /// model built from the config allocates no more than the file held. (A config that
    /// claims a model of 2^40 in some dimension is refused here, before `Gpt::zeroed`.)
    fn check_model_size(&self) -> Result<(), String> {
        let held: u64 = self.params.iter().map(|p| p.data.len() as u64).sum();
        match self.model.checked_num_params() {
            Ok(claimed) if claimed == held => Ok(()),
            Ok(claimed) => Err(format!(
                "its model config describes {claimed} parameters, but it holds {held} parameter values"
            )),
            Err(e) => {
                Err(format!("its model config cannot be built ({e}), and it holds {held} parameter values"))
            }
        }
    }

    /// The model's parameters, by name.
    pub fn params_of(gpt: &Gpt) -> Vec<NamedTensor> {
        gpt.tape
            .params()
            .map(|(_, name, value)| NamedTensor {
                name: name.to_string(),
                shape: value.shape.clone(),
                data: value.data.clone(),
            })
            .collect()
    }

    /// A model with this checkpoint's weights; errors name a missing or misshapen parameter.
    /// Copies every weight; [`Checkpoint::into_model`] moves them instead.
    pub fn to_model(&self) -> Result<Gpt, CheckpointError> {
        self.model.validate().map_err(CheckpointError::InvalidModel)?;
        self.check_model_size().map_err(CheckpointError::ModelSize)?;
        let mut gpt = Gpt::zeroed(self.model.clone());
        self.load_into(&mut gpt)?;
        Ok(gpt)
    }

    /// A model with this checkpoint's weights, moved into it rather than copied (a 124M
    /// model is 500 MB of weights); errors as [`Checkpoint::to_model`]'s.
    pub fn into_model(self) -> Result<Gpt, CheckpointError> {
        self.model.validate().map_err(CheckpointError::InvalidModel)?;
        let mut gpt = Gpt::zeroed(self.model.clone());
        let sources = self.sources(&gpt)?;
        let mut params: Vec<Option<NamedTensor>> = self.params.into_iter().map(Some).collect();
        for (id, index) in sources {
            let saved = params[index].take().expect("sources names each parameter once");
            gpt.tape.value_mut(id).data = saved.data;
        }
        Ok(gpt)
    }

    /// Copies this checkpoint's weights into an existing model of the same config. Every
    /// parameter is checked before any is written, so on error the model is unchanged.
    pub fn load_into(&self, gpt: &mut Gpt) -> Result<(), CheckpointError> {
        for (id, index) in self.sources(gpt)? {
            gpt.tape.value_mut(id).data.copy_from_slice(&self.params[index].data);
        }
        Ok(())
    }

    /// For each of the model's parameters, its index in `self.params`, once every one has
    /// been found with the model's shape and no saved tensor is left over.
    fn sources(&self, gpt: &Gpt) -> Result<Vec<(TensorId, usize)>, CheckpointError> {
        let by_name: HashMap<&str, usize> =
            self.params.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
        let mut sources = Vec::with_capacity(gpt.tape.n_params());
        for (id, name, value) in gpt.tape.params() {
            let index =
                *by_name.get(name).ok_or_else(|| CheckpointError::MissingParam { name: name.to_string() })?;
            let saved = &self.params[index];
            if saved.shape != value.shape || saved.data.len() != value.data.len() {
                return Err(CheckpointError::ShapeMismatch {
                    name: name.to_string(),
                    expected: value.shape.clone(),
                    found: saved.shape.clone(),
                });
            }
            sources.push((id, index));
        }
        if sources.len() != self.params.len() {
            let known: Vec<&str> = gpt.tape.params().map(|(_, name, _)| name).collect();
            let extra = self.params.iter().find(|p| !known.contains(&p.name.as_str()));
            let name = extra.map_or_else(|| "(a duplicate name)".to_string(), |p| p.name.clone());
            return Err(CheckpointError::UnexpectedParam { name });
        }
        Ok(sources)
    }
}

/// What went wrong decoding a payload whose checksum matched, in words.
fn decode_error(e: &bincode::Error) -> String {
    match &**e {
        bincode::ErrorKind::Io(_) | bincode::ErrorKind::SizeLimit => {
            "undecodable payload: a length inside it runs past its end".to_string()
        }
        other => format!("undecodable payload: {other}"),
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
