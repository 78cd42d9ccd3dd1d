//! Times the forward and backward kernels of the non-GEMM ops (elementwise, layernorm,
//! softmax, embedding, dropout, reductions, reshapes) on the shapes of a GPT step.
//!
//! cargo run --release -p quill-tensor --example ops_time [-- rows width]
//! (default 4096 rows of width 384, i.e. B·T = 4096 and C = 384); RAYON_NUM_THREADS=1
//! for one thread.

use std::time::Instant;
use tensor::ops::dropout::{dropout_backward, dropout_forward};
use tensor::ops::elementwise::kernels as ew;
use tensor::ops::embedding::{embedding_backward, embedding_forward};
use tensor::ops::layernorm::{layernorm_backward, layernorm_forward};
use tensor::ops::reduce::kernels::sum_forward;
use tensor::ops::shape::kernels::{transpose12_backward, transpose12_forward};
use tensor::ops::softmax::{softmax_backward, softmax_forward};
use tensor::{Rng, Tensor};

/// Runs `f` a few times and prints the best time per call, in ms and GB/s of `bytes`.
fn time(name: &str, bytes: usize, mut f: impl FnMut()) {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..10 {
        let t0 = Instant::now();
        f();
        best = best.min(t0.elapsed().as_secs_f64());
    }
    println!("{name:<28} {:>8.3} ms  {:>6.1} GB/s", best * 1e3, bytes as f64 / best / 1e9);
}

fn main() {
    let args: Vec<usize> =
        std::env::args().skip(1).map(|a| a.parse().expect("rows and width as integers")).collect();
    let (n, c) = (args.first().copied().unwrap_or(4096), args.get(1).copied().unwrap_or(384));
    println!("rows {n}, width {c}, {} rayon threads", rayon::current_num_threads());
    let mut rng = Rng::seeded(1);
    let x = Tensor::randn(&[n, 4 * c], 1.0, &mut rng).data;
    let dout = Tensor::randn(&[n, 4 * c], 1.0, &mut rng).data;
    let mut out = vec![0.0f32; n * 4 * c];
    let mut dx = vec![0.0f32; n * 4 * c];
    let f = 4; // bytes per f32
    let big = n * 4 * c;
    time("gelu forward (n, 4c)", 2 * f * big, || ew::gelu_forward(&mut out, &x));
    time("gelu backward (n, 4c)", 4 * f * big, || ew::gelu_backward(&mut dx, &dout, &x, true));
    let (xs, ds) = (&x[..n * c], &dout[..n * c]);
    time("add forward (n, c)", 3 * f * n * c, || ew::add_forward(&mut out[..n * c], xs, ds));
    time("add backward (n, c)", 3 * f * n * c, || ew::add_backward(&mut dx[..n * c], ds));
    time("relu forward (n, 4c)", 2 * f * big, || ew::relu_forward(&mut out, &x));

    let gamma = Tensor::randn(&[c], 1.0, &mut rng).data;
    let beta = Tensor::randn(&[c], 1.0, &mut rng).data;
    let (mut mean, mut rstd) = (vec![0.0; n], vec![0.0; n]);
    let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
    time("layernorm forward (n, c)", 2 * f * n * c, || {
        layernorm_forward(&mut out[..n * c], &mut mean, &mut rstd, xs, &gamma, &beta, n, c)
    });
    time("layernorm backward (n, c)", 3 * f * n * c, || {
        layernorm_backward(
            Some((&mut dx[..n * c], true)),
            Some(&mut dg),
            Some(&mut db),
            ds,
            xs,
            &gamma,
            &mean,
            &rstd,
            n,
            c,
        )
    });

    let t = 256.min(4 * c);
    let rows = big / t;
    time("softmax forward (…, 256)", 2 * f * big, || softmax_forward(&mut out, &x, rows, t));
    let probs = out.clone();
    time("softmax backward (…, 256)", 3 * f * big, || softmax_backward(&mut dx, &dout, &probs, rows, t));

    let v = 50257;
    let table = Tensor::randn(&[v, c], 0.02, &mut rng).data;
    let ids: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    let mut dtable = vec![0.0; v * c];
    time("embedding forward (v=50257)", 2 * f * n * c, || {
        embedding_forward(&mut out[..n * c], &table, &ids, n, c, v)
    });
    time("embedding backward (v=50257)", 2 * f * n * c, || {
        embedding_backward(&mut dtable, ds, &ids, n, c, v)
    });

    let mut mask = vec![0.0; n * c];
    time("dropout forward (n, c)", 3 * f * n * c, || {
        dropout_forward(&mut out[..n * c], &mut mask, xs, 0.1, &mut Rng::seeded(2))
    });
    time("dropout backward (n, c)", 4 * f * n * c, || dropout_backward(&mut dx[..n * c], ds, &mask));
    time("sum (n, 4c)", f * big, || {
        std::hint::black_box(sum_forward(&x));
    });
    let (b, nh) = (n / 256, 6);
    let (tt, hs) = (256, c / nh);
    if b > 0 && hs > 0 {
        let len = b * tt * nh * hs;
        time("transpose12 forward (n, c)", 2 * f * len, || {
            transpose12_forward(&mut out[..len], &x[..len], b, tt, nh, hs)
        });
        time("transpose12 backward (n, c)", 3 * f * len, || {
            transpose12_backward(&mut dx[..len], &dout[..len], b, nh, tt, hs)
        });
    }
}
