//! `bench`: how fast Quill trains and samples on this machine, next to PyTorch's figures
//! from `scripts/bench_pytorch.py` (same models, same measurements).
//!
//! For each configuration it prints training tokens/s (forward + backward + clipping +
//! AdamW, median over steps after warm-up), MFU against the f32 GEMM peak measured here,
//! peak resident memory, sampling tokens/s with the KV cache at batch 1 with `f32` and with
//! bfloat16 weights and for eight samples decoded as one batch (each the median of five
//! runs), and without the cache (not for gpt2), and a per-op profile (with `--profile`, each op's median over
//! as many profiled steps as timed ones). Each configuration runs in
//! a child process of its own so that its peak memory is its own.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use model::sampling::{generate_batch, sample_next, sample_streams, SamplingParams};
use model::{Dtype, Gpt, GptConfig};
use serde::{Deserialize, Serialize};
use tensor::gemm::{gemm, Mat};
use tensor::{Grads, Rng, Tensor};
use train::config::MAX_THREADS;
use train::optim::{clip_scale, grad_norm, AdamW, AdamWConfig};
use train::trainer::accumulate_gradients;

#[derive(Parser)]
#[command(about = "Training and sampling speed, MFU, memory and a per-op profile")]
struct Args {
    /// Threads (default: every core); at most 1024, as in a train config.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_THREADS as u64))]
    threads: Option<usize>,
    /// Configurations to run: tiny, small, gpt2 (default: all).
    #[arg(long = "only")]
    only: Vec<String>,
    /// Timed training steps per configuration (after two warm-up steps); at least 1.
    #[arg(long, default_value_t = 7, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    steps: usize,
    /// New tokens per sampling measurement; at most 10^6 (each measurement keeps its
    /// tokens, and a few hundred already give a steady rate).
    #[arg(long, default_value_t = 256, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_SAMPLE_TOKENS as u64))]
    sample_tokens: usize,
    /// Print each configuration's per-op profile: every op's median over as many profiled
    /// steps as timed ones (run after the timed steps).
    #[arg(long)]
    profile: bool,
    /// Run one configuration and print its figures as JSON (used by the parent process).
    #[arg(long, hide = true)]
    one: Option<String>,
}

/// Most new tokens a sampling measurement may ask for.
const MAX_SAMPLE_TOKENS: usize = 1_000_000;

/// Timed runs of the KV-cache sampling loop; the median is reported (one run takes under
/// a second, and a shared machine's speed drifts).
const SAMPLE_RUNS: usize = 5;

/// A benchmark configuration: the model and the batch it trains on.
struct BenchConfig {
    name: &'static str,
    model: GptConfig,
    batch_size: usize,
}

fn configs() -> Vec<BenchConfig> {
    let gpt = |vocab_size, block_size, n_layer, n_head, n_embd| GptConfig {
        vocab_size,
        block_size,
        n_layer,
        n_head,
        n_embd,
        dropout: 0.0,
        bias: false,
        arch: model::Arch::GPT2,
    };
    vec![
        BenchConfig { name: "tiny", model: gpt(65, 64, 4, 4, 128), batch_size: 12 },
        BenchConfig { name: "small", model: gpt(65, 256, 6, 6, 384), batch_size: 8 },
        BenchConfig { name: "gpt2", model: gpt(50257, 256, 12, 12, 768), batch_size: 2 },
    ]
}

