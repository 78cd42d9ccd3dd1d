//! Memory bandwidth of batch-1 sampling: the matrix-vector product over a weight matrix far
//! larger than the caches (GPT-2 124M's parameter count by default) in f32 and in bfloat16,
//! beside a plain streaming read of the f32 bytes, so each product's GB/s can be read against
//! what the memory gives. Three rounds, alternated, each the median of eleven calls.
//!
//! cargo run --release -p quill-tensor --example matvec_bandwidth [-- rows width]
//! (default 161,000 rows of width 768: 124M weights); RAYON_NUM_THREADS=1 for one thread.

use rayon::prelude::*;
use std::time::Instant;
use tensor::ops::bf16::to_bf16;
use tensor::ops::rows::matvec;
use tensor::Rng;

/// Runs `f` eleven times after one warm-up and prints the median time and GB/s of `bytes`.
fn time(name: &str, bytes: usize, mut f: impl FnMut()) {
    f();
    let mut times: Vec<f64> = (0..11)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("{name:<28} {:>8.2} ms  {:>6.1} GB/s", median * 1e3, bytes as f64 / median / 1e9);
}

fn main() {
    let args: Vec<usize> =
        std::env::args().skip(1).map(|a| a.parse().expect("rows and width are integers")).collect();
    let (rows, c) = (args.first().copied().unwrap_or(161_000), args.get(1).copied().unwrap_or(768));
    let mut rng = Rng::seeded(1);
    let w: Vec<f32> = (0..rows * c).map(|_| rng.normal() * 0.02).collect();
    let wb = to_bf16(&w);
    let x: Vec<f32> = (0..c).map(|_| rng.normal()).collect();
    let mut out = vec![0f32; rows];
    let words: Vec<u64> =
        w.chunks_exact(2).map(|p| (p[0].to_bits() as u64) << 32 | p[1].to_bits() as u64).collect();
    println!("{rows} x {c} weights, {} threads", rayon::current_num_threads());
    for round in 1..=3 {
        time(&format!("round {round}: read the f32 bytes"), w.len() * 4, || {
            let sums = words.par_chunks(1 << 16).map(|ch| ch.iter().fold(0u64, |a, &b| a ^ b));
            std::hint::black_box(sums.reduce(|| 0, |a, b| a ^ b));
        });
        time(&format!("round {round}: matvec f32"), w.len() * 4, || matvec(&mut out, &w, None, &x));
        time(&format!("round {round}: matvec bf16"), w.len() * 2, || matvec(&mut out, &wb, None, &x));
    }
}
