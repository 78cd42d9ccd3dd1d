//! The GPT of GPT-2 / nanoGPT: token + learned position embeddings, pre-LN blocks
//! (layer norm, causal self-attention with a fused q/k/v projection, residual; layer norm,
//! 4x MLP with GELU, residual), a final layer norm and an output head tied to the token
//! embedding. The training forward records on the model's own tape.
//!
//! The options of [`crate::Arch`] swap parts of that recipe, not the recipe: RMSNorm for
//! every layer norm, ReLU² for GELU, rotary embeddings of q and k (after QK-norm, when
//! both are on) for the position table, QK-norm on the fused q/k/v before attention, and
//! an output head `lm_head.weight` of its own.
//!
//! Each layer is a small struct of parameter ids ([`Linear`], [`LayerNorm`], [`Attention`],
//! [`Mlp`], [`Block`]) whose `forward` is its recipe. GELU is GPT-2's tanh approximation
//! (nanoGPT's default `nn.GELU()` is the exact erf form; they differ by about 1e-3).
//! Dropout is applied to the embeddings and to each residual branch; nanoGPT's extra
//! dropout on the attention weights is not (our attention is fused).

use std::collections::HashMap;

use tensor::{Grads, Rng, Tape, TensorId};

use crate::init::param_specs;
use crate::{Activation, Arch, GptConfig, Norm, Position};

/// A linear layer: x · weightᵀ + bias, weight (out, in).
pub(crate) struct Linear {
    pub weight: TensorId,
    pub bias: Option<TensorId>,
}

impl Linear {
    fn forward(&self, tape: &mut Tape, x: TensorId) -> TensorId {
        tape.matmul(x, self.weight, self.bias)
    }
}

/// Normalisation over channels: layer norm with a gain and (when the model has biases) a
/// shift, or RMS norm with a gain.
pub(crate) struct LayerNorm {
    pub kind: Norm,
    pub weight: TensorId,
    pub bias: Option<TensorId>,
}

impl LayerNorm {
    /// `zero_shift` is a zero constant (C) that stands in for a layer norm's missing bias.
    fn forward(&self, tape: &mut Tape, x: TensorId, zero_shift: Option<TensorId>) -> TensorId {
        match self.kind {
            Norm::LayerNorm => {
                let shift = self.bias.or(zero_shift).expect("a model without biases passes a zero shift");
                tape.layernorm(x, self.weight, shift)
            }
            Norm::RmsNorm => tape.rmsnorm(x, self.weight),
        }
    }
}

/// Causal self-attention: fused q/k/v projection, attention, output projection.
pub(crate) struct Attention {
    pub c_attn: Linear,
    pub c_proj: Linear,
}

/// The feed-forward network: C → 4C, GELU (or ReLU²), 4C → C.
pub(crate) struct Mlp {
    pub c_fc: Linear,
    pub c_proj: Linear,
}

/// One pre-LN transformer block.
pub(crate) struct Block {
    pub ln_1: LayerNorm,
    pub attn: Attention,
    pub ln_2: LayerNorm,
    pub mlp: Mlp,
}

/// What one forward needs besides the tape: heads, the options, dropout and the zero shift.
struct Step<'a> {
    n_head: usize,
    arch: Arch,
    dropout: f32,
    rng: Option<&'a mut Rng>,
    zero_shift: Option<TensorId>,
}

impl Step<'_> {
    fn dropout(&mut self, tape: &mut Tape, x: TensorId) -> TensorId {
        match self.rng.as_deref_mut() {
            Some(rng) => tape.dropout(x, self.dropout, rng),
            None => x,
        }
    }
}

impl Block {
    /// x + attn(ln_1(x)), then + mlp(ln_2(x)). x: (B, T, C) → (B, T, C).
    fn forward(&self, tape: &mut Tape, x: TensorId, step: &mut Step) -> TensorId {
        let h = self.ln_1.forward(tape, x, step.zero_shift); // (B, T, C)
        let mut qkv = self.attn.c_attn.forward(tape, h); // (B, T, 3C)
        if step.arch.qk_norm {
            qkv = tape.qk_norm(qkv, step.n_head); // (B, T, 3C)
        }
        if step.arch.position == Position::Rope {
            qkv = tape.rope(qkv, step.n_head); // (B, T, 3C)
        }
        let y = tape.attention(qkv, step.n_head); // (B, T, C)
        let y = self.attn.c_proj.forward(tape, y); // (B, T, C)
        let y = step.dropout(tape, y); // (B, T, C)
        let x = tape.add(x, y); // (B, T, C)
        let h = self.ln_2.forward(tape, x, step.zero_shift); // (B, T, C)
        let h = self.mlp.c_fc.forward(tape, h); // (B, T, 4C)
        let h = match step.arch.activation {
            Activation::Gelu => tape.gelu(h),
            Activation::Relu2 => tape.relu2(h),
        }; // (B, T, 4C)
        let h = self.mlp.c_proj.forward(tape, h); // (B, T, C)
        let h = step.dropout(tape, h); // (B, T, C)
        tape.add(x, h) // (B, T, C)
    }
}

