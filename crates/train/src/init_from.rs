//! Fine-tuning: a run that starts from trained weights (`model.init_from`, nanoGPT's name)
//! instead of a fresh initialisation. The weights come from a Quill checkpoint, a run
//! folder or a Hugging Face GPT-2 folder (imported by the convert crate). They decide the
//! model's shape, so the config's `[model]` fields are filled in from them, and a field the
//! config gives must agree (the architecture options too: `model.norm`, `model.position`,
//! ...): dropout may differ, and block_size may be lowered (the position
//! table is cropped, as nanoGPT's `crop_block_size` does). The dataset must use the
//! weights' tokenizer. Only the weights are taken: AdamW starts fresh, at step 0. A
//! fine-tuning run records init_from in its config.toml; resuming it reads its own
//! latest.ckpt, never init_from again.

use std::path::{Path, PathBuf};

use data::Tokenizer;
use model::checkpoint::Checkpoint;
use model::{Gpt, GptConfig};

use crate::config::Config;
use crate::TrainError;

/// The weights a fine-tuning run starts from, and where they were read.
pub struct InitWeights {
    /// The checkpoint file or Hugging Face folder read.
    pub path: PathBuf,
    pub ckpt: Checkpoint,
}

impl InitWeights {
    /// Reads `path`: a Hugging Face GPT-2 folder (imported), a run folder (its best.ckpt,
    /// else latest.ckpt) or a checkpoint file; `origin` names the config in errors.
    pub fn load(path: &Path, origin: &str) -> Result<InitWeights, TrainError> {
        let missing = |problem: &str| TrainError::InitFromMissing {
            origin: origin.into(),
            path: path.to_path_buf(),
            problem: problem.into(),
        };
        if !path.exists() {
            return Err(missing(
                "does not exist; give a checkpoint file, a run folder or a Hugging Face GPT-2 folder \
                 (to get GPT-2, run `huggingface-cli download gpt2 --local-dir models/gpt2` on a machine \
                 with internet and copy the folder here; see the README)",
            ));
        }
        if convert::is_hf_folder(path) {
            let ckpt = convert::from_hf(path)?;
            return Ok(InitWeights { path: path.to_path_buf(), ckpt });
        }
        let file = if path.is_dir() {
            ["best.ckpt", "latest.ckpt"].map(|f| path.join(f)).into_iter().find(|f| f.is_file()).ok_or_else(
                || {
                    missing(
                        "is a folder with neither a run's best.ckpt or latest.ckpt nor a Hugging Face model \
                         (config.json and model.safetensors); point it at one of those",
                    )
                },
            )?
        } else {
            path.to_path_buf()
        };
        let ckpt = Checkpoint::load(&file)?;
        Ok(InitWeights { path: file, ckpt })
    }

    /// Fills the `[model]` fields the config left out with the weights' values, and refuses
    /// one it gave differently (dropout excepted; block_size may be lower).
    pub fn resolve(&self, config: &mut Config, origin: &str) -> Result<(), TrainError> {
        let (m, w) = (&mut config.model, &self.ckpt.model);
        let given: Vec<String> = m.given.clone();
        let is_given = |field: &str| given.iter().any(|g| g == field);
        let mismatch = |field: &'static str, config: String, weights: String| TrainError::InitFromMismatch {
            origin: origin.into(),
            path: self.path.clone(),
            field,
            config,
            weights,
        };
        for (field, value, weights) in [
            ("n_layer", &mut m.n_layer, w.n_layer),
            ("n_head", &mut m.n_head, w.n_head),
            ("n_embd", &mut m.n_embd, w.n_embd),
        ] {
            if is_given(field) && *value != weights {
                return Err(mismatch(field, value.to_string(), weights.to_string()));
            }
            *value = weights;
        }
        if is_given("block_size") && m.block_size > w.block_size {
            return Err(mismatch("block_size", m.block_size.to_string(), w.block_size.to_string()));
        }
        if !is_given("block_size") {
            m.block_size = w.block_size;
        }
        if is_given("bias") && m.bias != w.bias {
            return Err(mismatch("bias", m.bias.to_string(), w.bias.to_string()));
        }
        m.bias = w.bias;
        // The architecture options come from the weights too.
        let a = w.arch;
        for (field, config, weights) in [
            ("norm", m.norm.name(), a.norm.name()),
            ("activation", m.activation.name(), a.activation.name()),
            ("position", m.position.name(), a.position.name()),
        ] {
            if is_given(field) && config != weights {
                return Err(mismatch(field, config.into(), weights.into()));
            }
        }
        for (field, config, weights) in
            [("qk_norm", m.qk_norm, a.qk_norm), ("tie_head", m.tie_head, a.tie_head)]
        {
            if is_given(field) && config != weights {
                return Err(mismatch(field, config.to_string(), weights.to_string()));
            }
        }
        (m.norm, m.activation, m.position, m.qk_norm, m.tie_head) =
            (a.norm, a.activation, a.position, a.qk_norm, a.tie_head);
        Ok(())
    }

    /// Refuses a dataset whose tokenizer is not the weights' one, naming both.
    pub fn check_tokenizer(
        &self,
        config: &Config,
        tokenizer: &dyn Tokenizer,
        origin: &str,
    ) -> Result<(), TrainError> {
        if self.ckpt.tokenizer == tokenizer.to_bytes() {
            return Ok(());
        }
        let describe = |t: &dyn Tokenizer| format!("{} ({} tokens)", t.kind(), t.vocab_size());
        let weights_tokenizer = match data::tokenizer_from_bytes(&self.ckpt.tokenizer) {
            Ok(t) => describe(t.as_ref()),
            Err(e) => format!("unreadable ({e})"),
        };
        let mut dataset_tokenizer = describe(tokenizer);
        if dataset_tokenizer == weights_tokenizer {
            dataset_tokenizer = format!("{dataset_tokenizer}, another vocabulary,");
        }
        Err(TrainError::InitFromTokenizer {
            origin: origin.into(),
            path: self.path.clone(),
            dataset: config.data.dataset.clone(),
            dataset_tokenizer,
            weights_tokenizer,
        })
    }

    /// The model to fine-tune: these weights, moved into a GPT of `gpt_config` (the resolved
    /// config's), with the position table cropped to its block_size.
    pub fn into_model(self, gpt_config: &GptConfig) -> Result<Gpt, TrainError> {
        let InitWeights { path, mut ckpt } = self;
        let (block_size, n_embd) = (gpt_config.block_size, gpt_config.n_embd);
        if block_size < ckpt.model.block_size {
            if let Some(wpe) = ckpt.params.iter_mut().find(|p| p.name == "transformer.wpe.weight") {
                // (block_size, n_embd): the first rows are the first positions.
                wpe.data.truncate(block_size * n_embd);
                wpe.shape = vec![block_size, n_embd];
            }
            ckpt.model.block_size = block_size;
        }
        ckpt.model.dropout = gpt_config.dropout;
        if ckpt.model.vocab_size != gpt_config.vocab_size {
            return Err(TrainError::Config(format!(
                "{}: the model's vocabulary has {} entries but its tokenizer {}; only a model whose \
                 vocabulary is its tokenizer's can be fine-tuned",
                path.display(),
                ckpt.model.vocab_size,
                gpt_config.vocab_size
            )));
        }
        Ok(ckpt.into_model()?)
    }
}
