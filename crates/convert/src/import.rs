//! Import: a Hugging Face GPT-2 folder → a Quill [`Checkpoint`]. The safetensors file is
//! memory-mapped (never read into a buffer of its own) and each tensor is read once from
//! the map into its Quill tensor (then transposed, for the `Conv1D` weights).

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use data::{Gpt2Tokenizer, Tokenizer};
use model::checkpoint::{Checkpoint, NamedTensor};
use model::init::param_specs;
use model::GptConfig;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use crate::hf_config::HfConfig;
use crate::{is_conv1d, ConvertError, QUILL_TOKENIZER_FILE};

/// Whether `path` is a folder holding `config.json` and `model.safetensors`.
pub fn is_hf_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file() && path.join("model.safetensors").is_file()
}

/// Reads a Hugging Face GPT-2 folder into a checkpoint (no optimizer state, step 0) that
/// `sample` and `Checkpoint::into_model` take as they take one written by `train`.
pub fn from_hf(dir: &Path) -> Result<Checkpoint, ConvertError> {
    let config_path = dir.join("config.json");
    let model = HfConfig::read(&config_path)?.to_model_config(&config_path)?;
    // The two big reads are independent: GPT-2's 50k-token vocabulary and 500 MB of weights.
    let (tokenizer, params) =
        rayon::join(|| read_tokenizer(dir), || read_weights(&dir.join("model.safetensors"), &model));
    let (tokenizer, tokenizer_path) = tokenizer?;
    if tokenizer.vocab_size() > model.vocab_size {
        return Err(ConvertError::VocabMismatch {
            path: tokenizer_path,
            tokenizer: tokenizer.vocab_size(),
            model: model.vocab_size,
        });
    }
    Ok(Checkpoint {
        model,
        run_config: format!("# imported from the Hugging Face folder {}\n", dir.display()),
        tokenizer: tokenizer.to_bytes(),
        params: params?,
        optimizer: None,
        step: 0,
        train_state: Vec::new(),
    })
}

/// The folder's tokenizer: GPT-2's files under Hugging Face's names (`vocab.json` +
/// `merges.txt`) or OpenAI's (`encoder.json` + `vocab.bpe`), or the Quill tokenizer an
/// export of a char or BPE model leaves. Returns it with the file that names it in errors.
fn read_tokenizer(dir: &Path) -> Result<(Box<dyn Tokenizer>, PathBuf), ConvertError> {
    for (vocab, merges) in [("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")] {
        let (vocab, merges) = (dir.join(vocab), dir.join(merges));
        if vocab.is_file() && merges.is_file() {
            let tokenizer = Gpt2Tokenizer::from_files(&vocab, &merges)
                .map_err(|e| ConvertError::Tokenizer { path: vocab.clone(), detail: e.to_string() })?;
            return Ok((Box::new(tokenizer), vocab));
        }
    }
    let quill = dir.join(QUILL_TOKENIZER_FILE);
    if quill.is_file() {
        let tokenizer = data::load_tokenizer(&quill)
            .map_err(|e| ConvertError::Tokenizer { path: quill.clone(), detail: e.to_string() })?;
        return Ok((tokenizer, quill));
    }
    Err(ConvertError::NoTokenizer { dir: dir.to_path_buf() })
}

/// The mask buffers older transformers saved beside the weights; Quill's attention is
/// causal by construction.
fn is_mask_buffer(name: &str) -> bool {
    name.ends_with("attn.bias") || name.ends_with("attn.masked_bias")
}

