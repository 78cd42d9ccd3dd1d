//! `sample --checkpoint PATH [--prompt TEXT | --prompt-file FILE] [...]`: generates text
//! from a checkpoint (streamed as it is chosen), shows the most likely next tokens at each
//! step (`--top N`), or scores a text (`--score`). The checkpoint carries its config and
//! tokenizer, so nothing else is needed.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use data::Tokenizer;
use model::budget::{format_bytes, MemoryLimit};
use model::sampling::{generate_batch, sample_next, sample_streams, top_n, Decoder, SamplingParams};
use model::Dtype;
use sample::{
    decode, encode_text, format_top_table, show_token, start_token, token_bytes, ScoreSummary, Utf8Stream,
};
use tensor::Rng;

/// Generate text from a Quill checkpoint, show next-token probabilities, or score a text.
///
/// An empty prompt starts from a newline token (or token 0 when the vocabulary has no
/// newline). Texts longer than the model's block_size keep going with a sliding window.
#[derive(Parser, Debug)]
#[command(name = "sample")]
struct Args {
    /// A checkpoint file, a run folder (its best.ckpt, else latest.ckpt), or a Hugging Face
    /// GPT-2 folder (config.json, model.safetensors, tokenizer files), imported on the fly.
    #[arg(long)]
    checkpoint: PathBuf,
    /// The text to continue.
    #[arg(long, conflicts_with = "prompt_file")]
    prompt: Option<String>,
    /// Read the text to continue from a file.
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// How many tokens to generate per sample.
    #[arg(long, default_value_t = 500)]
    max_new_tokens: usize,
    /// 0 is greedy; 1 samples the model's own distribution; lower is more conservative.
    #[arg(long, default_value_t = 0.8, allow_negative_numbers = true)]
    temperature: f32,
    /// Sample only among the K most likely tokens.
    #[arg(long, allow_negative_numbers = true)]
    top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probabilities add up to P (nucleus).
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 1337)]
    seed: u64,
    /// How many independent samples to generate: decoded together as one batch (each
    /// sample's text is the one it would be alone), printed when all are done.
    #[arg(long, default_value_t = 1)]
    num_samples: usize,
    /// The weights' number format: bf16 (half the bytes: faster once the weights do not
    /// fit in the CPU's cache; products still sum in f32), or f32 (the trained weights
    /// exactly).
    #[arg(long, default_value = "bf16", value_parser = ["f32", "bf16"])]
    dtype: String,
    /// At each step, show the N most likely next tokens and their probabilities (with
    /// --max-new-tokens 0, only for the token after the prompt).
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// Print each token's log-probability, the perplexity and bits per byte of this text
    /// (after the prompt, if one is given) instead of generating.
    #[arg(long, value_name = "TEXT", conflicts_with = "score_file")]
    score: Option<String>,
    /// Like --score, reading the text from a file.
    #[arg(long, value_name = "FILE")]
    score_file: Option<PathBuf>,
    /// Drop prompt characters the tokenizer does not know instead of refusing the prompt.
    #[arg(long)]
    drop_unknown: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`sample ... | head`): not an error of ours.
        Err(e) if e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the {what} file", path.display()))
}

fn run(args: &Args) -> Result<()> {
    let params = SamplingParams { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p };
    params.validate().map_err(anyhow::Error::msg)?;
    if args.top == Some(0) {
        bail!("--top must be at least 1 (the number of candidates to show), got 0");
    }
    if args.num_samples == 0 {
        bail!("--num-samples must be at least 1, got 0");
    }
    let prompt = match (&args.prompt, &args.prompt_file) {
        (Some(text), _) => text.clone(),
        (None, Some(path)) => read_text(path, "prompt")?,
        (None, None) => String::new(),
    };
    let score_text = match (&args.score, &args.score_file) {
        (Some(text), _) => Some(text.clone()),
        (None, Some(path)) => Some(read_text(path, "score")?),
        (None, None) => None,
    };

    let mut loaded = sample::load(&args.checkpoint)?;
    loaded.gpt.set_sampling_dtype(if args.dtype == "bf16" { Dtype::Bf16 } else { Dtype::F32 });
    let (gpt, tokenizer) = (&loaded.gpt, loaded.tokenizer.as_ref());
    eprintln!(
        "{}: step {}, {} layers × {} wide, block {}, {} tokenizer of {} tokens",
        loaded.path.display(),
        loaded.step,
        gpt.config.n_layer,
        gpt.config.n_embd,
        gpt.config.block_size,
        tokenizer.kind(),
        tokenizer.vocab_size()
    );

    let (prompt_ids, dropped) = encode_text(tokenizer, &prompt, "prompt", args.drop_unknown)?;
    report_dropped("prompt", &dropped);
    let context = if prompt_ids.is_empty() { vec![start_token(tokenizer)] } else { prompt_ids.clone() };

    // Not locked: generation runs on a worker thread of rayon's pool, which a lock
    // (tied to this thread) could not be handed to.
    let mut out = io::stdout();
    if let Some(text) = score_text {
        return score(&mut out, gpt, tokenizer, &context, &text, args.drop_unknown);
    }
    let mut rng = Rng::seeded(args.seed);
    if args.top.is_none() && args.num_samples > 1 {
        check_batch_memory(&gpt.config, args.num_samples, args.max_new_tokens)?;
        return generate_batched(&mut out, gpt, tokenizer, &context, &prompt_ids, args, &params, &rng);
    }
    for i in 0..args.num_samples {
        if i > 0 {
            writeln!(out, "---------------")?;
        }
        match args.top {
            Some(n) => {
                generate_with_tables(&mut out, gpt, tokenizer, &context, &prompt_ids, args, n, &mut rng)?
            }
            None => {
                generate_streaming(&mut out, gpt, tokenizer, &context, &prompt_ids, args, &params, &mut rng)?
            }
        }
    }
    Ok(())
}

