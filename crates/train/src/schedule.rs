//! The learning-rate schedule: linear warm-up, then a cosine decay to `min_lr`, then
//! `min_lr` for good. This is nanoGPT's `get_lr`, step for step.

use crate::config::OptimSection;

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
    // 3) in between, cosine decay from learning_rate down to min_lr
    let decay_ratio = (it - o.warmup_iters) as f64 / (o.lr_decay_iters - o.warmup_iters) as f64;
    let coeff = 0.5 * (1.0 + (std::f64::consts::PI * decay_ratio).cos());
    o.min_lr + coeff * (o.learning_rate - o.min_lr)
}
