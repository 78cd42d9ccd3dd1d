//! Our byte-level BPE: the 256 bytes are the first tokens, then merges learned from the
//! training text up to the requested vocabulary size. Text is pre-tokenized the GPT-2 way
//! first, so training works on a table of distinct words and their counts, and every
//! string (any bytes) stays encodable: a sequence no merge covers falls back to its bytes.
//!
//! Training keeps, for every adjacent token pair, its count over all words (weighted by the
//! word's count) and the words it occurs in. Each merge then touches only the words holding
//! the merged pair: their pairs are uncounted, the word is rewritten, and its new pairs are
//! counted. A max-heap of (count, pair) picks the next merge; entries made stale by later
//! count changes are detected when popped and re-queued with the current count.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use indicatif::{ProgressBar, ProgressStyle};

use super::merges::{MergeTable, MergeTableData};
use super::pretokenize::pretokenize;
use super::{tokenizer_header, KIND_BPE};
use crate::fxhash::{FxHashMap, FxHashSet};
use crate::{DataError, Tokenizer};

/// The smallest vocabulary BPE accepts: the 256 byte tokens and one merge.
pub const MIN_BPE_VOCAB: usize = 257;

/// A byte-level BPE tokenizer trained by [`BpeTokenizer::train`].
pub struct BpeTokenizer {
    table: MergeTable,
}

type Pair = (u32, u32);

impl BpeTokenizer {
    /// Learns merges from `text` until the vocabulary has `vocab_size` tokens (or no pair
    /// occurs any more), with a progress bar when `progress`.
    pub fn train(text: &str, vocab_size: usize, progress: bool) -> Result<BpeTokenizer, DataError> {
        let mut counts: FxHashMap<&str, u64> = FxHashMap::default();
        for piece in pretokenize(text) {
            *counts.entry(piece).or_insert(0) += 1;
        }
        let words = counts.into_iter().map(|(w, c)| (w.as_bytes().to_vec(), c)).collect();
        BpeTokenizer::train_from_counts(words, vocab_size, progress)
    }

    /// Learns merges from pre-tokenized words and how often each occurs.
    pub(crate) fn train_from_counts(
        mut word_counts: Vec<(Vec<u8>, u64)>,
        vocab_size: usize,
        progress: bool,
    ) -> Result<BpeTokenizer, DataError> {
        if vocab_size < MIN_BPE_VOCAB {
            return Err(DataError::Message(format!(
                "BPE vocabulary size {vocab_size} is too small: it needs the 256 byte tokens plus at least one merge; use --vocab-size {MIN_BPE_VOCAB} or more (512 to 4096 suit a small corpus)"
            )));
        }
        if vocab_size > u32::MAX as usize {
            return Err(DataError::Message(format!(
                "BPE vocabulary size {vocab_size} does not fit token ids of 32 bits; use a smaller --vocab-size"
            )));
        }
        // Sorted, so the word numbering (and with it every tie) is the same on every run.
        word_counts.sort_unstable();
        let counts: Vec<i64> = word_counts.iter().map(|(_, c)| *c as i64).collect();
        let mut words: Vec<Vec<u32>> =
            word_counts.into_iter().map(|(w, _)| w.into_iter().map(u32::from).collect()).collect();

        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let mut merges: Vec<(u32, u32, u32)> = Vec::new();
        let mut pair_counts: FxHashMap<Pair, i64> = FxHashMap::default();
        let mut where_found: FxHashMap<Pair, Vec<u32>> = FxHashMap::default();
        for (index, word) in words.iter().enumerate() {
            for pair in word.windows(2).map(|w| (w[0], w[1])) {
                *pair_counts.entry(pair).or_insert(0) += counts[index];
                let list = where_found.entry(pair).or_default();
                if list.last() != Some(&(index as u32)) {
                    list.push(index as u32);
                }
            }
        }
        // Highest count first; among equal counts, the smallest pair of ids.
        let mut heap: BinaryHeap<(i64, Reverse<Pair>)> =
            pair_counts.iter().map(|(&pair, &count)| (count, Reverse(pair))).collect();

        let bar = if progress { ProgressBar::new((vocab_size - 256) as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("training BPE {bar:40} {pos}/{len} merges ({elapsed}, eta {eta})")
                .expect("the progress template is valid"),
        );
        while tokens.len() < vocab_size {
            let Some((count, Reverse(pair))) = heap.pop() else { break };
            let current = pair_counts.get(&pair).copied().unwrap_or(0);
            if count != current {
                if current > 0 {
                    heap.push((current, Reverse(pair)));
                }
                continue;
            }
            if current <= 0 {
                continue;
            }
            let new_id = tokens.len() as u32;
            let mut merged = tokens[pair.0 as usize].clone();
            merged.extend_from_slice(&tokens[pair.1 as usize]);
            tokens.push(merged);
            merges.push((pair.0, pair.1, new_id));

            let mut touched: FxHashSet<Pair> = FxHashSet::default();
            let mut indices = where_found.remove(&pair).unwrap_or_default();
            indices.sort_unstable();
            indices.dedup();
            for index in indices {
                let word = &mut words[index as usize];
                if !word.windows(2).any(|w| (w[0], w[1]) == pair) {
                    continue;
                }
                let count = counts[index as usize];
                for w in word.windows(2) {
                    *pair_counts.get_mut(&(w[0], w[1])).expect("every pair of a word is counted") -= count;
                }
                merge_pair(word, pair, new_id);
                for w in word.windows(2) {
                    let p = (w[0], w[1]);
                    *pair_counts.entry(p).or_insert(0) += count;
                    if p.0 == new_id || p.1 == new_id {
                        touched.insert(p);
                        let list = where_found.entry(p).or_default();
                        if list.last() != Some(&index) {
                            list.push(index);
                        }
                    }
                }
            }
            pair_counts.remove(&pair);
            for p in touched {
                heap.push((pair_counts[&p], Reverse(p)));
            }
            bar.inc(1);
        }
        bar.finish_and_clear();

        let data = MergeTableData { tokens, byte_ids: (0..256).collect(), merges, specials: Vec::new() };
        let table = MergeTable::new(data, "trained BPE").expect("training produces a consistent table");
        Ok(BpeTokenizer { table })
    }

    /// The number of merges learned (vocabulary size − 256).
    pub fn merges(&self) -> usize {
        self.table.data.merges.len()
    }

    pub(crate) fn table(&self) -> &MergeTable {
        &self.table
    }

    pub(crate) fn from_payload(payload: &[u8]) -> Result<BpeTokenizer, String> {
        let data: MergeTableData = bincode::deserialize(payload).map_err(|e| e.to_string())?;
        let table = MergeTable::new(data, "BPE tokenizer").map_err(|e| e.to_string())?;
        Ok(BpeTokenizer { table })
    }
}

/// Replaces each occurrence of `pair` in `word`, left to right, with `new_id`.
fn merge_pair(word: &mut Vec<u32>, pair: Pair, new_id: u32) {
    let mut out = 0;
    let mut i = 0;
    while i < word.len() {
        if i + 1 < word.len() && (word[i], word[i + 1]) == pair {
            word[out] = new_id;
            i += 2;
        } else {
            word[out] = word[i];
            i += 1;
        }
        out += 1;
    }
    word.truncate(out);
}

impl Tokenizer for BpeTokenizer {
    fn kind(&self) -> &'static str {
        "bpe"
    }

