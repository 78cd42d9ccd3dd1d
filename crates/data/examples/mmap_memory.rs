//! Shows that sampling batches from a memory-mapped corpus keeps memory flat however large
//! the corpus: writes a synthetic token file (2 GB by default), samples batches from it,
//! and prints the process's resident memory before and after.
//!
//! ```text
//! cargo run --release -p quill-data --example mmap_memory -- [GB] [PATH]
//! ```
//!
//! `RssAnon` is the process's own memory; `RssFile` counts the corpus pages the batches
//! have touched so far, which the kernel can drop at any time (they are a cache of the file).

use std::path::PathBuf;
use std::time::Instant;

use data::{BatchSampler, TokenFile, TokenWriter};

/// VmRSS, RssAnon and RssFile from /proc/self/status, in MiB.
fn memory() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or("?".to_string(), |kb| format!("{:.1} MiB", kb / 1024.0))
    };
    format!("VmRSS {} (RssAnon {}, RssFile {})", field("VmRSS:"), field("RssAnon:"), field("RssFile:"))
}

fn main() -> Result<(), data::DataError> {
    let args: Vec<String> = std::env::args().collect();
    let gb: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let path = PathBuf::from(args.get(2).map_or("/tmp/quill_mmap_memory.bin", |s| s.as_str()));
    let vocab = 50257u32;
    let count = (gb * 1e9 / 2.0) as u64;

    println!("start: {}", memory());
    let started = Instant::now();
    let mut writer = TokenWriter::create(&path, vocab as usize)?;
    let mut chunk = vec![0u32; 1 << 20];
    let mut written = 0u64;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    while written < count {
        let n = chunk.len().min((count - written) as usize);
        for t in &mut chunk[..n] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *t = (state % vocab as u64) as u32;
        }
        writer.push(&chunk[..n])?;
        written += n as u64;
    }
    writer.finish()?;
    println!(
        "wrote {} tokens ({:.2} GB) to {} in {:.1} s: {}",
        count,
        (count * 2) as f64 / 1e9,
        path.display(),
        started.elapsed().as_secs_f64(),
        memory()
    );

    let file = TokenFile::open(&path)?;
    println!("opened: {}", memory());
    let (batch_size, block_size) = (16, 1024);
    let mut sampler = BatchSampler::new(&file, batch_size, block_size, 1337)?;
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut checksum = 0u64;
    for step in 1..=4000 {
        sampler.next_batch(&file, &mut inputs, &mut targets);
        checksum = checksum.wrapping_add(inputs[0] as u64 + targets[inputs.len() - 1] as u64);
        if step % 1000 == 0 {
            println!("after {step} batches of {batch_size}×{block_size}: {}", memory());
        }
    }
    println!(
        "sampled {:.0} batches/s (checksum {checksum}); the file is {:.0} MiB",
        4000.0 / started.elapsed().as_secs_f64(),
        (count * 2) as f64 / (1 << 20) as f64
    );
    drop(file);
    std::fs::remove_file(&path).map_err(|e| data::DataError::Io { path: path.clone(), error: e })?;
    Ok(())
}