/// The parameter ids of every layer.
pub(crate) struct Layers {
    pub wte: TensorId,
    /// The position table, with learned positions.
    pub wpe: Option<TensorId>,
    pub h: Vec<Block>,
    pub ln_f: LayerNorm,
    /// The output head (V, C): `wte` when tied, else `lm_head.weight`.
    pub head: TensorId,
}

impl Layers {
    /// Looks up every layer's parameters by their GPT-2 names.
    fn from_tape(tape: &Tape, n_layer: usize, arch: Arch) -> Layers {
        let ids: HashMap<&str, TensorId> = tape.params().map(|(id, name, _)| (name, id)).collect();
        let get = |name: String| {
            *ids.get(name.as_str()).unwrap_or_else(|| panic!("parameter {name} is registered"))
        };
        let opt = |name: String| ids.get(name.as_str()).copied();
        let linear = |p: &str| Linear { weight: get(format!("{p}.weight")), bias: opt(format!("{p}.bias")) };
        let norm = |p: &str| LayerNorm {
            kind: arch.norm,
            weight: get(format!("{p}.weight")),
            bias: opt(format!("{p}.bias")),
        };
        let h = (0..n_layer)
            .map(|i| Block {
                ln_1: norm(&format!("transformer.h.{i}.ln_1")),
                attn: Attention {
                    c_attn: linear(&format!("transformer.h.{i}.attn.c_attn")),
                    c_proj: linear(&format!("transformer.h.{i}.attn.c_proj")),
                },
                ln_2: norm(&format!("transformer.h.{i}.ln_2")),
                mlp: Mlp {
                    c_fc: linear(&format!("transformer.h.{i}.mlp.c_fc")),
                    c_proj: linear(&format!("transformer.h.{i}.mlp.c_proj")),
                },
            })
            .collect();
        let wte = get("transformer.wte.weight".into());
        Layers {
            wte,
            wpe: opt("transformer.wpe.weight".into()),
            h,
            ln_f: norm("transformer.ln_f"),
            head: if arch.tie_head { wte } else { get("lm_head.weight".into()) },
        }
    }
}

/// The GPT. It owns its tape: parameters are the tape's persistent tensors, registered in
/// the order of [`crate::init::param_specs`] under GPT-2's names.
pub struct Gpt {
    pub config: GptConfig,
    pub tape: Tape,
    pub(crate) layers: Layers,
    /// bfloat16 copies of the weights the KV-cache path streams (every linear layer's
    /// weight and the tied head), by tensor id; empty when it reads the `f32` tape
    /// (see [`Gpt::set_sampling_dtype`]).
    pub(crate) half: HashMap<TensorId, Vec<tensor::kernels::Bf16>>,
}

/// What a training forward returns.
pub struct ForwardOutput {
    /// (b, t, vocab_size)
    pub logits: TensorId,
    /// Mean cross-entropy, when targets were given.
    pub loss: Option<TensorId>,
}

impl Gpt {
    /// A freshly initialised model (GPT-2 init) from a seed: the parameters are drawn in
    /// registration order from `Rng::seeded(seed)`. Panics on an invalid config (call
    /// [`GptConfig::validate`] first to get the error as a value).
    pub fn new(config: GptConfig, seed: u64) -> Gpt {
        Gpt::build(config, Some(&mut Rng::seeded(seed)))
    }

    /// A model whose parameters are all zero, to be overwritten (by a checkpoint).
    pub fn zeroed(config: GptConfig) -> Gpt {
        Gpt::build(config, None)
    }

