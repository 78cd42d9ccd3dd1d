//! The learning-rate schedules, both with nanoGPT's linear warm-up and `min_lr` for good
//! past `lr_decay_iters`:
//!
//! - "cosine": a cosine decay to `min_lr`, nanoGPT's `get_lr`, step for step;
//! - "wsd" (warm-up, stable, decay): the peak until `warmdown_iters` steps before
//!   `lr_decay_iters`, then a straight line down to `min_lr`, the trapezoid of the
//!   small-GPT speedruns (modded-nanogpt).
//!
//! Muon's learning rate follows the same curve, scaled to its own peak.

use crate::config::{OptimSection, Schedule};

/// The learning rate of optimizer step `it` (0-based).
pub fn learning_rate(it: u64, o: &OptimSection) -> f64 {
    if !o.decay_lr {
        return o.learning_rate;
    }
    // 1) linear warm-up for warmup_iters steps (step 0 already has a small, non-zero lr)
    if it < o.warmup_iters {
        return o.learning_rate * (it + 1) as f64 / (o.warmup_iters + 1) as f64;
    }
    // 2) past lr_decay_iters, the floor
    if it > o.lr_decay_iters || o.lr_decay_iters == o.warmup_iters {
        return o.min_lr;
    }
    match o.schedule {
        // 3) in between, cosine decay from learning_rate down to min_lr
        Schedule::Cosine => {
            let decay_ratio = (it - o.warmup_iters) as f64 / (o.lr_decay_iters - o.warmup_iters) as f64;
            let coeff = 0.5 * (1.0 + (std::f64::consts::PI * decay_ratio).cos());
            o.min_lr + coeff * (o.learning_rate - o.min_lr)
        }
        // 3) the peak, then a linear warm-down that reaches min_lr at lr_decay_iters
        Schedule::Wsd => {
            let warmdown_start = o.lr_decay_iters.saturating_sub(o.warmdown_iters);
            if it <= warmdown_start || o.warmdown_iters == 0 {
                return o.learning_rate;
            }
            let left = (o.lr_decay_iters - it) as f64 / o.warmdown_iters as f64;
            o.min_lr + left * (o.learning_rate - o.min_lr)
        }
    }
}

/// Muon's learning rate at step `it`: `muon_learning_rate` times the schedule's fraction
/// of its peak, learning_rate(it) / learning_rate (1 when learning_rate is 0).
pub fn muon_learning_rate(it: u64, o: &OptimSection) -> f64 {
    if o.learning_rate == 0.0 {
        return o.muon_learning_rate;
    }
    o.muon_learning_rate * (learning_rate(it, o) / o.learning_rate)
}