fn report_dropped(what: &str, dropped: &[char]) {
    if !dropped.is_empty() {
        let shown: Vec<String> = dropped.iter().map(|c| format!("{c:?}")).collect();
        eprintln!("dropped from the {what}, unknown to the tokenizer: {}", shown.join(" "));
    }
}

/// Prints the prompt, then each new token's text as soon as it is complete.
#[allow(clippy::too_many_arguments)]
fn generate_streaming(
    out: &mut (impl Write + Send),
    gpt: &model::Gpt,
    tokenizer: &dyn Tokenizer,
    context: &[u32],
    prompt_ids: &[u32],
    args: &Args,
    params: &SamplingParams,
    rng: &mut Rng,
) -> Result<()> {
    let mut stream = Utf8Stream::new();
    let mut write_error = None;
    let prompt_bytes: Vec<u8> = prompt_ids.iter().flat_map(|&id| token_bytes(tokenizer, id)).collect();
    write!(out, "{}", stream.push(&prompt_bytes))?;
    out.flush()?;
    // Streamed: nothing is kept per token, so any --max-new-tokens runs in bounded memory.
    let (max_new_tokens, allowed) = (args.max_new_tokens as u64, tokenizer.vocab_size());
    model::sampling::stream(gpt, context, max_new_tokens, allowed, params, rng, &mut |token| {
        // A closed output (`sample ... | head`) stops the generation.
        let text = stream.push(&token_bytes(tokenizer, token));
        match write!(out, "{text}").and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                write_error = Some(e);
                false
            }
        }
    });
    if let Some(e) = write_error {
        return Err(e.into());
    }
    writeln!(out, "{}", stream.finish())?;
    Ok(())
}

/// The samples decoded as one batch, each from the random stream it would start from when
/// generated after the ones before it (so the same texts as one at a time), printed in
/// order once all are done.
#[allow(clippy::too_many_arguments)]
fn generate_batched(
    out: &mut impl Write,
    gpt: &model::Gpt,
    tokenizer: &dyn Tokenizer,
    context: &[u32],
    prompt_ids: &[u32],
    args: &Args,
    params: &SamplingParams,
    rng: &Rng,
) -> Result<()> {
    let mut rngs = sample_streams(rng, args.num_samples, args.max_new_tokens, params);
    let texts = generate_batch(gpt, context, args.max_new_tokens, params, &mut rngs, &mut |_, _| {});
    let prompt_bytes: Vec<u8> = prompt_ids.iter().flat_map(|&id| token_bytes(tokenizer, id)).collect();
    for (i, text) in texts.iter().enumerate() {
        if i > 0 {
            writeln!(out, "---------------")?;
        }
        let mut stream = Utf8Stream::new();
        write!(out, "{}", stream.push(&prompt_bytes))?;
        for &token in text {
            write!(out, "{}", stream.push(&token_bytes(tokenizer, token)))?;
        }
        writeln!(out, "{}", stream.finish())?;
    }
    Ok(())
}

