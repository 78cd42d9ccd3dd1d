//! Temporary timing of the fused attention and cross-entropy kernels.
use std::time::Instant;
use tensor::ops::attention::{attention_backward, attention_forward};
use tensor::ops::cross_entropy::{cross_entropy_backward, cross_entropy_forward};
use tensor::{Rng, Tensor};

fn best<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t0 = Instant::now();
        f();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let threads: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(1);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut rng = Rng::seeded(1);
        for &(b, t, nh, hs) in &[(16, 64, 4, 32), (8, 256, 6, 64), (4, 256, 12, 64), (12, 128, 4, 32)] {
            let c = nh * hs;
            let qkv = Tensor::randn(&[b, t, 3 * c], 1.0, &mut rng);
            let dy = Tensor::randn(&[b, t, c], 1.0, &mut rng);
            let (mut y, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
            let mut dqkv = vec![0.0; b * t * 3 * c];
            let f = best(|| attention_forward(&mut y, &mut lse, &qkv.data, b, t, nh, hs));
            let bw = best(|| attention_backward(&mut dqkv, &dy.data, &qkv.data, &y, &lse, b, t, nh, hs));
            // causal flops: fwd 2 matmuls of t²/2·hs·2, bwd 5 of them... count exact causal work
            let flop = (b * nh) as f64 * (t * t) as f64 * hs as f64; // one causal matmul = t²/2·hs·2
            println!(
                "attention b={b} t={t} nh={nh} hs={hs}: fwd {:.3} ms ({:.1} GFLOP/s), bwd {:.3} ms ({:.1} GFLOP/s)",
                f * 1e3, 2.0 * flop / f / 1e9, bw * 1e3, 5.0 * flop / bw / 1e9
            );
        }
        let ce_cases: &[(usize, usize)] = if std::env::args().nth(2).is_some() { &[] } else { &[(8192, 65), (2048, 50257)] };
        for &(n, v) in ce_cases {
            let logits = Tensor::randn(&[n, v], 1.0, &mut rng);
            let targets: Vec<u32> = (0..n).map(|i| (i * 7 % v) as u32).collect();
            let mut probs = vec![0.0; n * v];
            let mut d = vec![0.0; n * v];
            let f = best(|| { cross_entropy_forward(&mut probs, &logits.data, &targets, None, n, v); });
            let bw = best(|| cross_entropy_backward(&mut d, &probs, &targets, None, 1.0, n, v));
            println!("cross_entropy n={n} v={v}: fwd {:.3} ms, bwd {:.3} ms", f * 1e3, bw * 1e3);
        }
    });
}
