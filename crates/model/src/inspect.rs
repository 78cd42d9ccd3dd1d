//! Looking inside the model, for pictures: every layer's and head's attention weights over
//! a prompt, and the residual stream (the hidden state) of each position after each block.
//!
//! Both come from one prefill of the KV-cache path (`kv_cache.rs`), observed after each
//! block: the block's own q (in the fed rows) and keys (in the cache), after QK-norm and
//! rotary embeddings when the model has them, give the weights
//! softmax(q_h · K_hᵀ / √hs) that its attention used, row i over positions 0..=i, and the
//! fed rows' residual stream is the hidden state. Nothing here changes what the model
//! computes; the tests hold both equal to the training forward's.

use crate::kv_cache::Feed;
use crate::Gpt;

/// What [`Gpt::trace`] saw for a prompt of T tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// T, the prompt's length.
    pub tokens: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    /// (n_layer, n_head, T, T): row i holds position i's weights over positions 0..=i
    /// (they sum to 1) and zeros after it.
    pub attention: Vec<f32>,
    /// (n_layer + 1, T, C): the input of the first block (token + position embeddings,
    /// or the token's alone with rotary positions),
    /// then the residual stream after each block.
    pub hidden: Vec<f32>,
}

impl Trace {
    /// Layer `layer`'s head `head`: the (T, T) attention weights, row i = query position i.
    pub fn attention_map(&self, layer: usize, head: usize) -> &[f32] {
        let t = self.tokens;
        &self.attention[(layer * self.n_head + head) * t * t..][..t * t]
    }

    /// The (T, C) hidden states entering block `index` (`index` = n_layer: after the last).
    pub fn hidden_state(&self, index: usize) -> &[f32] {
        let (t, c) = (self.tokens, self.n_embd);
        &self.hidden[index * t * c..][..t * c]
    }
}

impl Gpt {
    /// Runs `tokens` through the model (as one prefill of the KV-cache path) and returns
    /// every layer's attention weights and hidden states. Panics, as
    /// [`Gpt::forward_cached`] does, on no tokens, more than block_size tokens or an id
    /// outside the vocabulary.
    pub fn trace(&self, tokens: &[u32]) -> Trace {
        let cfg = &self.config;
        let (t, c, n_head, n_layer) = (tokens.len(), cfg.n_embd, cfg.n_head, cfg.n_layer);
        let hs = c / n_head;
        let mut trace = Trace {
            tokens: t,
            n_layer,
            n_head,
            n_embd: c,
            attention: vec![0.0; n_layer * n_head * t * t],
            hidden: vec![0.0; (n_layer + 1) * t * c],
        };
        let mut cache = self.new_cache();
        let (attention, hidden) = (&mut trace.attention, &mut trace.hidden);
        let mut after_block = |layer: usize, cache: &crate::KvCache| {
            let (qkv, x) = cache.fed_rows();
            let keys = cache.keys(layer, t);
            hidden[(layer + 1) * t * c..][..t * c].copy_from_slice(&x[..t * c]);
            let scale = 1.0 / (hs as f64).sqrt();
            let mut scores = vec![0.0f64; t];
            for h in 0..n_head {
                let map = &mut attention[(layer * n_head + h) * t * t..][..t * t];
                for i in 0..t {
                    let q = &qkv[i * 3 * c + h * hs..][..hs];
                    for (j, s) in scores[..=i].iter_mut().enumerate() {
                        let k = &keys[j * c + h * hs..][..hs];
                        *s = scale * q.iter().zip(k).map(|(&q, &k)| f64::from(q) * f64::from(k)).sum::<f64>();
                    }
                    let max = scores[..=i].iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let total: f64 = scores[..=i].iter().map(|s| (s - max).exp()).sum();
                    for (w, s) in map[i * t..][..=i].iter_mut().zip(&scores[..=i]) {
                        *w = ((s - max).exp() / total) as f32;
                    }
                }
            }
        };
        tensor::on_pool(|| {
            self.forward_rows(&mut cache, tokens, Feed::Positions { text: 0 }, &mut after_block)
        });
        // The first block's input: token plus position embedding, as forward_rows builds it.
        for (p, (x, &token)) in trace.hidden[..t * c].chunks_exact_mut(c).zip(tokens).enumerate() {
            self.embed(x, token, p);
        }
        trace
    }
}

