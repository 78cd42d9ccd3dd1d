//! `bench_sample [--new-tokens N]`: batch-1 sampling speed, in new tokens per second, for
//! the tiny (4 layers, 4 heads, 128 wide, block 64) and small (6 layers, 6 heads, 384
//! wide, block 256) char-level shapes with random weights, with the KV cache
//! (`model::sampling::generate`) and without it (a full `Gpt::forward` over the last
//! block_size tokens at every step). Not a test: run it on a quiet machine.

use std::time::Instant;

use clap::Parser;
use model::sampling::{generate, sample_next, SamplingParams};
use model::{Gpt, GptConfig};
use tensor::Rng;

#[derive(Parser, Debug)]
#[command(name = "bench_sample")]
struct Args {
    /// New tokens per measurement.
    #[arg(long, default_value_t = 256)]
    new_tokens: usize,
    /// Only these shapes (tiny, small); both by default.
    #[arg(long, value_delimiter = ',')]
    shapes: Vec<String>,
}

fn config(n_layer: usize, n_head: usize, n_embd: usize, block_size: usize) -> GptConfig {
    GptConfig { vocab_size: 65, block_size, n_layer, n_head, n_embd, dropout: 0.0, bias: true }
}

/// New tokens per second through the KV cache.
fn cached(gpt: &Gpt, prompt: &[u32], new_tokens: usize) -> f64 {
    let mut rng = Rng::seeded(1);
    let start = Instant::now();
    let out = generate(gpt, prompt, new_tokens, &SamplingParams::default(), &mut rng, &mut |_| {});
    out.len() as f64 / start.elapsed().as_secs_f64()
}

/// New tokens per second with a full training-style forward over the window each step.
fn uncached(gpt: &mut Gpt, prompt: &[u32], new_tokens: usize) -> f64 {
    let mut rng = Rng::seeded(1);
    let params = SamplingParams::default();
    let (block_size, vocab_size) = (gpt.config.block_size, gpt.config.vocab_size);
    let mut text = prompt.to_vec();
    let start = Instant::now();
    for _ in 0..new_tokens {
        let window = &text[text.len().saturating_sub(block_size)..];
        let t = window.len();
        let out = gpt.forward(window, None, 1, t, None);
        let logits = &gpt.tape.data(out.logits)[(t - 1) * vocab_size..t * vocab_size];
        let token = sample_next(logits, &params, &mut rng);
        text.push(token);
    }
    new_tokens as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args = Args::parse();
    let shapes = [("tiny", config(4, 4, 128, 64)), ("small", config(6, 6, 384, 256))];
    println!(
        "batch-1 sampling, {} new tokens after an 8-token prompt, random weights, {} rayon threads",
        args.new_tokens,
        rayon::current_num_threads()
    );
    println!(
        "{:<6} {:>8} {:>6} {:>14} {:>16} {:>9}",
        "shape", "params", "block", "cached tok/s", "no-cache tok/s", "speed-up"
    );
    for (name, cfg) in shapes {
        if !args.shapes.is_empty() && !args.shapes.iter().any(|s| s == name) {
            continue;
        }
        let params = cfg.num_params();
        let block_size = cfg.block_size;
        let mut gpt = Gpt::new(cfg, 0);
        let prompt: Vec<u32> = (0..8).map(|i| (i * 7 % 65) as u32).collect();
        // Warm up caches and the thread pool.
        cached(&gpt, &prompt, 16);
        uncached(&mut gpt, &prompt, 4);
        let with_cache = cached(&gpt, &prompt, args.new_tokens);
        let without = uncached(&mut gpt, &prompt, args.new_tokens);
        println!(
            "{name:<6} {:>7.2}M {block_size:>6} {with_cache:>14.0} {without:>16.0} {:>8.1}x",
            params as f64 / 1e6,
            with_cache / without
        );
    }
}
