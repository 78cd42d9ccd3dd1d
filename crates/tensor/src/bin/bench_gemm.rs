//! GEMM throughput on the shapes a GPT's linear layers use, in GFLOP/s, for each backend
//! and thread count side by side (median over repetitions):
//!
//! ```text
//! cargo run --release -p quill-tensor --bin bench_gemm -- [--threads 1,2] [--quick]
//!     [--best] [--cpu-time] [--backends avx2,matrixmultiply] [--c 128,384,768] [--n 768,2048,8192]
//!     [--pass fwd,dx,dw]
//! python3 scripts/bench_matmul.py [--threads 1,2] [--quick]       # PyTorch, same table
//! ```
//!
//! For width C and n = B·T rows, each linear layer x (n, c) · wᵀ with w (oc, c) runs the
//! three products exactly as `ops::matmul` calls `gemm`:
//! `fwd` out = x · wᵀ, `dx` dx += dout · w, `dw` dw += doutᵀ · x,
//! for the layers qkv (c = C, oc = 3C), fc (C → 4C) and proj (4C → C).

use std::time::Instant;
use tensor::gemm::{gemm_with, Backend, Mat};
use tensor::{Rng, Tensor};

/// One gemm call as matmul.rs makes it.
#[derive(Copy, Clone)]
enum Pass {
    Forward,
    InputGrad,
    WeightGrad,
}

struct Options {
    threads: Vec<usize>,
    backends: Vec<Backend>,
    widths: Vec<usize>,
    rows: Vec<usize>,
    /// Which of fwd, dx, dw to run.
    passes: Vec<String>,
    min_reps: usize,
    min_seconds: f64,
    /// Report the best repetition instead of the median (less sensitive to a busy machine).
    best: bool,
    /// Time by the thread's CPU time (Linux, 1 thread), not the wall clock.
    cpu_time: bool,
}

fn parse_list<T: std::str::FromStr>(flag: &str, value: Option<String>) -> Vec<T> {
    let value = value.unwrap_or_else(|| fail(&format!("{flag} needs a comma-separated list")));
    value
        .split(',')
        .map(|s| s.trim().parse().unwrap_or_else(|_| fail(&format!("{flag}: cannot parse '{s}'"))))
        .collect()
}

fn fail(msg: &str) -> ! {
    eprintln!("bench_gemm: {msg}");
    std::process::exit(2)
}

fn parse_options() -> Options {
    let mut opts = Options {
        threads: vec![1, 2],
        backends: vec![Backend::best(), Backend::MatrixMultiply],
        widths: vec![128, 384, 768],
        rows: vec![768, 2048, 8192],
        passes: vec!["fwd".into(), "dx".into(), "dw".into()],
        min_reps: 5,
        min_seconds: 0.3,
        best: false,
        cpu_time: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => opts.threads = parse_list("--threads", args.next()),
            "--c" => opts.widths = parse_list("--c", args.next()),
            "--n" => opts.rows = parse_list("--n", args.next()),
            "--pass" => opts.passes = parse_list("--pass", args.next()),
            "--backends" => {
                let names: Vec<String> = parse_list("--backends", args.next());
                opts.backends = names
                    .iter()
                    .map(|name| {
                        let found = Backend::ALL.into_iter().find(|b| b.name() == name);
                        found.unwrap_or_else(|| fail(&format!("--backends: unknown backend '{name}'")))
                    })
                    .collect();
            }
            "--quick" => {
                opts.rows = vec![2048];
                opts.min_reps = 3;
                opts.min_seconds = 0.0;
            }
            "--best" => opts.best = true,
            "--cpu-time" => opts.cpu_time = true,
            "--help" | "-h" => {
                println!(
                    "bench_gemm [--threads 1,2] [--quick] [--best] [--cpu-time] [--backends a,b] [--c 128,384,768] [--n 768,2048,8192] [--pass fwd,dx,dw]"
                );
                std::process::exit(0);
            }
            other => fail(&format!("unknown flag '{other}' (try --help)")),
        }
    }
    opts.backends.dedup();
    if opts.cpu_time && (opts.threads != [1] || thread_cpu_seconds().is_none()) {
        fail("--cpu-time needs --threads 1 and Linux's /proc/thread-self/schedstat");
    }
    for b in &opts.backends {
        if !b.is_available() {
            fail(&format!("backend {} is not supported by this CPU", b.name()));
        }
    }
    opts
}

/// The operands of one layer: x (n, c), w (oc, c), dout (n, oc), and an output buffer.
struct Layer {
    x: Vec<f32>,
    w: Vec<f32>,
    dout: Vec<f32>,
    out: Vec<f32>,
}

/// gemm's (m, k, n) for a pass of a layer with n rows, c inputs and oc outputs.
fn dims(pass: Pass, n: usize, c: usize, oc: usize) -> (usize, usize, usize) {
    match pass {
        Pass::Forward => (n, c, oc),
        Pass::InputGrad => (n, oc, c),
        Pass::WeightGrad => (oc, n, c),
    }
}