    fn vocab_size(&self) -> usize {
        self.table.vocab_size()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        Ok(self.table.encode_text(text, false))
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.table.token_bytes(id)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = tokenizer_header(KIND_BPE);
        out.extend(bincode::serialize(&self.table.data).expect("serialising a merge table cannot fail"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_pair_is_left_to_right() {
        let mut w = vec![1, 1, 1, 2, 1, 1];
        merge_pair(&mut w, (1, 1), 9);
        assert_eq!(w, [9, 1, 2, 9]);
    }

    /// Recounts every pair after every merge: slow, obviously right.
    fn naive_merges(text: &str, vocab_size: usize) -> Vec<(u32, u32, u32)> {
        let mut counts: std::collections::BTreeMap<Vec<u32>, i64> = Default::default();
        for piece in pretokenize(text) {
            *counts.entry(piece.bytes().map(u32::from).collect()).or_insert(0) += 1;
        }
        let mut words: Vec<(Vec<u32>, i64)> = counts.into_iter().collect();
        let mut merges = Vec::new();
        for new_id in 256..vocab_size as u32 {
            let mut pairs: std::collections::BTreeMap<Pair, i64> = Default::default();
            for (w, c) in &words {
                for p in w.windows(2) {
                    *pairs.entry((p[0], p[1])).or_insert(0) += c;
                }
            }
            let Some((&pair, _)) = pairs.iter().max_by_key(|(p, c)| (**c, Reverse(**p))) else { break };
            merges.push((pair.0, pair.1, new_id));
            for (w, _) in &mut words {
                merge_pair(w, pair, new_id);
            }
        }
        merges
    }

    #[test]
    fn incremental_training_equals_recounting() {
        let text = "the theme of the thesis: these three then there, 'tis the end. aaaa aaa aa a\n\n\
                    Whither thou goest, thither I go; the weather whether or not.";
        let text = text.repeat(3) + "zz zzz zzzz";
        let bpe = BpeTokenizer::train(&text, 330, false).expect("valid vocab size");
        assert!(bpe.merges() > 40, "{} merges", bpe.merges());
        assert_eq!(bpe.table.data.merges, naive_merges(&text, 330));
    }

    #[test]
    fn learns_the_most_frequent_pair_first() {
        let bpe = BpeTokenizer::train("aaab aaab aaab xy", 258, false).expect("valid vocab size");
        assert_eq!(bpe.table.data.merges[0], (b'a' as u32, b'a' as u32, 256));
        assert_eq!(bpe.vocab_size(), 258);
        assert_eq!(bpe.encode("aaab").expect("bpe never fails"), [256, 257]);
    }
}