/// Refuses, before anything is allocated, a batch whose KV caches and kept tokens do not
/// fit in memory: a batch keeps one KV cache per sample and every sample's tokens until
/// all are printed (one sample at a time streams in bounded memory instead).
fn check_batch_memory(config: &model::GptConfig, num_samples: usize, max_new_tokens: usize) -> Result<()> {
    let per_sample = config
        .checked_sampling_bytes()
        .ok()
        .and_then(|cache| (max_new_tokens as u64).checked_mul(4)?.checked_add(cache));
    let needed = config
        .checked_num_params()
        .ok()
        .and_then(|params| params.checked_mul(4)?.checked_add(per_sample?.checked_mul(num_samples as u64)?));
    let limit = match needed {
        Some(needed) => {
            MemoryLimit::exceeded_by(needed)?.map(|limit| (format_bytes(needed), limit.describe()))
        }
        None => Some(("more than 2^64 bytes".to_string(), "no machine has that".to_string())),
    };
    if let Some((needed, limit)) = limit {
        bail!(
            "--num-samples {num_samples} with --max-new-tokens {max_new_tokens} needs {needed} (a KV cache per sample, and every sample's tokens kept until all are printed); {limit}; lower --num-samples or --max-new-tokens (--num-samples 1 streams any length in bounded memory), or raise the limit with QUILL_MAX_MEMORY=GB"
        );
    }
    Ok(())
}

/// The last `n` characters of `text`, shown with visible whitespace.
fn tail(text: &str, n: usize) -> String {
    let skip = text.chars().count().saturating_sub(n);
    let cut: String = text.chars().skip(skip).collect();
    format!("{}{}", if skip > 0 { "…" } else { "" }, show_token(cut.as_bytes()))
}

/// At each step, the table of the `n` most likely next tokens, then the token chosen;
/// the whole text at the end.
#[allow(clippy::too_many_arguments)]
fn generate_with_tables(
    out: &mut impl Write,
    gpt: &model::Gpt,
    tokenizer: &dyn Tokenizer,
    context: &[u32],
    prompt_ids: &[u32],
    args: &Args,
    n: usize,
    rng: &mut Rng,
) -> Result<()> {
    let params = SamplingParams { temperature: args.temperature, top_k: args.top_k, top_p: args.top_p };
    let mut decoder = Decoder::new(gpt, context);
    let mut text_ids = prompt_ids.to_vec();
    let steps = args.max_new_tokens.max(1);
    let temperature_note = if args.temperature > 0.0 && args.temperature != 1.0 {
        format!(" (probabilities at temperature {})", args.temperature)
    } else {
        String::new()
    };
    // Ids past the tokenizer's vocabulary (a padded model's) have no text: never shown or chosen.
    let allowed = tokenizer.vocab_size().min(gpt.config.vocab_size);
    for step in 0..steps {
        let logits = &decoder.logits()[..allowed];
        let rows = top_n(logits, args.temperature, n);
        // The last 40 characters come from at most the last 40 tokens.
        let recent = &text_ids[text_ids.len().saturating_sub(40)..];
        writeln!(out, "after \"{}\"{temperature_note}:", tail(&decode(tokenizer, recent), 40))?;
        write!(out, "{}", format_top_table(&rows, tokenizer))?;
        if args.max_new_tokens == 0 {
            return Ok(());
        }
        let token = sample_next(logits, &params, rng);
        writeln!(out, "  chose {}\n", show_token(&token_bytes(tokenizer, token)))?;
        text_ids.push(token);
        if step + 1 < steps {
            decoder.push(token);
        }
    }
    writeln!(out, "{}", decode(tokenizer, &text_ids))?;
    Ok(())
}

/// Each token's log-probability, then perplexity and bits per byte.
fn score(
    out: &mut impl Write,
    gpt: &model::Gpt,
    tokenizer: &dyn Tokenizer,
    context: &[u32],
    text: &str,
    drop_unknown: bool,
) -> Result<()> {
    let (ids, dropped) = encode_text(tokenizer, text, "text to score", drop_unknown)?;
    report_dropped("text to score", &dropped);
    if ids.is_empty() {
        bail!("the text to score is empty; pass some text to --score or --score-file");
    }
    let log_probs = sample::score(gpt, context, &ids);
    let shown: Vec<String> = ids.iter().map(|&id| show_token(&token_bytes(tokenizer, id))).collect();
    let width = shown.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(5);
    writeln!(out, "  {:>6}  {:<width$}  {:>9}  {:>12}", "#", "token", "log p", "probability")?;
    for (i, (token, lp)) in shown.iter().zip(&log_probs).enumerate() {
        let padded = format!("{token}{}", " ".repeat(width - token.chars().count()));
        writeln!(out, "  {:>6}  {padded}  {lp:>9.4}  {:>11.2}%", i + 1, 100.0 * lp.exp())?;
    }
    let summary = ScoreSummary {
        tokens: ids.len(),
        bytes: ids.iter().map(|&id| token_bytes(tokenizer, id).len()).sum(),
        total_log_prob: log_probs.iter().sum(),
    };
    writeln!(
        out,
        "{} tokens, {} bytes: mean log p {:.4} nats, perplexity {:.3}, {:.4} bits per byte",
        summary.tokens,
        summary.bytes,
        summary.total_log_prob / summary.tokens as f64,
        summary.perplexity(),
        summary.bits_per_byte()
    )?;
    Ok(())
}
