//! The GPT's parameters as a list: GPT-2's names, shapes and initial values, in the order
//! they are registered on the tape (and so the order of their ids, of the optimizer's
//! moments and of a checkpoint's tensors).
//!
//! Layout. Every linear weight is (out_features, in_features), PyTorch's `nn.Linear`
//! layout, and `matmul` computes x · wᵀ + b. Hugging Face's GPT-2 stores `c_attn`,
//! `c_proj` (attention and MLP) and `c_fc` as `Conv1D` weights, (in, out): importing or
//! exporting GPT-2 weights maps names one to one and transposes those four matrices. The
//! fused `c_attn` rows hold q, then k, then v (C rows each), heads side by side within
//! each. The output head has no parameter of its own: it is `transformer.wte.weight`
//! (tied), so HF's `lm_head.weight` maps to `wte` too.
//!
//! The options of [`crate::Arch`] change the list: rotary positions drop
//! `transformer.wpe.weight`; RMSNorm keeps each norm's gain (`.weight`) and never has a
//! shift (`.bias`), whatever `bias` says; an untied head adds `lm_head.weight` (V, C),
//! N(0, 0.02²), last. ReLU² and QK-norm add no parameters (QK-norm has no gain).
//!
//! Initialisation (GPT-2 / nanoGPT): linear weights and both embeddings ~ N(0, 0.02²);
//! the two residual projections (`attn.c_proj`, `mlp.c_proj`) ~ N(0, (0.02/√(2·n_layer))²);
//! biases 0; layer-norm gains 1 and shifts 0.

use tensor::{Rng, Tensor};

use crate::{GptConfig, Norm, Position};

/// How one parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, std²).
    Normal { std: f32 },
    /// Every element equal to this value.
    Constant(f32),
}

/// One parameter: name, shape, and how it is initialised.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl ParamSpec {
    fn new(name: String, shape: &[usize], init: Init) -> ParamSpec {
        ParamSpec { name, shape: shape.to_vec(), init }
    }

    /// The initial tensor; draws from `rng` only for normal initialisation.
    pub fn initial_value(&self, rng: &mut Rng) -> Tensor {
        match self.init {
            Init::Normal { std } => Tensor::randn(&self.shape, std, rng),
            Init::Constant(value) => Tensor::filled(&self.shape, value),
        }
    }
}

/// Every parameter of a GPT of this config, in registration order.
pub fn param_specs(config: &GptConfig) -> Vec<ParamSpec> {
    let (v, t, c) = (config.vocab_size, config.block_size, config.n_embd);
    let std = 0.02;
    let proj_std = 0.02 / ((2 * config.n_layer) as f32).sqrt();
    let arch = config.arch;
    let mut specs = vec![ParamSpec::new("transformer.wte.weight".into(), &[v, c], Init::Normal { std })];
    if arch.position == Position::Learned {
        specs.push(ParamSpec::new("transformer.wpe.weight".into(), &[t, c], Init::Normal { std }));
    }
    let layernorm = |specs: &mut Vec<ParamSpec>, prefix: &str| {
        specs.push(ParamSpec::new(format!("{prefix}.weight"), &[c], Init::Constant(1.0)));
        if config.bias && arch.norm == Norm::LayerNorm {
            specs.push(ParamSpec::new(format!("{prefix}.bias"), &[c], Init::Constant(0.0)));
        }
    };
    let linear = |specs: &mut Vec<ParamSpec>, prefix: &str, out: usize, inp: usize, std: f32| {
        specs.push(ParamSpec::new(format!("{prefix}.weight"), &[out, inp], Init::Normal { std }));
        if config.bias {
            specs.push(ParamSpec::new(format!("{prefix}.bias"), &[out], Init::Constant(0.0)));
        }
    };
    for i in 0..config.n_layer {
        let h = format!("transformer.h.{i}");
        layernorm(&mut specs, &format!("{h}.ln_1"));
        linear(&mut specs, &format!("{h}.attn.c_attn"), 3 * c, c, std);
        linear(&mut specs, &format!("{h}.attn.c_proj"), c, c, proj_std);
        layernorm(&mut specs, &format!("{h}.ln_2"));
        linear(&mut specs, &format!("{h}.mlp.c_fc"), 4 * c, c, std);
        linear(&mut specs, &format!("{h}.mlp.c_proj"), c, 4 * c, proj_std);
    }
    layernorm(&mut specs, "transformer.ln_f");
    if !arch.tie_head {
        specs.push(ParamSpec::new("lm_head.weight".into(), &[v, c], Init::Normal { std }));
    }
    specs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_order_are_gpt2s() {
        let cfg = GptConfig {
            vocab_size: 10,
            block_size: 4,
            n_layer: 1,
            n_head: 2,
            n_embd: 8,
            dropout: 0.0,
            bias: true,
            arch: crate::Arch::GPT2,
        };
        let names: Vec<String> = param_specs(&cfg).into_iter().map(|p| p.name).collect();
        let expected = [
            "transformer.wte.weight",
            "transformer.wpe.weight",
            "transformer.h.0.ln_1.weight",
            "transformer.h.0.ln_1.bias",
            "transformer.h.0.attn.c_attn.weight",
            "transformer.h.0.attn.c_attn.bias",
            "transformer.h.0.attn.c_proj.weight",
            "transformer.h.0.attn.c_proj.bias",
            "transformer.h.0.ln_2.weight",
            "transformer.h.0.ln_2.bias",
            "transformer.h.0.mlp.c_fc.weight",
            "transformer.h.0.mlp.c_fc.bias",
            "transformer.h.0.mlp.c_proj.weight",
            "transformer.h.0.mlp.c_proj.bias",
            "transformer.ln_f.weight",
            "transformer.ln_f.bias",
        ];
        assert_eq!(names, expected);
        let no_bias = GptConfig { bias: false, ..cfg };
        assert!(param_specs(&no_bias).iter().all(|p| !p.name.ends_with(".bias")));
        // Every option: no wpe, no norm shifts (the linear biases stay), a head of its own.
        let all = GptConfig { arch: crate::Arch::ALL, ..cfg };
        let names: Vec<String> = param_specs(&all).into_iter().map(|p| p.name).collect();
        let dropped = |n: &str| n.contains("wpe") || (n.contains("ln_") && n.ends_with(".bias"));
        let mut expected: Vec<&str> = expected.iter().copied().filter(|n| !dropped(n)).collect();
        expected.push("lm_head.weight");
        assert_eq!(names, expected);
    }
}
