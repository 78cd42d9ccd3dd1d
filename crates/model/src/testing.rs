//! Helpers shared by the model's tests and those of the crates that use it (not part of
//! the model itself): a tiny config, a model with large random weights, and a χ²
//! goodness-of-fit test for sampled token frequencies.

use tensor::Rng;

use crate::{Arch, Gpt, GptConfig};

/// A two-layer, 32-wide GPT-2-architecture config over a 64-token vocabulary, for tests.
pub fn tiny() -> GptConfig {
    GptConfig {
        vocab_size: 64,
        block_size: 16,
        n_layer: 2,
        n_head: 4,
        n_embd: 32,
        dropout: 0.0,
        bias: true,
        arch: Arch::GPT2,
    }
}

/// Replaces every parameter with `0.3 · N(0, 1)` draws (layer-norm gains with
/// `1 + 0.3 · N(0, 1)`), so that logits spread out and any difference between two
/// computations shows.
pub fn randomise(gpt: &mut Gpt, seed: u64) {
    let mut rng = Rng::seeded(seed);
    let ids: Vec<_> = gpt
        .tape
        .params()
        .map(|(id, name, _)| {
            (
                id,
                name.ends_with("ln_1.weight")
                    || name.ends_with("ln_2.weight")
                    || name.ends_with("ln_f.weight"),
            )
        })
        .collect();
    for (id, is_gain) in ids {
        let offset = if is_gain { 1.0 } else { 0.0 };
        gpt.tape.value_mut(id).data.iter_mut().for_each(|v| *v = offset + 0.3 * rng.normal());
    }
}

/// Pearson's χ² statistic of observed counts against expected probabilities.
#[derive(Debug, Clone, Copy)]
pub struct ChiSquare {
    /// Σ (observed − expected)² / expected over the bins.
    pub stat: f64,
    /// The 99.9% quantile of χ² with `df` degrees of freedom (Wilson–Hilferty
    /// approximation): a correct sampler exceeds it once in a thousand runs.
    pub bound: f64,
    /// Degrees of freedom: the bins used, minus one.
    pub df: usize,
}

/// χ² of `counts` against `probs`, bins expecting fewer than 5 draws pooled into one.
/// Panics when fewer than two bins remain: such a distribution cannot be tested.
pub fn chi_square(counts: &[usize], probs: &[f64]) -> ChiSquare {
    assert_eq!(
        counts.len(),
        probs.len(),
        "chi_square: {} counts for {} probabilities",
        counts.len(),
        probs.len()
    );
    let n: usize = counts.iter().sum();
    let (mut stat, mut bins) = (0.0, 0);
    let (mut pooled_count, mut pooled_expected) = (0.0, 0.0);
    for (&c, &p) in counts.iter().zip(probs) {
        let expected = p * n as f64;
        if expected < 5.0 {
            pooled_count += c as f64;
            pooled_expected += expected;
        } else {
            stat += (c as f64 - expected).powi(2) / expected;
            bins += 1;
        }
    }
    if pooled_expected > 0.0 {
        stat += (pooled_count - pooled_expected).powi(2) / pooled_expected;
        bins += 1;
    }
    assert!(bins >= 2, "chi_square: the distribution is too peaked to test ({bins} bin after pooling)");
    let df = bins - 1;
    let d = df as f64;
    let z = 3.09; // the 99.9% quantile of the standard normal
    let bound = d * (1.0 - 2.0 / (9.0 * d) + z * (2.0 / (9.0 * d)).sqrt()).powi(3);
    ChiSquare { stat, bound, df }
}