#[cfg(test)]
mod tests {
    use tensor::Op;

    use crate::{Gpt, GptConfig};

    fn random_model(bias: bool) -> Gpt {
        let config = GptConfig {
            vocab_size: 29,
            block_size: 16,
            n_layer: 3,
            n_head: 4,
            n_embd: 32,
            dropout: 0.0,
            bias,
            arch: crate::Arch::GPT2,
        };
        let mut gpt = Gpt::new(config, 7);
        crate::testing::randomise(&mut gpt, 8);
        gpt
    }

    #[test]
    fn attention_weights_equal_softmax_of_the_training_forwards_q_and_k() {
        for bias in [true, false] {
            let mut gpt = random_model(bias);
            let tokens: Vec<u32> = (0..11).map(|i| (i * 7 % 29) as u32).collect();
            let trace = gpt.trace(&tokens);
            gpt.forward(&tokens, None, 1, tokens.len(), None);
            // Each attention record's input is its layer's qkv (1, T, 3C) on the tape.
            let qkvs: Vec<Vec<f32>> = gpt
                .tape
                .records()
                .iter()
                .filter(|r| matches!(r.op, Op::Attention { .. }))
                .map(|r| gpt.tape.data(r.inputs[0]).to_vec())
                .collect();
            assert_eq!(qkvs.len(), 3);
            let (t, c, nh) = (tokens.len(), 32, 4);
            let hs = c / nh;
            let mut worst = 0.0f64;
            for (layer, qkv) in qkvs.iter().enumerate() {
                for h in 0..nh {
                    let map = trace.attention_map(layer, h);
                    for i in 0..t {
                        // softmax(q_i · k_j / √hs) over j ≤ i, written out again here.
                        let dot = |j: usize| -> f64 {
                            (0..hs)
                                .map(|d| {
                                    f64::from(qkv[i * 3 * c + h * hs + d])
                                        * f64::from(qkv[j * 3 * c + c + h * hs + d])
                                })
                                .sum::<f64>()
                                / (hs as f64).sqrt()
                        };
                        let exps: Vec<f64> = (0..=i).map(|j| dot(j).exp()).collect();
                        let total: f64 = exps.iter().sum();
                        for j in 0..t {
                            let want = if j <= i { exps[j] / total } else { 0.0 };
                            worst = worst.max((f64::from(map[i * t + j]) - want).abs());
                        }
                        let row: f32 = map[i * t..][..t].iter().sum();
                        assert!((row - 1.0).abs() < 1e-5, "layer {layer} head {h} row {i} sums to {row}");
                    }
                }
            }
            assert!(worst < 1e-5, "bias {bias}: attention weights differ from the tape's by {worst:e}");
        }
    }

    #[test]
    fn hidden_states_equal_the_training_forwards_residual_stream() {
        let mut gpt = random_model(true);
        let tokens: Vec<u32> = (0..9).map(|i| (i * 5 % 29) as u32).collect();
        let trace = gpt.trace(&tokens);
        gpt.forward(&tokens, None, 1, tokens.len(), None);
        // The input of every layer norm but the blocks' second ones: ln_1 of each block
        // reads the stream entering it, ln_f the stream after the last block.
        let norms: Vec<Vec<f32>> = gpt
            .tape
            .records()
            .iter()
            .filter(|r| matches!(r.op, Op::LayerNorm { .. }))
            .map(|r| gpt.tape.data(r.inputs[0]).to_vec())
            .collect();
        assert_eq!(norms.len(), 2 * 3 + 1);
        let streams = [&norms[0], &norms[2], &norms[4], &norms[6]];
        for (index, want) in streams.iter().enumerate() {
            let got = trace.hidden_state(index);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            let diff = got.iter().zip(want.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff <= 1e-5 * scale, "hidden state {index} differs by {diff:e} (values up to {scale})");
        }
    }
}
