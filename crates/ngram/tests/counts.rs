//! Counts, Kneser-Ney probabilities and generation on corpora small enough to check by hand.

use ngram::{followers, generate, next_table, Discounts, NgramCounts};
use tensor::Rng;

const A: u32 = 0;
const B: u32 = 1;
const C: u32 = 2;

/// "a b a b c" over the vocabulary {a, b, c}, bigrams.
fn abab_c() -> NgramCounts {
    NgramCounts::from_tokens(&[A, B, A, B, C], 2, 3)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn counts_and_continuation_counts_match_hand_counts() {
    let counts = abab_c();
    assert_eq!([counts.count(&[A]), counts.count(&[B]), counts.count(&[C])], [2, 2, 1]);
    assert_eq!([counts.count(&[A, B]), counts.count(&[B, A]), counts.count(&[B, C])], [2, 1, 1]);
    assert_eq!(counts.count(&[A, A]), 0);
    // Each token is preceded by one distinct token: b a, a b, b c.
    for t in [A, B, C] {
        assert_eq!(counts.continuation_count(&[t]), 1);
    }
    let after_b = counts.context(&[B]);
    assert_eq!((after_b.total, after_b.n1, after_b.n2, after_b.n3), (2, 2, 0, 0));
    let after_a = counts.context(&[A]);
    assert_eq!((after_a.total, after_a.n1, after_a.n2, after_a.n3), (2, 0, 1, 0));
    assert_eq!(counts.context(&[]).total, 5);
    assert_eq!(counts.distinct(), 6);
}

#[test]
fn discounts_follow_chen_and_goodman() {
    // n1..n4 = 4, 2, 1, 1: Y = 4/8, D1 = 1 − 2·½·2/4, D2 = 2 − 3·½·1/2, D3+ = 3 − 4·½·1/1.
    assert_eq!(Discounts::estimate([4, 2, 1, 1]), Discounts([0.5, 1.25, 1.0]));
    // A missing count-of-counts falls back to fixed discounts.
    assert_eq!(Discounts::estimate([3, 1, 0, 0]), Discounts::FALLBACK);
    // So does a discount out of range: D2 = 2 − 3·(10/12)·100 < 0.
    assert_eq!(Discounts::estimate([10, 1, 100, 1]), Discounts::FALLBACK);
}

#[test]
fn kneser_ney_probabilities_match_hand_computed_values() {
    // Every count-of-counts here has a zero, so D = 0.5, 1, 1.5 at every order.
    let counts = abab_c();
    // Lower order, continuation counts 1, 1, 1 (total 3, γ = 0.5·3):
    // p1(w) = (1 − 0.5 + 1.5 · 1/3) / 3 = 1/3 for each w.
    // After a: c(a b) = 2 (D2 = 1), γ(a) = 1·1: p(b|a) = (1 + 1/3)/2, p(a|a) = p(c|a) = (1/3)/2.
    assert!(close(counts.kn_prob(&[A, B]), 2.0 / 3.0));
    assert!(close(counts.kn_prob(&[A, A]), 1.0 / 6.0));
    assert!(close(counts.kn_prob(&[A, C]), 1.0 / 6.0));
    // After b: c(b a) = c(b c) = 1, γ(b) = 0.5·2: p(a|b) = (0.5 + 1/3)/2, p(b|b) = (1/3)/2.
    assert!(close(counts.kn_prob(&[B, A]), 5.0 / 12.0));
    assert!(close(counts.kn_prob(&[B, C]), 5.0 / 12.0));
    assert!(close(counts.kn_prob(&[B, B]), 1.0 / 6.0));
    // c is never followed: the lower order alone.
    assert!(close(counts.kn_prob(&[C, A]), 1.0 / 3.0));
    // The unigram model, raw counts 2, 2, 1 (total 5, γ = 1·2 + 0.5·1):
    // p(a) = (2 − 1 + 2.5/3)/5 = 11/30, p(c) = (1 − 0.5 + 2.5/3)/5 = 8/30.
    assert!(close(counts.kn_prob(&[A]), 11.0 / 30.0));
    assert!(close(counts.kn_prob(&[C]), 8.0 / 30.0));
}

#[test]
fn smoothed_probabilities_sum_to_one_for_random_contexts() {
    let vocab = 9;
    let mut rng = Rng::seeded(5);
    // Skewed, so counts of 1, 2, 3 and more all occur; tokens 7 and 8 never do.
    let tokens: Vec<u32> = (0..2000).map(|_| (rng.below(7) * rng.below(7) / 6) as u32).collect();
    let counts = NgramCounts::from_tokens(&tokens, 4, vocab);
    for _ in 0..200 {
        let n = 1 + rng.below(4);
        let mut gram: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
        let sum: f64 = (0..vocab as u32)
            .map(|w| {
                *gram.last_mut().unwrap() = w;
                let p = counts.kn_prob(&gram);
                assert!(p > 0.0, "{gram:?} has probability 0");
                p
            })
            .sum();
        assert!((sum - 1.0).abs() < 1e-9, "context {:?}: probabilities sum to {sum}", &gram[..n - 1]);
    }
}

#[test]
fn counted_next_tokens_back_off_from_a_context_never_followed() {
    let counts = abab_c();
    assert_eq!(followers(&counts, &[A], 2), (1, vec![(B, 2)]));
    assert_eq!(followers(&counts, &[B], 2), (1, vec![(A, 1), (C, 1)]));
    // c ends the text: back off to the unigram counts.
    assert_eq!(followers(&counts, &[C], 2), (0, vec![(A, 2), (B, 2), (C, 1)]));
    let (used, rows) = next_table(&counts, &[A, B], 2, false, 10);
    assert_eq!(used, 1);
    assert_eq!(rows, vec![(A, 0.5), (C, 0.5)]);
    let (_, smoothed) = next_table(&counts, &[A], 2, true, 1);
    assert_eq!(smoothed[0].0, B);
    assert!(close(smoothed[0].1, 2.0 / 3.0));
}

#[test]
fn generation_repeats_with_a_seed_and_follows_the_counts() {
    let mut rng = Rng::seeded(11);
    let tokens: Vec<u32> = (0..500).map(|_| rng.below(5) as u32).collect();
    let counts = NgramCounts::from_tokens(&tokens, 3, 5);
    let run = |seed| generate(&counts, &[], 3, 100, 1.0, &mut Rng::seeded(seed));
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    assert_eq!(run(7).len(), 100);
    // Temperature 0 on a b a b c: always the most frequent follower.
    let greedy = generate(&abab_c(), &[A], 2, 4, 0.0, &mut Rng::seeded(1));
    assert_eq!(greedy, vec![B, A, B, A]);
    // Every generated bigram was seen in training.
    let text = run(3);
    for pair in text.windows(2) {
        assert!(counts.count(pair) > 0, "{pair:?} never occurs in the corpus");
    }
}