/// What one child process measures.
#[derive(Serialize, Deserialize)]
struct Figures {
    config: String,
    params: usize,
    step_ms: f64,
    adamw_ms: f64,
    train_tok_s: f64,
    flops_per_token: f64,
    peak_rss_mb: f64,
    sample_cached_tok_s: Option<f64>,
    /// The same with the weights in bfloat16.
    sample_bf16_tok_s: Option<f64>,
    /// Eight samples decoded as one batch (f32), all their tokens counted.
    sample_batch8_tok_s: Option<f64>,
    sample_uncached_tok_s: Option<f64>,
    /// (op, forward ms, backward ms): each the median over the profiled steps (none
    /// without --profile).
    profile: Vec<(String, f64, f64)>,
    /// How many steps the profile is the median of.
    profile_steps: usize,
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The f32 GEMM peak of this machine as our GEMM reaches it: a 2048³ product.
fn gemm_peak() -> f64 {
    let n = 2048;
    let mut rng = Rng::seeded(0);
    let a = Tensor::randn(&[n, n], 1.0, &mut rng);
    let b = Tensor::randn(&[n, n], 1.0, &mut rng);
    let mut c = vec![0.0f32; n * n];
    let mut times = Vec::new();
    for i in 0..8 {
        let start = Instant::now();
        gemm(n, n, n, Mat::rows(&a.data, n), Mat::rows(&b.data, n), &mut c, false);
        if i > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    2.0 * (n as f64).powi(3) / median(times) / 1e9
}

/// The CPU's model name, from /proc/cpuinfo ("unknown CPU" where it cannot be read).
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|v| v.split_once(':'))
        .map_or_else(|| "unknown CPU".to_string(), |(_, name)| name.trim().to_string())
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn run_one(cfg: &BenchConfig, steps: usize, sample_tokens: usize, profile_steps: usize) -> Figures {
    let (b, t, v) = (cfg.batch_size, cfg.model.block_size, cfg.model.vocab_size);
    let mut gpt = Gpt::new(cfg.model.clone(), 0);
    let adamw = AdamWConfig { beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.1 };
    let mut opt = AdamW::new(&gpt.tape, adamw);
    let mut grads = Grads::params_only();
    let mut rng = Rng::seeded(1);
    let x: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let y: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();

    // As the trainer runs a step (the same gradient function): all of it in one pool task.
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let mut train_step = |gpt: &mut Gpt, grads: &mut Grads| -> Duration {
        tensor::on_pool(|| {
            let batch = (&mut inputs, &mut targets);
            accumulate_gradients(gpt, grads, 1, (b, t), None, batch, &mut |inputs, targets| {
                inputs.clone_from(&x);
                targets.clone_from(&y);
            });
            let scale = clip_scale(grad_norm(&gpt.tape, grads), 1.0);
            let start = Instant::now();
            opt.update(&mut gpt.tape, grads, 1e-3, scale);
            start.elapsed()
        })
    };
    let mut step_times = Vec::new();
    let mut adamw_times = Vec::new();
    for i in 0..steps + 2 {
        let start = Instant::now();
        let adamw = train_step(&mut gpt, &mut grads);
        if i >= 2 {
            step_times.push(start.elapsed().as_secs_f64());
            adamw_times.push(adamw.as_secs_f64());
        }
    }
    // With --profile: each profiled step starts a fresh profile; an op's figure is its
    // median over them.
    let mut per_op: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    for _ in 0..profile_steps {
        gpt.tape.set_profiling(true);
        train_step(&mut gpt, &mut grads);
        for (name, f, bw, _) in gpt.tape.profile().map(|p| p.ops).unwrap_or_default() {
            let i = per_op.iter().position(|e| e.0 == name).unwrap_or_else(|| {
                per_op.push((name.to_string(), Vec::new(), Vec::new()));
                per_op.len() - 1
            });
            per_op[i].1.push(ms(f));
            per_op[i].2.push(ms(bw));
        }
    }
    gpt.tape.set_profiling(false);
    let profile = per_op.into_iter().map(|(name, f, bw)| (name, median(f), median(bw))).collect();
    let peak_rss_mb = peak_rss_mb();

    let step = median(step_times);
    let params = SamplingParams { temperature: 0.8, top_k: None, top_p: None };
    let prompt: Vec<u32> = (0..8).map(|i| i % v as u32).collect();
    // Batch-1 KV-cache sampling in each dtype, and eight samples as one batch.
    let rate = |gpt: &Gpt, batch: usize| {
        let mut rngs = sample_streams(&rng, batch, sample_tokens, &params);
        generate_batch(gpt, &prompt, 8, &params, &mut rngs, &mut |_, _| {}); // warm-up
        let rates = (0..SAMPLE_RUNS).map(|_| {
            let start = Instant::now();
            let texts = generate_batch(gpt, &prompt, sample_tokens, &params, &mut rngs, &mut |_, _| {});
            texts.iter().map(Vec::len).sum::<usize>() as f64 / start.elapsed().as_secs_f64()
        });
        Some(median(rates.collect()))
    };
    let cached = rate(&gpt, 1);
    let batch8 = rate(&gpt, 8);
    gpt.set_sampling_dtype(Dtype::Bf16);
    let bf16 = rate(&gpt, 1);
    gpt.set_sampling_dtype(Dtype::F32);
    let mut uncached = None;
    if cfg.name != "gpt2" {
        // Nothing is differentiated: the forward keeps nothing for backward.
        gpt.tape.set_no_grad(true);
        let mut text = prompt.clone();
        let start = Instant::now();
        for _ in 0..sample_tokens {
            let window = &text[text.len().saturating_sub(t)..];
            let out = gpt.forward(window, None, 1, window.len(), None);
            let logits = gpt.tape.data(out.logits);
            let next = sample_next(&logits[(window.len() - 1) * v..], &params, &mut rng);
            text.push(next);
        }
        uncached = Some(sample_tokens as f64 / start.elapsed().as_secs_f64());
        gpt.tape.set_no_grad(false);
    }
    Figures {
        config: cfg.name.to_string(),
        params: cfg.model.num_params(),
        step_ms: step * 1e3,
        adamw_ms: median(adamw_times) * 1e3,
        train_tok_s: (b * t) as f64 / step,
        flops_per_token: cfg.model.flops_per_token(),
        peak_rss_mb,
        sample_cached_tok_s: cached,
        sample_bf16_tok_s: bf16,
        sample_batch8_tok_s: batch8,
        sample_uncached_tok_s: uncached,
        profile,
        profile_steps,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> Result<()> {
    let args = Args::parse();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .context("starting the thread pool")?;
    let all = configs();
    if let Some(name) = &args.one {
        let cfg = all.iter().find(|c| c.name == name).context("unknown configuration")?;
        let profile_steps = if args.profile { args.steps } else { 0 };
        println!("{}", serde_json::to_string(&run_one(cfg, args.steps, args.sample_tokens, profile_steps))?);
        return Ok(());
    }
    for name in &args.only {
        if !all.iter().any(|c| c.name == name) {
            bail!("--only {name}: unknown configuration; choose tiny, small or gpt2");
        }
    }
    let peak = gemm_peak();
    println!(
        "Quill on {}, SIMD {:?}, {threads} threads; f32 GEMM peak (2048³ GEMM): {peak:.0} GFLOP/s",
        cpu_model(),
        tensor::simd::level()
    );
    println!(
        "{:<7} {:>8} {:>9} {:>9} {:>12} {:>6} {:>9} {:>44}",
        "config",
        "params",
        "step ms",
        "AdamW ms",
        "train tok/s",
        "MFU",
        "peak RSS",
        "sample tok/s: f32 / bf16 / f32 ×8 / no cache"
    );
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let mut profiles = Vec::new();
    for cfg in all.iter().filter(|c| args.only.is_empty() || args.only.iter().any(|o| o == c.name)) {
        let out = Command::new(&exe)
            .args(["--one", cfg.name, "--threads", &threads.to_string()])
            .args(["--steps", &args.steps.to_string(), "--sample-tokens", &args.sample_tokens.to_string()])
            .args(args.profile.then_some("--profile"))
            .output()
            .context("running a benchmark child process")?;
        if !out.status.success() {
            bail!("bench {}: {}", cfg.name, String::from_utf8_lossy(&out.stderr));
        }
        let f: Figures = serde_json::from_slice(&out.stdout).context("reading a child's figures")?;
        let mfu = f.train_tok_s * f.flops_per_token / (peak * 1e9);
        let shown = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.0}"));
        let sampling =
            [f.sample_cached_tok_s, f.sample_bf16_tok_s, f.sample_batch8_tok_s, f.sample_uncached_tok_s]
                .map(shown)
                .join(" / ");
        println!(
            "{:<7} {:>7.2}M {:>9.1} {:>9.1} {:>12.0} {:>5.1}% {:>7.0}MB {:>44}",
            f.config,
            f.params as f64 / 1e6,
            f.step_ms,
            f.adamw_ms,
            f.train_tok_s,
            100.0 * mfu,
            f.peak_rss_mb,
            sampling
        );
        profiles.push(f);
    }
    if args.profile {
        for f in &profiles {
            println!("\nper-op profile of {}, median of {} steps (ms):", f.config, f.profile_steps);
            println!("  {:<14} {:>9} {:>9}", "op", "forward", "backward");
            for (op, fw, bw) in &f.profile {
                println!("  {op:<14} {fw:>9.2} {bw:>9.2}");
            }
            println!("  {:<14} {:>9.2}", "adamw", f.adamw_ms);
            let (fw, bw): (f64, f64) =
                (f.profile.iter().map(|p| p.1).sum(), f.profile.iter().map(|p| p.2).sum());
            println!("  {:<14} {fw:>9.2} {bw:>9.2}", "sum of ops");
        }
    }
    Ok(())
}
