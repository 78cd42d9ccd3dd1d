//! `ngram`: counted n-gram models of a text or a prepared dataset, at the level of
//! characters, words or the dataset's tokens.
//!
//! ```text
//! ngram generate --text FILE [--level word] [--max-n 7] [--temperature 1] [--seed 1337]
//! ngram top      --text FILE --context "ROMEO" [-n 4] [--smoothed]
//! ngram score    --text FILE [--max-n 7]          bits per byte of the val split, n = 1..N
//! ngram ladder   --dataset DIR [--max-n 7] [CHECKPOINT...]
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use ngram::{
    checkpoint_score, format_ladder, format_next_table, generate, next_table, score, Corpus, LadderRow,
    Level, NgramCounts, Source, Split, MAX_ORDER,
};
use tensor::Rng;

/// Most tokens `generate --length` asks of one model.
const MAX_LENGTH: usize = 1_000_000;

#[derive(Parser)]
#[command(about = "Counted n-gram models: generated text, next-token tables, Kneser-Ney bits per byte")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Text from each n-gram model, n = 1..N, one after the other.
    Generate(GenerateArgs),
    /// The most likely next tokens after a context (as `sample --top`).
    Top(TopArgs),
    /// Bits per byte and perplexity of the val split for n = 1..N (interpolated modified Kneser-Ney).
    Score(CorpusArgs),
    /// The ladder: the 1..N-gram models and trained checkpoints on the val split.
    Ladder(LadderArgs),
}

#[derive(Args)]
struct CorpusArgs {
    /// A UTF-8 text file (split into train and val as `prepare` splits it).
    #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
    text: Option<PathBuf>,
    /// A folder written by `prepare` (tokenizer.bin, train.bin, val.bin).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// What one token is [default: char for --text, token for --dataset].
    #[arg(long, value_enum)]
    level: Option<Level>,
    /// Count n-grams for n = 1..max_n (at most 32).
    #[arg(long, default_value_t = 7, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_ORDER as u64))]
    max_n: usize,
    /// Share of a --text file's characters held out for the val split (its end).
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Only this order (default: every n from 1 to max_n).
    #[arg(short)]
    n: Option<usize>,
    /// Tokens to generate per model (at most 10^6: each model's text is kept until it is printed).
    #[arg(long, default_value_t = 200, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_LENGTH as u64))]
    length: usize,
    /// Sharpens (< 1) or flattens (> 1) the counted probabilities; 0 always takes the most frequent.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// Text to continue (its pieces must occur in the corpus).
    #[arg(long, default_value = "")]
    prompt: String,
}

#[derive(Args)]
struct TopArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// The text the next token follows.
    #[arg(long)]
    context: String,
    /// The model's order (default: max_n).
    #[arg(short)]
    n: Option<usize>,
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Kneser-Ney probabilities instead of counted (maximum-likelihood) ones.
    #[arg(long)]
    smoothed: bool,
}

#[derive(Args)]
struct LadderArgs {
    #[command(flatten)]
    corpus: CorpusArgs,
    /// Trained checkpoints (best.ckpt, latest.ckpt) to score beside the n-gram models.
    checkpoints: Vec<PathBuf>,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(args) => run_generate(args),
        Command::Top(args) => run_top(args),
        Command::Score(args) => run_score(args),
        Command::Ladder(args) => run_ladder(args),
    }
}

/// Opens the corpus and counts the train split's n-grams, saying how long it took.
fn open_and_count(args: &CorpusArgs) -> Result<(Corpus, NgramCounts)> {
    if args.max_n == 0 {
        bail!("--max-n must be at least 1, got 0");
    }
    let start = Instant::now();
    let (source, default_level) = match (&args.text, &args.dataset) {
        (Some(path), _) => {
            (Source::Text { path: path.clone(), val_fraction: args.val_fraction }, Level::Char)
        }
        (None, Some(dir)) => (Source::Dataset { dir: dir.clone() }, Level::Token),
        (None, None) => bail!("name the corpus: --text FILE or --dataset DIR"),
    };
    let corpus = Corpus::open(source, args.level.unwrap_or(default_level))?;
    let mut counts = NgramCounts::new(args.max_n, corpus.vocab().len());
    let mut tokens = 0u64;
    corpus.for_each_token(Split::Train, &mut |token| {
        counts.push(token);
        tokens += 1;
    })?;
    counts.finish();
    if tokens == 0 {
        bail!("{}: the train split is empty; use more text", corpus.origin());
    }
    eprintln!(
        "{}: {tokens} train tokens, vocabulary {}, {} distinct n-grams (n = 1..{}), counted in {:.1}s",
        corpus.origin(),
        corpus.vocab().len(),
        counts.distinct(),
        args.max_n,
        start.elapsed().as_secs_f64()
    );
    Ok((corpus, counts))
}

