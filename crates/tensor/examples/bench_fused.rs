//! Times the fused kernels, forward and backward, on the shapes a small GPT uses:
//! causal attention (GFLOP/s count only the causal half of each product) and
//! softmax + cross-entropy. `cargo run --release -p quill-tensor --example bench_fused -- 2`
//! runs on 2 threads; `scripts/bench_attention_torch.py 2` times PyTorch on the same shapes.

use std::time::Instant;
use tensor::ops::attention::{attention_backward, attention_forward, probs_per_head, SAVE_PROBS_UP_TO};
use tensor::ops::cross_entropy::{cross_entropy_backward, cross_entropy_forward};
use tensor::{Rng, Tensor};

/// The fastest of five runs, after one warm-up run, in seconds.
fn best<F: FnMut()>(mut f: F) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}

fn main() {
    let threads: usize = std::env::args().nth(1).map_or(1, |s| s.parse().expect("a thread count"));
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
    println!("{threads} thread(s)");
    pool.install(|| {
        let mut rng = Rng::seeded(1);
        let shapes = [(16, 64, 4, 32), (12, 128, 4, 32), (8, 256, 6, 64), (4, 256, 12, 64), (1, 1024, 12, 64)];
        for &(b, t, nh, hs) in &shapes {
            let c = nh * hs;
            let qkv = Tensor::randn(&[b, t, 3 * c], 1.0, &mut rng);
            let dy = Tensor::randn(&[b, t, c], 1.0, &mut rng);
            let (mut y, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
            let mut dqkv = vec![0.0; b * t * 3 * c];
            // As training runs it: the forward saves the probabilities when t is short enough.
            let save = t <= SAVE_PROBS_UP_TO;
            let mut probs = vec![0.0; if save { b * nh * probs_per_head(t) } else { 0 }];
            let fwd = best(|| {
                let probs = save.then_some(probs.as_mut_slice());
                attention_forward(&mut y, &mut lse, probs, &qkv.data, b, t, nh, hs)
            });
            let saved = save.then_some(probs.as_slice());
            let bwd = best(|| attention_backward(&mut dqkv, &dy.data, &qkv.data, &y, &lse, saved, b, t, nh, hs, false));
            // One causal product of (t × hs) by (hs × t): t²/2 multiply-adds per (batch, head).
            // Backward runs four products with the saved probabilities, five recomputing them.
            let product = (b * nh * t * t * hs) as f64;
            let backward_products = if save { 4.0 } else { 5.0 };
            println!(
                "attention b={b} t={t} nh={nh} hs={hs}: forward {:.3} ms ({:.1} GFLOP/s), backward {:.3} ms ({:.1} GFLOP/s)",
                fwd * 1e3,
                2.0 * product / fwd / 1e9,
                bwd * 1e3,
                backward_products * product / bwd / 1e9
            );
        }
        for &(n, v) in &[(8192, 65), (256, 50257)] {
            let logits = Tensor::randn(&[n, v], 1.0, &mut rng);
            let targets: Vec<u32> = (0..n).map(|i| (i * 7 % v) as u32).collect();
            let (mut probs, mut dlogits) = (vec![0.0; n * v], vec![0.0; n * v]);
            let fwd = best(|| {
                cross_entropy_forward(&mut probs, &logits.data, &targets, None, n, v);
            });
            let bwd = best(|| cross_entropy_backward(&mut dlogits, &probs, &targets, None, 1.0, n, v));
            let per = 1e9 / (n * v) as f64;
            println!(
                "cross_entropy n={n} v={v}: forward {:.3} ms ({:.2} ns/logit), backward {:.3} ms ({:.2} ns/logit)",
                fwd * 1e3,
                fwd * per,
                bwd * 1e3,
                bwd * per
            );
        }
    });
}
