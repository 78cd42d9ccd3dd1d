//! What a model and a run need in memory, computed before anything is allocated: the
//! parameter count, the weights, gradients and AdamW moments, the activations of a
//! training step, the batch buffers, and the KV cache and logits of sampling. Every size
//! comes from outside (a config file, a `--set`, a checkpoint's config), so the arithmetic
//! is overflow-checked and an overflow names the field that caused it; a total is then
//! compared with the machine's memory ([`machine_memory`]) by the program that asks.

use tensor::Tape;

use crate::{GptConfig, ModelError, Norm, Position};

/// Bytes of one f32.
const F32: u64 = 4;

/// The memory of a training run, in bytes, part by part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrainingMemory {
    /// Parameters (the tied head counted once).
    pub params: u64,
    pub weights: u64,
    pub gradients: u64,
    /// AdamW's two moments.
    pub optimizer: u64,
    /// What a step keeps for backward, and the gradient buffers backward works in
    /// ([`GptConfig::activation_bytes`]).
    pub activations: u64,
    /// The input and target token ids of a micro-batch.
    pub batches: u64,
    /// Showing a sample during training: a KV cache and one row of logits.
    pub sampling: u64,
}

impl TrainingMemory {
    /// Every part together (saturating: each part is already below 2^64, and a sum past it
    /// is past any machine).
    pub fn total(&self) -> u64 {
        [self.weights, self.gradients, self.optimizer, self.activations, self.batches, self.sampling]
            .into_iter()
            .fold(0u64, u64::saturating_add)
    }

    /// The largest part and its name (for a refusal's sentence).
    pub fn largest(&self) -> (&'static str, u64) {
        let parts = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("AdamW moments", self.optimizer),
            ("activations", self.activations),
            ("batch buffers", self.batches),
            ("sampling buffers", self.sampling),
        ];
        parts.into_iter().max_by_key(|&(_, bytes)| bytes).expect("six parts")
    }
}

/// `a · b`, or an error naming `field` when it does not fit in 64 bits.
fn mul(a: u64, b: u64, field: &'static str, value: u64) -> Result<u64, ModelError> {
    a.checked_mul(b).ok_or(ModelError::TooLarge { field, value })
}

/// `a + b`, or an error naming `field` when it does not fit in 64 bits.
fn add(a: u64, b: u64, field: &'static str, value: u64) -> Result<u64, ModelError> {
    a.checked_add(b).ok_or(ModelError::TooLarge { field, value })
}

impl GptConfig {
    /// The parameter count in closed form (equal to [`GptConfig::num_params`], which lists
    /// every parameter), overflow-checked: the error names the field that makes it overflow.
    pub fn checked_num_params(&self) -> Result<u64, ModelError> {
        let (v, t, c, l) =
            (self.vocab_size as u64, self.block_size as u64, self.n_embd as u64, self.n_layer as u64);
        let wte = mul(v, c, "model.vocab_size", v)?;
        let wpe = match self.arch.position {
            Position::Learned => mul(t, c, "model.block_size", t)?,
            Position::Rope => 0,
        };
        let head = if self.arch.tie_head { 0 } else { wte };
        // A norm's shift exists only for a layer norm in a model with biases.
        let shifts = self.bias && self.arch.norm == Norm::LayerNorm;
        // Per layer: qkv 3C², attention projection C², MLP 4C² and 4C², so 12·C² weights;
        // two layer-norm gains (C each); with biases also 3C + C + 4C + C linear biases and
        // two layer-norm shifts: 13·C vectors in all (11·C with RMSNorm's gains only), else 2·C.
        let square = mul(c, c, "model.n_embd", c)?;
        let weights = mul(square, 12, "model.n_embd", c)?;
        let per_c = match (self.bias, shifts) {
            (true, true) => 13,
            (true, false) => 11,
            (false, _) => 2,
        };
        let vectors = mul(c, per_c, "model.n_embd", c)?;
        let per_layer = add(weights, vectors, "model.n_embd", c)?;
        let layers = mul(per_layer, l, "model.n_layer", l)?;
        let final_norm = if shifts { 2 * c } else { c };
        [wpe, layers, final_norm, head]
            .into_iter()
            .try_fold(wte, |sum, part| add(sum, part, "model.n_embd", c))
    }