/// The model orders a command asks for: `n` alone, or 1..=max_n.
fn orders(n: Option<usize>, max_n: usize) -> Result<Vec<usize>> {
    match n {
        Some(n) if n == 0 || n > max_n => bail!("-n must be between 1 and --max-n = {max_n}, got {n}"),
        Some(n) => Ok(vec![n]),
        None => Ok((1..=max_n).collect()),
    }
}

fn text_of(corpus: &Corpus, tokens: &[u32]) -> String {
    let bytes: Vec<u8> = tokens.iter().flat_map(|&t| corpus.vocab().bytes(t).to_vec()).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn run_generate(args: GenerateArgs) -> Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!("--temperature must be a finite number ≥ 0, got {}", args.temperature);
    }
    let orders = orders(args.n, args.corpus.max_n)?;
    let (corpus, counts) = open_and_count(&args.corpus)?;
    let prompt = corpus.encode(&args.prompt)?;
    let mut out = std::io::stdout().lock();
    for n in orders {
        // Each model draws from its own generator with the same seed, so one model's text
        // does not depend on which others were asked for.
        let mut rng = Rng::seeded(args.seed);
        let tokens = generate(&counts, &prompt, n, args.length, args.temperature, &mut rng);
        writeln!(out, "--- {n}-gram ---")?;
        writeln!(out, "{}{}", args.prompt, text_of(&corpus, &tokens))?;
    }
    Ok(())
}

fn run_top(args: TopArgs) -> Result<()> {
    if args.top == 0 {
        bail!("--top must be at least 1 (the number of candidates to show), got 0");
    }
    let n = orders(args.n.or(Some(args.corpus.max_n)), args.corpus.max_n)?[0];
    let (corpus, counts) = open_and_count(&args.corpus)?;
    let context = corpus.encode(&args.context)?;
    let (used, rows) = next_table(&counts, &context, n, args.smoothed, args.top);
    let used_text = text_of(&corpus, &context[context.len() - used..]);
    let kind = if args.smoothed { "Kneser-Ney" } else { "counted" };
    let followed = if args.smoothed {
        String::new()
    } else {
        format!(", seen {} times", counts.context(&context[context.len() - used..]).total)
    };
    println!("after \"{}\" ({n}-gram, {kind} probabilities from the last {used} tokens \"{used_text}\"{followed}):", args.context);
    print!("{}", format_next_table(&rows, &|id| corpus.vocab().bytes(id).to_vec()));
    Ok(())
}

fn ngram_rows(corpus: &Corpus, counts: &NgramCounts) -> Result<Vec<LadderRow>> {
    let start = Instant::now();
    let scores = score(counts, corpus, Split::Val)?;
    let first = &scores[0];
    eprintln!(
        "val split: {} tokens, {} bytes, scored in {:.1}s",
        first.tokens,
        first.bytes,
        start.elapsed().as_secs_f64()
    );
    Ok(scores.iter().map(LadderRow::from).collect())
}

fn run_score(args: CorpusArgs) -> Result<()> {
    let (corpus, counts) = open_and_count(&args)?;
    print!("{}", format_ladder(&ngram_rows(&corpus, &counts)?));
    Ok(())
}

fn run_ladder(args: LadderArgs) -> Result<()> {
    let (corpus, counts) = open_and_count(&args.corpus)?;
    let mut rows = ngram_rows(&corpus, &counts)?;
    for path in &args.checkpoints {
        rows.push(checkpoint_score(path, &corpus)?);
    }
    print!("{}", format_ladder(&rows));
    Ok(())
}
