//! The counts of every n-gram of the train split, n = 1..N, and the interpolated, modified
//! Kneser-Ney probability built from them (Chen & Goodman, "An empirical study of smoothing
//! techniques for language modeling", 1998, section 3.5).
//!
//! For a model of order n, the top order uses raw counts c(h w) and every lower order k < n
//! uses continuation counts N1+(• h w), the number of distinct tokens seen before `h w`:
//!
//! ```text
//! p_k(w | h) = max(c(h w) − D(c(h w)), 0) / c(h •) + γ(h) · p_{k−1}(w | h′)     h′: h without its first token
//! γ(h)       = (D1 · N1(h •) + D2 · N2(h •) + D3+ · N3+(h •)) / c(h •)
//! p_0(w)     = 1 / |V|                                                         (uniform over the vocabulary)
//! ```
//!
//! where c(h •) = Σ_w c(h w), Nr(h •) counts the tokens that follow `h` exactly r times
//! (N3+: three times or more), and a context never seen gives p_k(w | h) = p_{k−1}(w | h′).
//! Each order has three discounts for each kind of count, from its count-of-counts n1..n4
//! (the number of k-grams seen exactly 1..4 times):
//!
//! ```text
//! Y = n1 / (n1 + 2 n2),  D1 = 1 − 2Y n2/n1,  D2 = 2 − 3Y n3/n2,  D3+ = 3 − 4Y n4/n3
//! ```
//!
//! When some nr is zero (a tiny corpus) or some Dr falls outside (0, r] (a discount of 0
//! would leave no probability for unseen tokens; one above r, a negative count), the
//! order's discounts are 0.5, 1, 1.5 instead, as KenLM's `--discount_fallback` does.
//!
//! **Memory.** For each order k there are four hash maps: raw counts and continuation
//! counts (one entry per distinct k-gram), and their context statistics (one entry per
//! distinct (k−1)-gram context). So memory is bounded by about four entries per distinct
//! n-gram, n ≤ N, never by the length of the corpus, which is streamed.

use std::collections::HashMap;

/// Sums over the tokens that follow one context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextStats {
    /// c(h •): the count of the context followed by anything.
    pub total: u64,
    /// How many distinct tokens follow it once, twice, and three times or more.
    pub n1: u64,
    pub n2: u64,
    pub n3: u64,
}

/// The discounts D1, D2, D3+ of one order and kind of count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Discounts(pub [f64; 3]);

impl Discounts {
    /// Used when the counts cannot estimate them (KenLM's `--discount_fallback`).
    pub const FALLBACK: Discounts = Discounts([0.5, 1.0, 1.5]);

    /// Chen & Goodman's estimate from the number of n-grams seen 1, 2, 3 and 4 times, or
    /// [`Discounts::FALLBACK`] when one of those is zero or a discount Dr is outside (0, r].
    pub fn estimate(count_of_counts: [u64; 4]) -> Discounts {
        let [n1, n2, n3, n4] = count_of_counts.map(|n| n as f64);
        if count_of_counts.contains(&0) {
            return Discounts::FALLBACK;
        }
        let y = n1 / (n1 + 2.0 * n2);
        let d = [1.0 - 2.0 * y * n2 / n1, 2.0 - 3.0 * y * n3 / n2, 3.0 - 4.0 * y * n4 / n3];
        let in_range = d.iter().zip([1.0, 2.0, 3.0]).all(|(&d, r)| d > 0.0 && d <= r);
        if in_range {
            Discounts(d)
        } else {
            Discounts::FALLBACK
        }
    }

    /// The discount of a count (zero for a count of zero).
    pub fn of(&self, count: u64) -> f64 {
        match count {
            0 => 0.0,
            1 => self.0[0],
            2 => self.0[1],
            _ => self.0[2],
        }
    }
}

/// One kind of count at one order: the counts, their contexts and their discounts.
#[derive(Clone, Debug, Default)]
struct Table {
    counts: HashMap<Box<[u32]>, u64>,
    contexts: HashMap<Box<[u32]>, ContextStats>,
    discounts: Option<Discounts>,
}

impl Table {
    /// Fills `contexts` and `discounts` from `counts`.
    fn summarise(&mut self) {
        let mut count_of_counts = [0u64; 4];
        for (gram, &count) in &self.counts {
            if (1..=4).contains(&count) {
                count_of_counts[count as usize - 1] += 1;
            }
            let stats = self.contexts.entry(gram[..gram.len() - 1].into()).or_default();
            stats.total += count;
            match count {
                1 => stats.n1 += 1,
                2 => stats.n2 += 1,
                _ => stats.n3 += 1,
            }
        }
        self.discounts = Some(Discounts::estimate(count_of_counts));
    }

    fn count(&self, gram: &[u32]) -> u64 {
        self.counts.get(gram).copied().unwrap_or(0)
    }
}

