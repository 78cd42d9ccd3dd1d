//! Export: a Quill checkpoint → a folder that `transformers.GPT2LMHeadModel.from_pretrained`
//! loads: `config.json`, `model.safetensors` (GPT2LMHeadModel's names, `Conv1D` weights
//! transposed back to (in, out), no `lm_head.weight`: transformers ties it to `wte`) and
//! the tokenizer. A GPT-2-tokenizer model gets `vocab.json` + `merges.txt`; a char or BPE
//! model gets `quill_tokenizer.bin` (Quill's own tokenizer file, which import reads back)
//! and a note saying so, because transformers has no loader for those tokenizers. A model
//! trained without biases exports zero biases, which computes the same function. A model
//! with any of the architecture options (`model.norm = "rmsnorm"`, rotary positions, ...)
//! is refused, naming them: GPT-2's format has no place for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use data::Tokenizer;
use model::checkpoint::{Checkpoint, CheckpointError};
use model::init::param_specs;
use model::GptConfig;
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::hf_config::config_json;
use crate::import::transpose;
use crate::{is_conv1d, ConvertError};

/// The Quill tokenizer an export of a char or BPE model carries (`data::load_tokenizer`
/// reads it).
pub const QUILL_TOKENIZER_FILE: &str = "quill_tokenizer.bin";
/// The note beside it.
const QUILL_TOKENIZER_NOTE: &str = "quill_tokenizer.md";

/// Reads the checkpoint at `checkpoint` and writes its model to the folder `out` (created
/// if missing). Files already there are refused unless `force`. Returns the files written.
pub fn to_hf(checkpoint: &Path, out: &Path, force: bool) -> Result<Vec<PathBuf>, ConvertError> {
    let ckpt = Checkpoint::load(checkpoint)?;
    let tokenizer = data::tokenizer_from_bytes(&ckpt.tokenizer)
        .map_err(|e| ConvertError::Tokenizer { path: checkpoint.to_path_buf(), detail: e.to_string() })?;
    write_hf_from(&ckpt, tokenizer.as_ref(), out, force, &[checkpoint.to_path_buf()])
}

/// Writes `ckpt`'s model and `tokenizer` as a Hugging Face GPT-2 folder (see the module
/// docs); each file is written atomically. Returns the files written.
pub fn write_hf(
    ckpt: &Checkpoint,
    tokenizer: &dyn Tokenizer,
    out: &Path,
    force: bool,
) -> Result<Vec<PathBuf>, ConvertError> {
    write_hf_from(ckpt, tokenizer, out, force, &[])
}

/// [`write_hf`], refusing (even with `force`) to write over any of `inputs`: the files
/// the checkpoint was read from.
fn write_hf_from(
    ckpt: &Checkpoint,
    tokenizer: &dyn Tokenizer,
    out: &Path,
    force: bool,
    inputs: &[PathBuf],
) -> Result<Vec<PathBuf>, ConvertError> {
    let departures = ckpt.model.arch.departures();
    if !departures.is_empty() {
        return Err(ConvertError::NotGpt2Architecture { options: departures.join(", ") });
    }
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    let gpt2 = tokenizer.as_gpt2();
    let eos = gpt2.and_then(|t| t.encode(data::END_OF_TEXT).ok()).and_then(|ids| match ids[..] {
        [id] => Some(id),
        _ => None,
    });
    files.push((out.join("config.json"), config_json(&ckpt.model, eos).into_bytes()));
    let weights = out.join("model.safetensors");
    files.push((weights.clone(), safetensors_bytes(ckpt, &weights)?));
    match gpt2 {
        Some(gpt2) => {
            let (vocab, merges) = gpt2.to_files();
            files.push((out.join("vocab.json"), vocab.into_bytes()));
            files.push((out.join("merges.txt"), merges.into_bytes()));
        }
        None => {
            files.push((out.join(QUILL_TOKENIZER_FILE), tokenizer.to_bytes()));
            files.push((out.join(QUILL_TOKENIZER_NOTE), tokenizer_note(tokenizer).into_bytes()));
        }
    }
    let paths: Vec<PathBuf> = files.iter().map(|(path, _)| path.clone()).collect();
    if let Some((output, input)) = fsio::output_among_inputs(&paths, inputs) {
        return Err(ConvertError::OutputIsInput { output: output.to_path_buf(), input: input.to_path_buf() });
    }
    if !force {
        if let Some((path, _)) = files.iter().find(|(path, _)| path.exists()) {
            return Err(ConvertError::OutputExists { path: path.clone() });
        }
    }
    std::fs::create_dir_all(out).map_err(ConvertError::io(out))?;
    for (path, bytes) in &files {
        fsio::write_atomic(path, bytes)
            .map_err(|e| ConvertError::Write { path: path.clone(), detail: e.to_string() })?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// The weights under GPT2LMHeadModel's names, in Quill's parameter order, as a safetensors
/// file with the `format: pt` metadata that transformers requires.
fn safetensors_bytes(ckpt: &Checkpoint, path: &Path) -> Result<Vec<u8>, ConvertError> {
    let by_name: HashMap<&str, &[f32]> =
        ckpt.params.iter().map(|p| (p.name.as_str(), p.data.as_slice())).collect();
    let with_biases = GptConfig { bias: true, ..ckpt.model.clone() };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for spec in param_specs(&with_biases) {
        let numel: usize = spec.shape.iter().product();
        let values: Vec<f32> = match by_name.get(spec.name.as_str()) {
            Some(values) if values.len() == numel => values.to_vec(),
            Some(values) => {
                return Err(CheckpointError::ShapeMismatch {
                    name: spec.name,
                    expected: spec.shape,
                    found: vec![values.len()],
                }
                .into())
            }
            None if !ckpt.model.bias && spec.name.ends_with(".bias") => vec![0.0; numel],
            None => return Err(CheckpointError::MissingParam { name: spec.name }.into()),
        };
        let (shape, values) = if is_conv1d(&spec.name) {
            (vec![spec.shape[1], spec.shape[0]], transpose(&values, spec.shape[0], spec.shape[1], |v| v[0]))
        } else {
            (spec.shape, values)
        };
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        tensors.push((spec.name, shape, bytes));
    }
    let views = tensors
        .iter()
        .map(|(name, shape, bytes)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("the shape holds the values");
            (name.as_str(), view)
        })
        .collect::<Vec<_>>();
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    safetensors::serialize(views, &metadata)
        .map_err(|e| ConvertError::Safetensors { path: path.to_path_buf(), detail: e.to_string() })
}

/// What the exported folder's tokenizer is and how to use it.
fn tokenizer_note(tokenizer: &dyn Tokenizer) -> String {
    format!(
        "# Tokenizer\n\n\
         This model was trained with Quill's {kind} tokenizer ({vocab} tokens), which transformers \
         has no loader for: `GPT2LMHeadModel.from_pretrained` loads the weights, but text must be \
         turned into token ids (and back) by Quill's tokenizer.\n\n\
         `{file}` is that tokenizer in Quill's own format; `convert --from-hf` on this folder, or \
         `sample --checkpoint` on it, reads it back.\n",
        kind = tokenizer.kind(),
        vocab = tokenizer.vocab_size(),
        file = QUILL_TOKENIZER_FILE,
    )
}