/// Every parameter of `model`, in Quill's order and layout, from the safetensors file.
fn read_weights(path: &Path, model: &GptConfig) -> Result<Vec<NamedTensor>, ConvertError> {
    let file = File::open(path).map_err(ConvertError::io(path))?;
    // SAFETY: the map is read-only and dropped before this function returns; a file
    // changed by another process meanwhile can give wrong values, never unsafety here,
    // because every read goes through bounds-checked slices.
    // Populated: the whole file is read anyway, and one fault-in beats one per page.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(ConvertError::io(path))?;
    let file_len = map.len();
    check_size_fits(path, model, file_len)?;
    let tensors = SafeTensors::deserialize(&map)
        .map_err(|e| ConvertError::Safetensors { path: path.to_path_buf(), detail: e.to_string() })?;
    // GPT2LMHeadModel writes `transformer.wte.weight`; GPT2Model (OpenAI's upload) `wte.weight`.
    let prefix = if tensors.tensor("transformer.wte.weight").is_ok() { "transformer." } else { "" };
    let hf_name = |name: &str| format!("{prefix}{}", name.strip_prefix("transformer.").unwrap_or(name));

    let specs = param_specs(model);
    let used: HashSet<String> = specs.iter().map(|spec| hf_name(&spec.name)).collect();
    // One tensor per task: the copies and transposes of a 124M model spread over the cores.
    let params = specs
        .into_par_iter()
        .map(|spec| {
            let name = hf_name(&spec.name);
            let view = tensors
                .tensor(&name)
                .map_err(|_| ConvertError::MissingTensor { path: path.to_path_buf(), name: name.clone() })?;
            let conv1d = is_conv1d(&spec.name);
            let expected = if conv1d { vec![spec.shape[1], spec.shape[0]] } else { spec.shape.clone() };
            if view.shape() != expected.as_slice() {
                return Err(ConvertError::ShapeMismatch {
                    path: path.to_path_buf(),
                    name,
                    expected,
                    found: view.shape().to_vec(),
                });
            }
            if view.dtype() != Dtype::F32 {
                return Err(ConvertError::Dtype {
                    path: path.to_path_buf(),
                    name,
                    found: format!("{:?}", view.dtype()),
                });
            }
            let value = |b: &[u8]| f32::from_le_bytes(b.try_into().expect("4 bytes"));
            let data = if conv1d {
                transpose(view.data(), expected[0], expected[1], value)
            } else {
                view.data().chunks_exact(4).map(value).collect()
            };
            Ok(NamedTensor { name: spec.name, shape: spec.shape, data })
        })
        .collect::<Result<Vec<NamedTensor>, ConvertError>>()?;

    let wte = hf_name("transformer.wte.weight");
    for (name, view) in tensors.iter() {
        if used.contains(name) || is_mask_buffer(name) {
            continue;
        }
        if name == "lm_head.weight" {
            let tied =
                tensors.tensor(&wte).is_ok_and(|w| w.shape() == view.shape() && w.data() == view.data());
            if !tied {
                return Err(ConvertError::UntiedHead {
                    path: path.to_path_buf(),
                    detail: format!("lm_head.weight differs from {wte}"),
                });
            }
            continue;
        }
        return Err(ConvertError::UnexpectedTensor { path: path.to_path_buf(), name: name.to_string() });
    }
    Ok(params)
}

/// Refuses a config whose parameters could not fit in the file, before anything is
/// allocated from its sizes: (12·C² + 13·C)·L + (V + T + 2)·C values of 4 bytes.
fn check_size_fits(path: &Path, model: &GptConfig, file_len: usize) -> Result<(), ConvertError> {
    let (v, t, c, l) = (model.vocab_size, model.block_size, model.n_embd, model.n_layer);
    let per_layer = c.checked_mul(c).and_then(|cc| cc.checked_mul(12)).and_then(|w| w.checked_add(13 * c));
    let total = per_layer
        .and_then(|p| p.checked_mul(l))
        .and_then(|p| v.checked_add(t)?.checked_add(2)?.checked_mul(c)?.checked_add(p))
        .and_then(|n| n.checked_mul(4));
    match total {
        Some(bytes) if bytes <= file_len => Ok(()),
        _ => Err(ConvertError::Config {
            path: path.with_file_name("config.json"),
            detail: format!(
                "its sizes ask for more parameters than the {file_len} bytes of model.safetensors hold; the two files belong to different models"
            ),
        }),
    }
}

/// `values` (rows, cols), row-major, → (cols, rows), each element read by `value` from its
/// slice of `values` (one element of `values.len() / (rows · cols)` items: an `f32`, or its
/// 4 little-endian bytes straight from the file). In tiles, so that both the reads and the
/// writes stay within a few cache lines.
pub(crate) fn transpose<T>(values: &[T], rows: usize, cols: usize, value: impl Fn(&[T]) -> f32) -> Vec<f32> {
    const TILE: usize = 32;
    let n = rows * cols;
    let width = values.len() / n.max(1);
    debug_assert_eq!(values.len(), n * width);
    let mut out = vec![0.0; n];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    let i = (r * cols + c) * width;
                    out[c * rows + r] = value(&values[i..i + width]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_rows_and_columns() {
        let x: Vec<f32> = (0..6).map(|i| i as f32).collect(); // (2, 3)
        let own = |v: &[f32]| v[0];
        assert_eq!(transpose(&x, 2, 3, own), [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let big: Vec<f32> = (0..70 * 45).map(|i| i as f32).collect();
        assert_eq!(transpose(&transpose(&big, 70, 45, own), 45, 70, own), big);
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        let from_bytes = transpose(&bytes, 2, 3, |b| f32::from_le_bytes(b.try_into().expect("4 bytes")));
        assert_eq!(from_bytes, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }
}
