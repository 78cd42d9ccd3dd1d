//! `train --config configs/small.toml [--set section.key=value ...] [--resume runs/NAME]`:
//! parses the command line and hands over to [`train::run`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use train::{Config, RunOptions, Start, Verbosity};

/// Train a GPT from a TOML config; resume a stopped run exactly.
#[derive(Parser, Debug)]
#[command(name = "train", version)]
struct Args {
    /// The run configuration.
    #[arg(long, default_value = "configs/small.toml", conflicts_with = "resume")]
    config: PathBuf,
    /// Override one config field: --set train.max_iters=50 (repeatable). When resuming,
    /// only train.max_iters (to extend the run).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    /// Continue the run in this folder from its latest.ckpt.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let start = match args.resume {
        Some(run_dir) => Start::Resume { run_dir, overrides: args.set },
        None => match Config::load(&args.config, &args.set) {
            Ok(config) => {
                Start::Fresh { config: Box::new(config), origin: args.config.display().to_string() }
            }
            Err(e) => return fail(&e),
        },
    };
    let verbosity = if args.quiet { Verbosity::Quiet } else { Verbosity::Normal };
    match train::run(&RunOptions { start, verbosity, handle_ctrl_c: true }) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Prints the error (its message already names the file, field or step) and fails.
fn fail(e: &train::TrainError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
