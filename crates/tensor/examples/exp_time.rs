use std::time::Instant;
use tensor::ops::exp::{exp_sum, max};
fn main() {
    let mut xs: Vec<f32> = (0..4096).map(|i| (i % 100) as f32 * -0.05).collect();
    let t0 = Instant::now();
    let mut s = 0.0;
    for _ in 0..10000 { s += exp_sum(&mut xs, 1.0, 0.0); xs.iter_mut().for_each(|x| *x = -*x * 0.001); }
    let e = t0.elapsed().as_secs_f64();
    println!("exp_sum+rewrite: {:.3} ns/elem ({s})", e / 4096.0 / 10000.0 * 1e9);
    let t0 = Instant::now();
    let mut m = 0.0;
    for _ in 0..10000 { m += max(&xs); }
    println!("max: {:.3} ns/elem ({m})", t0.elapsed().as_secs_f64() / 4096.0 / 10000.0 * 1e9);
}
