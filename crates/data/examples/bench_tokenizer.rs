//! Tokenizer timings: BPE training on a corpus at two vocabulary sizes, and GPT-2 encoding
//! throughput (compare with `scripts/bench_tokenizer.py`, which times tiktoken on the same
//! files).
//!
//! ```text
//! cargo run --release -p quill-data --example bench_tokenizer -- [TEXT_FILE...]
//! ```
//!
//! Run from the repository root (it reads `datasets/`); the default file is Tiny Shakespeare.

use std::path::Path;
use std::time::Instant;

use data::{BpeTokenizer, Gpt2Tokenizer, Tokenizer};

fn main() -> Result<(), data::DataError> {
    let mut files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        files.push("datasets/tinyshakespeare/input.txt".into());
    }
    let read =
        |f: &str| std::fs::read_to_string(f).map_err(|e| data::DataError::Io { path: f.into(), error: e });

    let text = read(&files[0])?;
    for vocab in [512, 4096] {
        let started = Instant::now();
        let bpe = BpeTokenizer::train(&text, vocab, false)?;
        let trained = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let ids = bpe.encode(&text)?;
        println!(
            "bpe vocab {vocab}: trained on {} ({:.2} MB) in {trained:.2} s; encodes it to {} tokens ({:.2} bytes/token) in {:.2} s",
            files[0],
            text.len() as f64 / 1e6,
            ids.len(),
            text.len() as f64 / ids.len() as f64,
            started.elapsed().as_secs_f64()
        );
    }

    let started = Instant::now();
    let gpt2 = Gpt2Tokenizer::from_dir(Path::new(data::DEFAULT_GPT2_DIR))?;
    println!("gpt2: loaded encoder.json + vocab.bpe in {:.2} s", started.elapsed().as_secs_f64());
    for f in &files {
        let text = read(f)?;
        // Best of 3; each run starts with an empty word cache.
        let mut best = f64::INFINITY;
        let mut n = 0;
        for _ in 0..3 {
            let started = Instant::now();
            n = gpt2.encode_ordinary(&text).len();
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "gpt2 encode {f}: {:.2} MB → {n} tokens in {best:.3} s = {:.1} MB/s (1 thread)",
            text.len() as f64 / 1e6,
            text.len() as f64 / 1e6 / best
        );
    }
    Ok(())
}