/// Counted n-grams, n = 1..=max_n, of one token stream, over a vocabulary of `vocab_size`.
#[derive(Clone, Debug)]
pub struct NgramCounts {
    max_n: usize,
    vocab_size: usize,
    /// raw[k − 1]: c(g) for each k-gram g.
    raw: Vec<Table>,
    /// continuation[k − 1]: N1+(• g) for each k-gram g (k < max_n).
    continuation: Vec<Table>,
    /// The last max_n − 1 tokens pushed, while counting.
    window: Vec<u32>,
}

/// The highest n-gram order counted: each token adds a key of every length up to it to
/// the tables, so memory grows with the square of the order (an order of 10^5 never
/// finished counting 20 kB of text), and past a few dozen every n-gram of a corpus is
/// unique anyway.
pub const MAX_ORDER: usize = 32;

impl NgramCounts {
    /// Empty counts for n-grams up to `max_n` (1 to [`MAX_ORDER`]) over `vocab_size` tokens.
    pub fn new(max_n: usize, vocab_size: usize) -> NgramCounts {
        assert!(max_n >= 1, "n-grams start at n = 1, got max_n = 0");
        NgramCounts {
            max_n,
            vocab_size,
            raw: vec![Table::default(); max_n],
            continuation: vec![Table::default(); max_n],
            window: Vec::with_capacity(max_n),
        }
    }

    /// Counts `tokens` and summarises: [`NgramCounts::new`], [`push`](Self::push) each, [`finish`](Self::finish).
    pub fn from_tokens(tokens: &[u32], max_n: usize, vocab_size: usize) -> NgramCounts {
        let mut counts = NgramCounts::new(max_n, vocab_size);
        tokens.iter().for_each(|&t| counts.push(t));
        counts.finish();
        counts
    }

    /// Counts the n-grams that end at the next token of the stream.
    pub fn push(&mut self, token: u32) {
        debug_assert!(
            (token as usize) < self.vocab_size,
            "token {token} outside the vocabulary of {}",
            self.vocab_size
        );
        if self.window.len() == self.max_n {
            self.window.remove(0);
        }
        self.window.push(token);
        for k in 1..=self.window.len() {
            let gram = &self.window[self.window.len() - k..];
            let counts = &mut self.raw[k - 1].counts;
            match counts.get_mut(gram) {
                Some(count) => *count += 1,
                None => {
                    counts.insert(gram.into(), 1);
                }
            }
        }
    }

    /// After the last token: continuation counts, context sums and discounts.
    pub fn finish(&mut self) {
        for k in 2..=self.max_n {
            let (lower, _) = self.continuation.split_at_mut(k - 1);
            for gram in self.raw[k - 1].counts.keys() {
                *lower[k - 2].counts.entry(gram[1..].into()).or_insert(0) += 1;
            }
        }
        for table in self.raw.iter_mut().chain(&mut self.continuation[..self.max_n - 1]) {
            table.summarise();
        }
        self.window = Vec::new();
    }

    pub fn max_n(&self) -> usize {
        self.max_n
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// c(g): how often the n-gram `gram` (1 ≤ n ≤ max_n) occurs.
    pub fn count(&self, gram: &[u32]) -> u64 {
        self.raw[gram.len() - 1].count(gram)
    }

    /// N1+(• g): how many distinct tokens precede `gram` (shorter than max_n).
    pub fn continuation_count(&self, gram: &[u32]) -> u64 {
        self.continuation[gram.len() - 1].count(gram)
    }

    /// The sums over the tokens that follow `context` (raw counts; shorter than max_n).
    pub fn context(&self, context: &[u32]) -> ContextStats {
        self.raw[context.len()].contexts.get(context).copied().unwrap_or_default()
    }

    /// The discounts of order k, for raw counts (`top`) or continuation counts.
    pub fn discounts(&self, k: usize, top: bool) -> Discounts {
        let table = if top { &self.raw[k - 1] } else { &self.continuation[k - 1] };
        table.discounts.expect("discounts are estimated by finish()")
    }

    /// The number of distinct n-grams counted, n = 1..=max_n.
    pub fn distinct(&self) -> usize {
        self.raw.iter().map(|t| t.counts.len()).sum()
    }

    /// The interpolated modified Kneser-Ney probability of the last token of `gram` after
    /// the tokens before it, from the model of order `gram.len()` (≤ max_n).
    pub fn kn_prob(&self, gram: &[u32]) -> f64 {
        self.kn(gram, true)
    }

    fn kn(&self, gram: &[u32], top: bool) -> f64 {
        let k = gram.len();
        let lower = if k == 1 { 1.0 / self.vocab_size as f64 } else { self.kn(&gram[1..], false) };
        let table = if top { &self.raw[k - 1] } else { &self.continuation[k - 1] };
        let Some(stats) = table.contexts.get(&gram[..k - 1]) else {
            return lower;
        };
        let d = table.discounts.expect("discounts are estimated by finish()");
        let count = table.count(gram);
        let gamma = d.0[0] * stats.n1 as f64 + d.0[1] * stats.n2 as f64 + d.0[2] * stats.n3 as f64;
        ((count as f64 - d.of(count)).max(0.0) + gamma * lower) / stats.total as f64
    }
}
