//! Pictures of a corpus: how often each character occurs (the essay's letter frequencies)
//! and the probability of each character given the one before it (the 2-gram matrix).
//! Characters come from `ngram`'s [`Corpus`] at character level (a text file or a prepared
//! dataset), counted over its train split.

use std::collections::HashMap;

use ngram::{Corpus, Split};

use crate::charts::bar_chart;
use crate::heatmap::{heatmap_grid, Layout, Panel};
use crate::DrawError;

/// Character and character-pair counts of a corpus.
pub struct CharCounts {
    /// The characters, by index.
    pub chars: Vec<char>,
    /// How often each occurs.
    pub unigrams: Vec<u64>,
    /// How often character b follows character a, keyed (a, b).
    pub bigrams: HashMap<(usize, usize), u64>,
    /// How often each character is followed by any counted character.
    pub followed: Vec<u64>,
}

impl CharCounts {
    /// Counts `corpus`'s train split (a `Level::Char` corpus). With `letters_only`, only
    /// alphabetic characters count, lower-cased, and anything else breaks a pair (so pairs
    /// are pairs within words, as in the essay); Chinese characters are alphabetic.
    pub fn count(corpus: &Corpus, letters_only: bool) -> Result<CharCounts, DrawError> {
        let vocab = corpus.vocab();
        let class: Vec<Option<char>> = (0..vocab.len() as u32)
            .map(|id| {
                let piece = String::from_utf8_lossy(vocab.bytes(id)).into_owned();
                let mut chars = piece.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if !letters_only => Some(c),
                    (Some(c), None) if c.is_alphabetic() => c.to_lowercase().next(),
                    _ => None,
                }
            })
            .collect();
        let mut index: HashMap<char, usize> = HashMap::new();
        let mut counts = CharCounts {
            chars: Vec::new(),
            unigrams: Vec::new(),
            bigrams: HashMap::new(),
            followed: Vec::new(),
        };
        let mut previous: Option<usize> = None;
        corpus.for_each_token(Split::Train, &mut |id| {
            let Some(c) = class.get(id as usize).copied().flatten() else {
                previous = None;
                return;
            };
            let i = *index.entry(c).or_insert_with(|| {
                counts.chars.push(c);
                counts.unigrams.push(0);
                counts.followed.push(0);
                counts.chars.len() - 1
            });
            counts.unigrams[i] += 1;
            if let Some(p) = previous {
                *counts.bigrams.entry((p, i)).or_insert(0) += 1;
                counts.followed[p] += 1;
            }
            previous = Some(i);
        })?;
        if counts.chars.is_empty() {
            return Err(DrawError::Message(format!(
                "{}: the train split has no {}; pick another text",
                corpus.origin(),
                if letters_only { "letters (drop --letters to count every character)" } else { "characters" }
            )));
        }
        Ok(counts)
    }

    /// The indices of the `top` most frequent characters, most frequent first.
    pub fn most_frequent(&self, top: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.chars.len()).collect();
        order.sort_by(|&a, &b| {
            self.unigrams[b].cmp(&self.unigrams[a]).then(self.chars[a].cmp(&self.chars[b]))
        });
        order.truncate(top);
        order
    }

    /// P(b | a): the share of a's followers that are b (0 when a has none).
    pub fn follow_prob(&self, a: usize, b: usize) -> f64 {
        let total = self.followed[a];
        if total == 0 {
            return 0.0;
        }
        self.bigrams.get(&(a, b)).copied().unwrap_or(0) as f64 / total as f64
    }
}

/// A character as a label: space ␣, newline ⏎, as `sample --top` shows them.
fn label(c: char) -> String {
    sample::show_token(c.encode_utf8(&mut [0; 4]).as_bytes())
}

/// The letter-frequency bar chart of the `top` most frequent characters.
pub fn letter_frequencies(counts: &CharCounts, top: usize, origin: &str) -> String {
    let total: u64 = counts.unigrams.iter().sum();
    let shown = counts.most_frequent(top);
    let labels: Vec<String> = shown.iter().map(|&i| label(counts.chars[i])).collect();
    let values: Vec<f64> = shown.iter().map(|&i| counts.unigrams[i] as f64 / total as f64).collect();
    let title = format!(
        "Character frequencies in {origin} ({} most frequent of {})",
        shown.len(),
        counts.chars.len()
    );
    bar_chart(&title, &labels, &values, "share of all characters")
}

/// The 2-gram heatmap over the `top` most frequent characters: the first character
/// across, the second down, each cell P(second | first).
pub fn bigram_matrix(counts: &CharCounts, top: usize, origin: &str) -> String {
    let shown = counts.most_frequent(top);
    let labels: Vec<String> = shown.iter().map(|&i| label(counts.chars[i])).collect();
    let mut values = Vec::with_capacity(shown.len() * shown.len());
    for &second in &shown {
        for &first in &shown {
            values.push(counts.follow_prob(first, second));
        }
    }
    let max = values.iter().copied().fold(0.0f64, f64::max);
    let panel = Panel { title: String::new(), values, rows: labels.clone(), cols: labels };
    let cell = (560.0 / shown.len().max(1) as f64).clamp(8.0, 22.0);
    let layout = Layout {
        columns: 1,
        cell,
        x_title: "first character".into(),
        y_title: "second character".into(),
        max,
        scale_title: "P(second | first)".into(),
    };
    let title = format!(
        "2-gram probabilities in {origin}: P(second | first), {} most frequent characters",
        shown.len()
    );
    heatmap_grid(&title, &[panel], &layout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ngram::{Level, Source};

    fn corpus(text: &str) -> (tempfile::TempDir, Corpus) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("t.txt");
        std::fs::write(&path, text).expect("write the text");
        let corpus = Corpus::open(Source::Text { path, val_fraction: 0.0 }, Level::Char).expect("open");
        (dir, corpus)
    }

    #[test]
    fn counts_and_probabilities_equal_hand_counts() {
        let (_dir, corpus) = corpus("abab a.Ba");
        let all = CharCounts::count(&corpus, false).expect("count");
        let a = all.chars.iter().position(|&c| c == 'a').expect("a");
        let b = all.chars.iter().position(|&c| c == 'b').expect("b");
        assert_eq!(all.unigrams[a], 4);
        // a is followed by b, b and '.'; the last a by nothing.
        assert!((all.follow_prob(a, b) - 2.0 / 3.0).abs() < 1e-12);
        let letters = CharCounts::count(&corpus, true).expect("count");
        let a = letters.chars.iter().position(|&c| c == 'a').expect("a");
        let b = letters.chars.iter().position(|&c| c == 'b').expect("b");
        // Letters, lower-cased: a b a b | a | b a; pairs ab, ba, ab, ba.
        assert_eq!((letters.unigrams[a], letters.unigrams[b]), (4, 3));
        assert_eq!(letters.follow_prob(a, b), 1.0);
        assert_eq!(letters.follow_prob(b, a), 1.0);
        assert_eq!(letters.most_frequent(1), vec![a]);
    }

    #[test]
    fn pictures_name_their_corpus_and_show_chinese_characters() {
        let (_dir, corpus) = corpus("宝玉笑道：宝玉");
        let counts = CharCounts::count(&corpus, true).expect("count");
        let svg = bigram_matrix(&counts, 10, "hlm");
        assert!(svg.contains(">宝</text>") && svg.contains("Noto Sans CJK SC") && svg.contains("hlm"));
        assert!(letter_frequencies(&counts, 10, "hlm").contains(">玉</text>"));
    }
}
