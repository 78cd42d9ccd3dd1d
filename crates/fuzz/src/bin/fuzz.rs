//! `fuzz`: runs the mutation fuzzer on one target (or all), or replays one saved input.
//!
//! ```text
//! cargo run --release -p fuzz -- checkpoint --execs 1000000 --seed 1
//! cargo run --release -p fuzz -- all --execs 20000
//! cargo run --release -p fuzz -- checkpoint --input target/fuzz/crashes/checkpoint/panic-….bin
//! cargo run --release -p fuzz -- seeds     # rewrites crates/fuzz/corpus/<target>/seed-*
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser)]
#[command(
    about = "Fuzz Quill's loaders: checkpoint, token_file, tokenizer, gpt2_files, config, metrics, hf_config, safetensors"
)]
struct Args {
    /// A target, `all`, or `seeds` (write each target's built-in seeds to its corpus folder).
    target: String,
    /// Executions per target.
    #[arg(long, default_value_t = 100_000)]
    execs: u64,
    /// Seed of the mutation generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Longest input in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    max_len: usize,
    /// Bound on one allocation in MiB (twice this may be live at once).
    #[arg(long, default_value_t = 1024)]
    alloc_limit_mb: usize,
    /// Longest time one input may take, in seconds.
    #[arg(long, default_value_t = 10)]
    timeout_s: u64,
    /// Where failing inputs are saved.
    #[arg(long, default_value = "target/fuzz/crashes")]
    crashes: PathBuf,
    /// Also save inputs that found a new outcome kind here (a folder per target).
    #[arg(long)]
    corpus_out: Option<PathBuf>,
    /// Replay this one input instead of fuzzing.
    #[arg(long)]
    input: Option<PathBuf>,
}

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fuzz: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false) when some input failed.
fn run(args: &Args) -> Result<bool, String> {
    let alloc_limit = args.alloc_limit_mb.checked_mul(1 << 20).ok_or("--alloc-limit-mb is too large")?;
    if let Some(input) = &args.input {
        let outcome = fuzz::replay(&args.target, input, alloc_limit)?;
        println!("{}: {outcome}", input.display());
        return Ok(!outcome.starts_with("PANIC"));
    }
    if args.target == "seeds" {
        return write_seeds().map(|()| true);
    }
    let targets: Vec<&str> =
        if args.target == "all" { fuzz::TARGETS.to_vec() } else { vec![args.target.as_str()] };
    let mut clean = true;
    for target in targets {
        let options = fuzz::Options {
            execs: args.execs,
            seed: args.seed,
            max_len: args.max_len,
            alloc_limit,
            timeout: Duration::from_secs(args.timeout_s),
            crash_dir: args.crashes.clone(),
            corpus_dir: Some(corpus_dir(target)),
            corpus_out: args.corpus_out.clone(),
        };
        let report = fuzz::run(target, &options)?;
        let secs = report.elapsed.as_secs_f64();
        println!(
            "{:<12} {} execs in {:.1} s ({:.0}/s), {} outcome kinds, corpus {}, {} failures",
            report.target,
            report.execs,
            secs,
            report.execs as f64 / secs.max(1e-9),
            report.kinds,
            report.corpus,
            report.failures.len()
        );
        clean &= report.failures.is_empty();
    }
    Ok(clean)
}

/// Writes every target's built-in seeds to `crates/fuzz/corpus/<target>/seed-N.bin`.
fn write_seeds() -> Result<(), String> {
    for target in fuzz::TARGETS {
        let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
        let seeds = fuzz::targets::open(target, scratch.path())?.seeds();
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for (i, seed) in seeds.iter().enumerate() {
            let path = dir.join(format!("seed-{i}.bin"));
            fsio::write_atomic(&path, seed).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("{} ({} bytes)", path.display(), seed.len());
        }
    }
    Ok(())
}
