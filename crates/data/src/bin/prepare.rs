//! `prepare`: raw text in; a tokenizer and train/val token files out.
//!
//! ```text
//! prepare --input datasets/tinyshakespeare/input.txt --out datasets/tinyshakespeare --tokenizer char
//! prepare --input a.txt b.txt --out datasets/mine --tokenizer bpe --vocab-size 4096
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

/// Turns text files into a tokenizer (`tokenizer.bin`) and token files (`train.bin`,
/// `val.bin`) for training.
#[derive(Parser, Debug)]
#[command(name = "prepare", version)]
struct Args {
    /// Text files (UTF-8), concatenated in the order given.
    #[arg(long, required = true, num_args = 1..)]
    input: Vec<PathBuf>,
    /// Output folder for tokenizer.bin, train.bin and val.bin.
    #[arg(long)]
    out: PathBuf,
    /// char: one token per character; bpe: byte-level BPE trained here; gpt2: GPT-2's BPE.
    #[arg(long, value_parser = ["char", "bpe", "gpt2"])]
    tokenizer: String,
    /// The BPE vocabulary size to learn (bpe only).
    #[arg(long)]
    vocab_size: Option<usize>,
    /// The share of the text, taken from its end, that goes to val.bin.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// Replace invalid UTF-8 with U+FFFD instead of stopping.
    #[arg(long)]
    lossy: bool,
    /// Overwrite a corpus already prepared in --out.
    #[arg(long)]
    force: bool,
    /// The folder with GPT-2's encoder.json and vocab.bpe.
    #[arg(long, default_value = data::DEFAULT_GPT2_DIR)]
    gpt2_dir: PathBuf,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let opts = data::PrepareOptions {
        inputs: args.input.clone(),
        out_dir: args.out.clone(),
        tokenizer: args.tokenizer.clone(),
        vocab_size: args.vocab_size,
        val_fraction: args.val_fraction,
        lossy: args.lossy,
        progress: !args.quiet,
    };
    let started = Instant::now();
    let summary = data::prepare_with(&opts, args.force, &args.gpt2_dir)?;
    println!(
        "{} tokenizer, vocab {}: {} train tokens, {} val tokens ({:.2} bytes/token) in {:.1} s → {}",
        args.tokenizer,
        summary.vocab_size,
        summary.train_tokens,
        summary.val_tokens,
        summary.bytes_per_token,
        started.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}
