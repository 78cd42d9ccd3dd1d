//! The one random number generator of Quill: ChaCha8, seeded, portable (the same seed
//! gives the same numbers on every machine), and serialisable so that a checkpoint can
//! carry its exact state.

use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A seeded, portable random number generator whose state can be saved and restored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn seeded(seed: u64) -> Self {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0.gen::<f32>()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.gen_range(0..n)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.gen::<u64>()
    }

    /// Standard normal, by the Box-Muller transform (computed in f64 for accuracy).
    pub fn normal(&mut self) -> f32 {
        let u1: f64 = 1.0 - self.0.gen::<f64>(); // (0, 1], so ln is finite
        let u2: f64 = self.0.gen::<f64>();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}
