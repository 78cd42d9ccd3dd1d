//! What the counts are for: scoring a split with the smoothed models, the table of likely
//! next tokens, and text generated from the raw counts.
//!
//! Generation and the table use maximum-likelihood probabilities, c(h w) / c(h •), as the
//! essay does: an n-gram model continues with what followed the last n − 1 tokens in the
//! training text. When those tokens were never followed by anything (the very end of the
//! text), it backs off to the longest shorter context that was.

use tensor::Rng;

use crate::corpus::{Corpus, Split};
use crate::counts::NgramCounts;
use crate::NgramError;

/// The bits one model spends on a split.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The order of the model.
    pub n: usize,
    pub tokens: u64,
    /// The UTF-8 bytes those tokens stand for.
    pub bytes: u64,
    /// −Σ log₂ p over the tokens.
    pub bits: f64,
}

impl Score {
    pub fn bits_per_byte(&self) -> f64 {
        self.bits / self.bytes.max(1) as f64
    }

    /// 2^(bits per token): the number of equally likely tokens the model hesitates among.
    pub fn perplexity(&self) -> f64 {
        (self.bits / self.tokens.max(1) as f64).exp2()
    }
}

/// Scores every token of a split with the Kneser-Ney models of order 1..=max_n. Each token
/// is predicted from the tokens before it in the same split (the first ones from a shorter
/// context), so all of them are scored.
pub fn score(counts: &NgramCounts, corpus: &Corpus, split: Split) -> Result<Vec<Score>, NgramError> {
    let max_n = counts.max_n();
    let mut scores: Vec<Score> = (1..=max_n).map(|n| Score { n, tokens: 0, bytes: 0, bits: 0.0 }).collect();
    let mut window = Vec::with_capacity(max_n);
    corpus.for_each_token(split, &mut |token| {
        if window.len() == max_n {
            window.remove(0);
        }
        window.push(token);
        let bytes = corpus.vocab().bytes(token).len() as u64;
        for score in scores.iter_mut() {
            let gram = &window[window.len() - score.n.min(window.len())..];
            score.bits -= counts.kn_prob(gram).log2();
            score.tokens += 1;
            score.bytes += bytes;
        }
    })?;
    Ok(scores)
}

/// The raw counts of the tokens that follow the longest suffix of `context` of at most
/// n − 1 tokens that has followers, as (suffix length, (token, count) for every token seen
/// after it).
pub fn followers(counts: &NgramCounts, context: &[u32], n: usize) -> (usize, Vec<(u32, u64)>) {
    let longest = context.len().min(n.clamp(1, counts.max_n()) - 1);
    let mut gram = Vec::with_capacity(longest + 1);
    for len in (0..=longest).rev() {
        let suffix = &context[context.len() - len..];
        if counts.context(suffix).total == 0 {
            continue;
        }
        gram.clear();
        gram.extend_from_slice(suffix);
        gram.push(0);
        let mut seen = Vec::new();
        for token in 0..counts.vocab_size() as u32 {
            *gram.last_mut().expect("the gram ends with the candidate") = token;
            let count = counts.count(&gram);
            if count > 0 {
                seen.push((token, count));
            }
        }
        return (len, seen);
    }
    (0, Vec::new())
}

/// The `top` most likely next tokens after `context` for the model of order n, as
/// (context tokens used, rows of (token, probability)), most likely first. `smoothed`
/// gives the Kneser-Ney probabilities (over the whole vocabulary, from the last n − 1
/// tokens); otherwise the maximum-likelihood ones of [`followers`].
pub fn next_table(
    counts: &NgramCounts,
    context: &[u32],
    n: usize,
    smoothed: bool,
    top: usize,
) -> (usize, Vec<(u32, f64)>) {
    let (used, mut rows) = if smoothed {
        let used = context.len().min(n.clamp(1, counts.max_n()) - 1);
        let mut gram = context[context.len() - used..].to_vec();
        gram.push(0);
        let rows: Vec<(u32, f64)> = (0..counts.vocab_size() as u32)
            .map(|token| {
                *gram.last_mut().expect("the gram ends with the candidate") = token;
                (token, counts.kn_prob(&gram))
            })
            .collect();
        (used, rows)
    } else {
        let (used, seen) = followers(counts, context, n);
        let total: u64 = seen.iter().map(|&(_, c)| c).sum();
        (used, seen.into_iter().map(|(t, c)| (t, c as f64 / total as f64)).collect())
    };
    rows.sort_by(|a: &(u32, f64), b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(top);
    (used, rows)
}

/// The next-token table in `sample --top`'s layout: rank, token (newline ⏎, space ␣) and
/// probability as a percentage.
pub fn format_next_table(rows: &[(u32, f64)], token_bytes: &dyn Fn(u32) -> Vec<u8>) -> String {
    let shown: Vec<String> = rows.iter().map(|&(id, _)| sample::show_token(&token_bytes(id))).collect();
    let width = shown.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(5);
    let pad = |text: &str| format!("{text}{}", " ".repeat(width - text.chars().count()));
    let mut out = format!("  rank  {}  probability\n", pad("token"));
    for (i, (&(_, p), token)) in rows.iter().zip(&shown).enumerate() {
        out.push_str(&format!("  {:>4}  {}  {:>10.2}%\n", i + 1, pad(token), 100.0 * p));
    }
    out
}

/// `length` tokens continuing `prompt` from the raw counts of the model of order n, each
/// drawn with probability ∝ count^(1 / temperature) (temperature 0: always the most
/// frequent, the lowest id on a tie).
pub fn generate(
    counts: &NgramCounts,
    prompt: &[u32],
    n: usize,
    length: usize,
    temperature: f64,
    rng: &mut Rng,
) -> Vec<u32> {
    let mut tokens = prompt.to_vec();
    for _ in 0..length {
        let (_, seen) = followers(counts, &tokens, n);
        let Some(&(first, _)) = seen.first() else { break };
        let next = if temperature <= 0.0 {
            seen.iter().fold((first, 0), |best, &(t, c)| if c > best.1 { (t, c) } else { best }).0
        } else {
            let weights: Vec<f64> = seen.iter().map(|&(_, c)| (c as f64).powf(1.0 / temperature)).collect();
            let mut target = rng.uniform() as f64 * weights.iter().sum::<f64>();
            let mut choice = seen[seen.len() - 1].0;
            for (&(token, _), w) in seen.iter().zip(&weights) {
                if target < *w {
                    choice = token;
                    break;
                }
                target -= w;
            }
            choice
        };
        tokens.push(next);
    }
    tokens.split_off(prompt.len())
}
