//! `draw`: pictures of the essay's experiments as SVG files.
//!
//! ```text
//! draw letters      --text FILE | --dataset DIR [--letters] [--top 40]   --out letters.svg
//! draw bigrams      --text FILE | --dataset DIR [--letters] [--top 27]   --out bigrams.svg
//! draw next         --checkpoint CKPT --prompt TEXT [--top 10]           --out next.svg
//! draw attention    --checkpoint CKPT --prompt TEXT                      --out attention.svg
//! draw embeddings   --checkpoint CKPT [--tokens TEXT]                    --out embeddings.svg
//! draw trajectory   --checkpoint CKPT --prompt TEXT                      --out trajectory.svg
//! draw architecture --checkpoint CKPT                                    --out architecture.svg
//! ```

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};
use draw::corpus_pictures::{bigram_matrix, letter_frequencies, CharCounts};
use draw::model_pictures::{attention_picture, embeddings_picture, next_token_picture, trajectory_picture};
use ngram::{Corpus, Level, Source};

#[derive(Parser)]
#[command(
    about = "Pictures of the essay's experiments as SVG: letters, 2-grams, next tokens, attention, embeddings, architecture"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Character frequencies of a text (bar chart).
    Letters(CorpusArgs),
    /// P(second character | first) for the most frequent characters (heatmap).
    Bigrams(CorpusArgs),
    /// The next-token distribution after a prompt: probability by rank, log-log.
    Next(PromptArgs),
    /// Each layer's and head's attention weights over a prompt (grid of heatmaps).
    Attention(PromptArgs),
    /// Token embeddings projected on their first two principal components.
    Embeddings(EmbeddingArgs),
    /// A prompt's hidden states after each block, projected on two principal components.
    Trajectory(PromptArgs),
    /// The model's architecture with its sizes, from the checkpoint's config.
    Architecture(ModelArgs),
}

impl Command {
    /// The picture's path (--out).
    fn out(&self) -> &std::path::Path {
        match self {
            Command::Letters(args) | Command::Bigrams(args) => &args.out,
            Command::Next(args) | Command::Attention(args) | Command::Trajectory(args) => &args.model.out,
            Command::Embeddings(args) => &args.model.out,
            Command::Architecture(args) => &args.out,
        }
    }
}

#[derive(Args)]
struct CorpusArgs {
    /// A UTF-8 text file (its first 90% is counted, as `prepare` splits it).
    #[arg(long, conflicts_with = "dataset", required_unless_present = "dataset")]
    text: Option<PathBuf>,
    /// A folder written by `prepare` (its train split is counted).
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Count only letters (alphabetic characters, Chinese ones included), lower-cased;
    /// pairs do not cross anything else.
    #[arg(long)]
    letters: bool,
    /// How many of the most frequent characters to show [default: 40 for letters, 27 for bigrams].
    #[arg(long)]
    top: Option<usize>,
    /// The SVG file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct ModelArgs {
    /// A checkpoint file or a run folder (best.ckpt, else latest.ckpt).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The SVG file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct PromptArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The text the model reads (its last block_size tokens); empty: the start token.
    #[arg(long, default_value = "")]
    prompt: String,
    /// How many of the most likely tokens to label (`next` only).
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Args)]
struct EmbeddingArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The tokens to label, as a text (every distinct token in it); empty: every token of
    /// a small vocabulary, else the first 60.
    #[arg(long, default_value = "")]
    tokens: String,
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    // Before any work: the picture never replaces a file that is not an SVG picture
    // (a checkpoint or text given as --out once was).
    plot::check_replaceable(cli.command.out())?;
    let (svg, out) = match cli.command {
        Command::Letters(args) => {
            let (counts, origin) = count(&args)?;
            (letter_frequencies(&counts, args.top.unwrap_or(40), &origin), args.out)
        }
        Command::Bigrams(args) => {
            let (counts, origin) = count(&args)?;
            (bigram_matrix(&counts, args.top.unwrap_or(27), &origin), args.out)
        }
        Command::Next(args) => {
            let loaded = sample::load(&args.model.checkpoint)?;
            (next_token_picture(&loaded, &args.prompt, args.top)?, args.model.out)
        }
        Command::Attention(args) => {
            let loaded = sample::load(&args.model.checkpoint)?;
            (attention_picture(&loaded, &args.prompt)?, args.model.out)
        }
        Command::Embeddings(args) => {
            let loaded = sample::load(&args.model.checkpoint)?;
            (embeddings_picture(&loaded, &args.tokens)?, args.model.out)
        }
        Command::Trajectory(args) => {
            let loaded = sample::load(&args.model.checkpoint)?;
            (trajectory_picture(&loaded, &args.prompt)?, args.model.out)
        }
        Command::Architecture(args) => {
            let loaded = sample::load(&args.checkpoint)?;
            let name = loaded.path.display().to_string();
            (draw::architecture::architecture(&loaded.gpt.config, &name), args.out)
        }
    };
    plot::write_atomic(&out, svg.as_bytes())?;
    println!("wrote {}", out.display());
    Ok(())
}

/// The character counts of the corpus the arguments name, and its name for the title.
fn count(args: &CorpusArgs) -> Result<(CharCounts, String)> {
    if args.top == Some(0) {
        bail!("--top must be at least 1, got 0");
    }
    let source = match (&args.text, &args.dataset) {
        (Some(path), _) => Source::Text { path: path.clone(), val_fraction: 0.1 },
        (None, Some(dir)) => Source::Dataset { dir: dir.clone() },
        (None, None) => bail!("name the corpus: --text FILE or --dataset DIR"),
    };
    let corpus = Corpus::open(source, Level::Char)?;
    let counts = CharCounts::count(&corpus, args.letters)?;
    Ok((counts, short_name(&corpus.origin())))
}

/// The last two parts of a path (`tinyshakespeare/input.txt`), for a title.
fn short_name(path: &str) -> String {
    let parts: Vec<&str> = path.trim_end_matches('/').rsplit('/').take(2).collect();
    parts.into_iter().rev().collect::<Vec<_>>().join("/")
}