    /// Bytes of the activations of a training step of `batch_size` sequences (see
    /// [`GptConfig::activation_bytes`] for what is counted), overflow-checked; the error
    /// names the field, `train.batch_size` when the batch is what overflows.
    pub fn checked_activation_bytes(&self, batch_size: usize) -> Result<u64, ModelError> {
        let (b, t, c, l, nh, v) = (
            batch_size as u64,
            self.block_size as u64,
            self.n_embd as u64,
            self.n_layer as u64,
            self.n_head as u64,
            self.vocab_size as u64,
        );
        let tokens = mul(b, t, "train.batch_size", b)?;
        // About 20 values per token per layer, plus logits and probabilities (3·V), and the
        // gradient buffers: a few of the widest (16·C) and the logits' (V).
        let width = add(mul(20, c, "model.n_embd", c)?, mul(2, nh, "model.n_head", nh)?, "model.n_embd", c)?;
        let layers = mul(l, width, "model.n_layer", l)?;
        let vocab = mul(4, v, "model.vocab_size", v)?;
        let per_token = add(
            add(layers, vocab, "model.vocab_size", v)?,
            mul(16, c, "model.n_embd", c)?,
            "model.n_embd",
            c,
        )?;
        let values = mul(tokens, per_token, "train.batch_size", b)?;
        // Attention probabilities kept for backward: at most 256² per head, so no overflow here.
        let probs_per_sequence = Tape::attention_saved_probs(1, self.block_size, 1) as u64;
        let probs = mul(
            mul(mul(probs_per_sequence, nh, "model.n_head", nh)?, l, "model.n_layer", l)?,
            b,
            "train.batch_size",
            b,
        )?;
        mul(add(values, probs, "train.batch_size", b)?, F32, "train.batch_size", b)
    }

    /// Bytes of sampling with a KV cache: keys and values for block_size positions in
    /// every layer, the attention rows and one row of logits (the weights not counted).
    pub fn checked_sampling_bytes(&self) -> Result<u64, ModelError> {
        let (t, c, l, nh, v) = (
            self.block_size as u64,
            self.n_embd as u64,
            self.n_layer as u64,
            self.n_head as u64,
            self.vocab_size as u64,
        );
        let per_layer = mul(mul(2, t, "model.block_size", t)?, c, "model.n_embd", c)?;
        let cache = mul(per_layer, l, "model.n_layer", l)?;
        let rows = mul(mul(2, nh, "model.n_head", nh)?, t, "model.block_size", t)?;
        let values =
            [rows, v, c].into_iter().try_fold(cache, |sum, part| add(sum, part, "model.n_embd", c))?;
        mul(values, F32, "model.n_embd", c)
    }

    /// Bytes of sampling from this model: its weights and [`GptConfig::checked_sampling_bytes`].
    pub fn checked_inference_bytes(&self) -> Result<u64, ModelError> {
        let weights = mul(self.checked_num_params()?, F32, "model.n_embd", self.n_embd as u64)?;
        add(weights, self.checked_sampling_bytes()?, "model.n_embd", self.n_embd as u64)
    }

    /// Everything a training run of `batch_size` sequences per micro-batch needs, part by
    /// part; `sample_tokens > 0` adds the buffers of the samples shown while training.
    pub fn training_memory(
        &self,
        batch_size: usize,
        sample_tokens: usize,
    ) -> Result<TrainingMemory, ModelError> {
        let params = self.checked_num_params()?;
        let c = self.n_embd as u64;
        let weights = mul(params, F32, "model.n_embd", c)?;
        let optimizer = mul(weights, 2, "model.n_embd", c)?;
        let activations = self.checked_activation_bytes(batch_size)?;
        let b = batch_size as u64;
        // inputs and targets: u32 ids, batch_size · block_size each.
        let batches =
            mul(mul(b, self.block_size as u64, "train.batch_size", b)?, 2 * F32, "train.batch_size", b)?;
        let sampling = if sample_tokens > 0 { self.checked_sampling_bytes()? } else { 0 };
        Ok(TrainingMemory { params, weights, gradients: weights, optimizer, activations, batches, sampling })
    }
}

/// The memory this machine can give a new process, in bytes: `MemAvailable` from
/// /proc/meminfo (else `MemTotal`), or None where there is no such file.
pub fn machine_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    };
    field("MemAvailable:").or_else(|| field("MemTotal:"))
}

/// The environment variable that sets the memory limit, in GB (decimal: 1 GB = 10^9
/// bytes), in place of what the machine has available. `train --max-memory GB` sets it.
pub const MAX_MEMORY_VAR: &str = "QUILL_MAX_MEMORY";

/// How much memory a program may plan for, and where that figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    /// True when [`MAX_MEMORY_VAR`] set it, false when it is the machine's available memory.
    pub configured: bool,
}

impl MemoryLimit {
    /// The limit: [`MAX_MEMORY_VAR`] when set, else [`machine_memory`]; None where neither
    /// is known (then nothing is refused). A value that is not a number of GB is an error.
    pub fn current() -> Result<Option<MemoryLimit>, ModelError> {
        match std::env::var(MAX_MEMORY_VAR) {
            Ok(text) => {
                let gb: f64 =
                    text.trim().parse().map_err(|_| ModelError::BadMemoryLimit { text: text.clone() })?;
                if !gb.is_finite() || gb <= 0.0 {
                    return Err(ModelError::BadMemoryLimit { text });
                }
                Ok(Some(MemoryLimit { bytes: (gb * 1e9).min(u64::MAX as f64) as u64, configured: true }))
            }
            Err(_) => Ok(machine_memory().map(|bytes| MemoryLimit { bytes, configured: false })),
        }
    }