fn run(backend: Backend, pass: Pass, l: &mut Layer, n: usize, c: usize, oc: usize) {
    let (x, w, dout) = (&l.x, &l.w, &l.dout);
    match pass {
        Pass::Forward => {
            gemm_with(backend, n, c, oc, Mat::rows(x, c), Mat::transposed(w, c), &mut l.out, false)
        }
        Pass::InputGrad => {
            gemm_with(backend, n, oc, c, Mat::rows(dout, oc), Mat::rows(w, c), &mut l.out, true)
        }
        Pass::WeightGrad => {
            gemm_with(backend, oc, n, c, Mat::transposed(dout, oc), Mat::rows(x, c), &mut l.out, true)
        }
    }
}

/// Median (or best) GFLOP/s of repeated runs, after one warm-up run. Each repetition
/// calls `f` often enough to last a few milliseconds (a few tenths with `--cpu-time`,
/// whose clock may tick coarsely).
fn measure(opts: &Options, flops: f64, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let rep_seconds = if opts.cpu_time { 0.2 } else { 0.005 };
    let calls = (rep_seconds / t.elapsed().as_secs_f64()).ceil().clamp(1.0, 1000.0) as usize;
    let flops = flops * calls as f64;
    let mut rates = Vec::new();
    let start = Instant::now();
    while rates.len() < opts.min_reps
        || (start.elapsed().as_secs_f64() < opts.min_seconds && rates.len() < 200)
    {
        let (t, cpu) = (Instant::now(), thread_cpu_seconds());
        for _ in 0..calls {
            f();
        }
        let seconds = match (opts.cpu_time, cpu, thread_cpu_seconds()) {
            (true, Some(before), Some(after)) => after - before,
            _ => t.elapsed().as_secs_f64(),
        };
        rates.push(flops / seconds / 1e9);
    }
    rates.sort_by(f64::total_cmp);
    if opts.best {
        rates[rates.len() - 1]
    } else {
        rates[rates.len() / 2]
    }
}

fn main() {
    let opts = parse_options();
    let pools: Vec<rayon::ThreadPool> = opts
        .threads
        .iter()
        .map(|&t| {
            rayon::ThreadPoolBuilder::new().num_threads(t).build().expect("building a rayon thread pool")
        })
        .collect();
    let stat = if opts.best { "best" } else { "median" };
    println!("# gemm GFLOP/s, {stat} of >= {} reps; (m, k, n) as gemm sees them", opts.min_reps);
    print!("{:>5} {:>6} {:<5} {:<4} {:>6} {:>6} {:>6}", "C", "N", "layer", "pass", "m", "k", "n");
    for &t in &opts.threads {
        for b in &opts.backends {
            print!(" {:>9}", format!("{}/{t}", short_name(*b)));
        }
    }
    println!();
    let mut rng = Rng::seeded(0);
    let mut totals = vec![0.0f64; opts.threads.len() * opts.backends.len()];
    let mut rows = 0;
    for &cw in &opts.widths {
        for &n in &opts.rows {
            for (layer, c, oc) in [("qkv", cw, 3 * cw), ("fc", cw, 4 * cw), ("proj", 4 * cw, cw)] {
                let mut l = Layer {
                    x: Tensor::randn(&[n, c], 1.0, &mut rng).data,
                    w: Tensor::randn(&[oc, c], 0.02, &mut rng).data,
                    dout: Tensor::randn(&[n, oc], 0.01, &mut rng).data,
                    out: vec![0.0; (n * oc).max(n * c).max(oc * c)],
                };
                for (pass, name) in
                    [(Pass::Forward, "fwd"), (Pass::InputGrad, "dx"), (Pass::WeightGrad, "dw")]
                {
                    if !opts.passes.iter().any(|p| p == name) {
                        continue;
                    }
                    let (gm, gk, gn) = dims(pass, n, c, oc);
                    print!("{cw:>5} {n:>6} {layer:<5} {name:<4} {gm:>6} {gk:>6} {gn:>6}");
                    let flops = 2.0 * (gm * gk * gn) as f64;
                    let mut col = 0;
                    for pool in &pools {
                        for &b in &opts.backends {
                            let rate =
                                pool.install(|| measure(&opts, flops, || run(b, pass, &mut l, n, c, oc)));
                            totals[col] += rate.ln();
                            col += 1;
                            print!(" {rate:>9.1}");
                            use std::io::Write;
                            std::io::stdout().flush().expect("flushing stdout");
                        }
                    }
                    rows += 1;
                    println!();
                }
            }
        }
    }
    print!("{:<44}", "geometric mean");
    for total in totals {
        print!(" {:>9.1}", (total / rows as f64).exp());
    }
    println!();
}

/// CPU time of the calling thread in seconds, where Linux reports it (nanoseconds).
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanos * 1e-9)
}

/// Column names short enough for the table.
fn short_name(b: Backend) -> &'static str {
    match b {
        Backend::MatrixMultiply => "mm",
        Backend::Portable => "port",
        other => other.name(),
    }
}