    fn build(config: GptConfig, mut rng: Option<&mut Rng>) -> Gpt {
        if let Err(e) = config.validate() {
            panic!("Gpt::new: {e}");
        }
        let mut tape = Tape::new();
        for spec in param_specs(&config) {
            let value = match rng.as_deref_mut() {
                Some(rng) => spec.initial_value(rng),
                None => tensor::Tensor::zeros(&spec.shape),
            };
            tape.param(&spec.name, value);
        }
        let layers = Layers::from_tape(&tape, config.n_layer, config.arch);
        Gpt { config, tape, layers, half: HashMap::new() }
    }

    /// Parameter names in registration order, GPT-2's (`transformer.wte.weight`, ...).
    pub fn param_names(&self) -> Vec<String> {
        self.tape.params().map(|(_, name, _)| name.to_string()).collect()
    }

    /// Training forward on tokens (b·t, row-major), recorded on the tape (which is reset
    /// first). Dropout is applied when `dropout_rng` is given and config.dropout > 0.
    /// Panics when t > block_size, when tokens or targets do not hold b·t ids, or (in the
    /// embedding and cross-entropy ops) on an id ≥ vocab_size.
    pub fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
        dropout_rng: Option<&mut Rng>,
    ) -> ForwardOutput {
        let cfg = &self.config;
        assert!(
            (1..=cfg.block_size).contains(&t),
            "Gpt::forward: sequence length t = {t}, but it must be in 1..=block_size = {}",
            cfg.block_size
        );
        assert_eq!(tokens.len(), b * t, "Gpt::forward: {} tokens for (b, t) = ({b}, {t})", tokens.len());
        if let Some(targets) = targets {
            assert_eq!(
                targets.len(),
                b * t,
                "Gpt::forward: {} targets for (b, t) = ({b}, {t})",
                targets.len()
            );
        }
        let (tape, layers) = (&mut self.tape, &self.layers);
        // On a pool thread, so that each op forks and joins cheaply.
        tensor::on_pool(move || {
            tape.reset();
            let c = cfg.n_embd;
            let layer_norm = cfg.arch.norm == Norm::LayerNorm;
            let zero_shift = (!cfg.bias && layer_norm).then(|| tape.constant(&[c], &vec![0.0; c]));
            let dropout = cfg.dropout;
            let rng = dropout_rng.filter(|_| dropout > 0.0);
            let mut step = Step { n_head: cfg.n_head, arch: cfg.arch, dropout, rng, zero_shift };

            let mut x = tape.embedding(layers.wte, tokens, &[b, t]); // (B, T, C)
            if let Some(wpe) = layers.wpe {
                let positions: Vec<u32> = (0..b).flat_map(|_| 0..t as u32).collect();
                let pos_emb = tape.embedding(wpe, &positions, &[b, t]); // (B, T, C)
                x = tape.add(x, pos_emb); // (B, T, C)
            }
            let mut x = step.dropout(tape, x); // (B, T, C)
            for block in &layers.h {
                x = block.forward(tape, x, &mut step); // (B, T, C)
            }
            let x = layers.ln_f.forward(tape, x, zero_shift); // (B, T, C)
            let logits = tape.matmul(x, layers.head, None); // (B, T, V), head tied to wte unless untied
            let loss = targets.map(|targets| tape.cross_entropy(logits, targets, None)); // ()
            ForwardOutput { logits, loss }
        })
    }

    /// Accumulates every parameter's gradient of `loss` into `grads`.
    pub fn backward(&self, loss: TensorId, grads: &mut Grads) {
        self.tape.backward(loss, grads);
    }

    /// After a backward: every parameter has a finite, non-zero gradient. The error names
    /// the first parameter that does not (catches a silently detached layer at step 0).
    pub fn check_grads(&self, grads: &Grads) -> Result<(), String> {
        for (id, name, value) in self.tape.params() {
            let g = grads.get(id);
            if g.len() != value.numel() {
                return Err(format!(
                    "parameter {name} has no gradient ({} values for a tensor of {}); run backward first",
                    g.len(),
                    value.numel()
                ));
            }
            if let Some(i) = g.iter().position(|v| !v.is_finite()) {
                return Err(format!("parameter {name} has a non-finite gradient ({} at index {i})", g[i]));
            }
            if g.iter().all(|&v| v == 0.0) {
                return Err(format!(
                    "parameter {name} has an all-zero gradient: it does not reach the loss (a detached layer?)"
                ));
            }
        }
        Ok(())
    }
}
