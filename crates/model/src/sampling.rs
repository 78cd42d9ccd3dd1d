//! Choosing the next token from logits (temperature, top-k, top-p) and generating text
//! with the KV cache, sliding the window once the text outgrows block_size.

use tensor::Rng;

use crate::Gpt;

/// How to pick each next token.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy (argmax); 1 samples the model's distribution as is.
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches p (nucleus).
    pub top_p: Option<f32>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.8, top_k: None, top_p: None }
    }
}

/// Picks the next token from one position's logits.
pub fn sample_next(logits: &[f32], params: &SamplingParams, rng: &mut Rng) -> u32 {
    todo!("{} {params:?} {}", logits.len(), rng.uniform())
}

/// Generates up to `max_new_tokens` after `prompt` (which must not be empty), calling
/// `on_token` with each new token as soon as it is chosen; returns the new tokens.
pub fn generate(
    gpt: &Gpt,
    prompt: &[u32],
    max_new_tokens: usize,
    params: &SamplingParams,
    rng: &mut Rng,
    on_token: &mut dyn FnMut(u32),
) -> Vec<u32> {
    todo!("{} {max_new_tokens} {params:?} {} {}", prompt.len(), rng.uniform(), gpt.config.n_layer + { on_token(0); 0 })
}
