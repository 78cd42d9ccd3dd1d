//! `convert --from-hf DIR --out model.ckpt`: a Hugging Face GPT-2 folder to a Quill
//! checkpoint. `convert --to-hf CKPT --out DIR`: a Quill checkpoint to a folder that
//! `transformers.GPT2LMHeadModel.from_pretrained(DIR)` loads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{ArgGroup, Parser};

/// Convert GPT-2 weights between Hugging Face folders and Quill checkpoints.
#[derive(Parser, Debug)]
#[command(name = "convert", group(ArgGroup::new("direction").required(true).args(["from_hf", "to_hf"])))]
struct Args {
    /// A Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer files) to import.
    #[arg(long, value_name = "DIR")]
    from_hf: Option<PathBuf>,
    /// A Quill checkpoint (.ckpt) to export as a Hugging Face folder.
    #[arg(long, value_name = "CKPT")]
    to_hf: Option<PathBuf>,
    /// Where to write: the checkpoint file (--from-hf) or the folder (--to-hf).
    #[arg(long)]
    out: PathBuf,
    /// Replace files that already exist.
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let start = Instant::now();
    if let Some(dir) = &args.from_hf {
        // The checkpoint must not replace a file of the folder it is read from.
        let inputs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        if let Some((output, input)) = fsio::output_among_inputs(std::slice::from_ref(&args.out), &inputs) {
            let (output, input) = (output.to_path_buf(), input.to_path_buf());
            return Err(convert::ConvertError::OutputIsInput { output, input }.into());
        }
        if args.out.exists() && !args.force {
            bail!("{} already exists; pass --force to replace it", args.out.display());
        }
        let ckpt = convert::from_hf(dir)?;
        let m = &ckpt.model;
        let read = start.elapsed();
        ckpt.save(&args.out)?;
        println!(
            "{}: {} layers × {} wide, {} heads, context {}, vocabulary {}: {:.2}M parameters read in {:.2} s → {}",
            dir.display(),
            m.n_layer,
            m.n_embd,
            m.n_head,
            m.block_size,
            m.vocab_size,
            m.num_params() as f64 / 1e6,
            read.as_secs_f64(),
            args.out.display()
        );
    } else if let Some(ckpt) = &args.to_hf {
        let files = convert::to_hf(ckpt, &args.out, args.force)?;
        let names: Vec<String> =
            files.iter().filter_map(|f| f.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
        println!(
            "{} → {}: {} ({:.2} s)",
            ckpt.display(),
            args.out.display(),
            names.join(", "),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