    /// The limit that `needed` bytes go past, if any: None when they fit, or when no limit
    /// is known. Every command that refuses a size asks this one question.
    pub fn exceeded_by(needed: u64) -> Result<Option<MemoryLimit>, ModelError> {
        Ok(MemoryLimit::current()?.filter(|limit| needed > limit.bytes))
    }

    /// `this machine has 23.0 GB available` or `QUILL_MAX_MEMORY allows 64.0 GB`.
    pub fn describe(&self) -> String {
        if self.configured {
            format!("{MAX_MEMORY_VAR} allows {}", format_bytes(self.bytes))
        } else {
            format!("this machine has {} available", format_bytes(self.bytes))
        }
    }
}

/// `1.2 GB`, `3.1 PB`, `512 MB`, `12 kB`: decimal units, as the console prints sizes.
pub fn format_bytes(bytes: u64) -> String {
    let x = bytes as f64;
    let units = [(1e18, "EB"), (1e15, "PB"), (1e12, "TB"), (1e9, "GB")];
    for (scale, unit) in units {
        if x >= scale {
            return format!("{:.1} {unit}", x / scale);
        }
    }
    if x >= 1e6 {
        format!("{:.0} MB", x / 1e6)
    } else {
        format!("{:.0} kB", x / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tiny;
    use crate::Arch;

    #[test]
    fn closed_form_parameter_count_equals_the_listed_one() {
        let rms = Arch { norm: Norm::RmsNorm, ..Arch::GPT2 };
        let rope = Arch { position: Position::Rope, ..Arch::GPT2 };
        let untied = Arch { tie_head: false, ..Arch::GPT2 };
        for arch in [Arch::GPT2, rms, rope, untied, Arch::ALL] {
            for bias in [true, false] {
                for (n_layer, n_embd) in [(1, 8), (2, 32), (3, 48)] {
                    let cfg = GptConfig { bias, n_layer, n_embd, arch, ..tiny() };
                    assert_eq!(cfg.checked_num_params().unwrap(), cfg.num_params() as u64, "{cfg:?}");
                }
            }
        }
    }

    #[test]
    fn checked_activations_equal_the_estimate() {
        let cfg = tiny();
        assert_eq!(cfg.checked_activation_bytes(8).unwrap() as f64, cfg.activation_bytes(8));
    }

    #[test]
    fn an_overflow_names_the_field() {
        let err = |cfg: GptConfig, batch: usize| cfg.training_memory(batch, 0).unwrap_err().to_string();
        let e = err(tiny(), usize::MAX);
        assert!(e.contains("train.batch_size"), "{e}");
        let e = err(GptConfig { n_embd: 1 << 40, n_head: 1, ..tiny() }, 1);
        assert!(e.contains("model.n_embd = 1099511627776"), "{e}");
        let e = err(GptConfig { n_layer: usize::MAX, ..tiny() }, 1);
        assert!(e.contains("model.n_layer"), "{e}");
        let e = err(GptConfig { vocab_size: usize::MAX, ..tiny() }, 1);
        assert!(e.contains("model.vocab_size"), "{e}");
    }

    #[test]
    fn the_limit_reads_gigabytes() {
        // The only test in this crate that sets the variable, so no other test sees it.
        std::env::set_var(MAX_MEMORY_VAR, "2.5");
        let limit = MemoryLimit::current();
        std::env::set_var(MAX_MEMORY_VAR, "lots");
        let bad = MemoryLimit::current();
        std::env::remove_var(MAX_MEMORY_VAR);
        assert_eq!(limit.unwrap(), Some(MemoryLimit { bytes: 2_500_000_000, configured: true }));
        assert!(bad.unwrap_err().to_string().contains("QUILL_MAX_MEMORY=lots"));
    }

    #[test]
    fn huge_but_representable_sizes_are_counted_not_overflowed() {
        let deep = GptConfig { n_layer: 1_000_000_000, ..tiny() }.training_memory(1, 0).unwrap();
        assert!(deep.total() > 1 << 40, "{deep:?}");
        let wide_batch = tiny().training_memory(1_000_000_000_000, 0).unwrap();
        assert_eq!(wide_batch.largest().0, "activations");
        assert!(wide_batch.total() > 1 << 50, "{wide_batch:?}");
        assert_eq!(format_bytes(3_100_000_000_000_000), "3.1 PB");
        assert_eq!(format_bytes(23_000_000_000), "23.0 GB");
    }
}
