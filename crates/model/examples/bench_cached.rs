//! Batch-1 decoding speed of the KV-cache path, in tokens per second, for the tiny
//! (4 layers, 128 wide) and small (6 layers, 384 wide) character models:
//!
//!     cargo run --release -p quill-model --example bench_cached [-- tiny|small|gpt2]
//!
//! Each pass fills the cache one token at a time up to block_size, then clears it.
//! PyTorch eager with a KV cache does about 1,440 tok/s (tiny) and 375 (small) here.

use std::time::Instant;

use model::{Gpt, GptConfig};

fn bench(name: &str, config: GptConfig, seconds: f64) {
    let gpt = Gpt::new(config.clone(), 1);
    let mut cache = gpt.new_cache();
    let mut checksum = 0.0f32;
    let mut tokens = 0usize;
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds {
        cache.clear();
        for pos in 0..config.block_size {
            let logits = gpt.forward_cached_into(&mut cache, &[(pos % config.vocab_size) as u32]);
            checksum += logits[0];
            tokens += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{name:<6} {:>6.2}M params  {:>9.0} tok/s  ({tokens} tokens in {elapsed:.2} s, checksum {checksum:.3})",
        config.num_params() as f64 / 1e6,
        tokens as f64 / elapsed
    );
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "tiny,small".to_string());
    let char_model = |n_layer, n_head, n_embd| GptConfig {
        vocab_size: 65,
        block_size: 256,
        n_layer,
        n_head,
        n_embd,
        dropout: 0.0,
        bias: true,
    };
    for name in which.split(',') {
        match name {
            "tiny" => bench("tiny", char_model(4, 4, 128), 3.0),
            "small" => bench("small", char_model(6, 6, 384), 3.0),
            "gpt2" => bench(
                "gpt2",
                GptConfig {
                    vocab_size: 50257,
                    block_size: 1024,
                    n_layer: 12,
                    n_head: 12,
                    n_embd: 768,
                    dropout: 0.0,
                    bias: true,
                },
                10.0,
            ),
            other => eprintln!("unknown model {other}; use tiny, small or gpt2"),
        }
    }
}
