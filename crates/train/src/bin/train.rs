//! `train --config configs/small.toml [--set section.key=value ...] [--resume runs/NAME]`
//! or `train --evaluate runs/NAME`: parses the command line and hands over to
//! [`train::run`] or [`train::evaluate_run`]. Built with `--features mpi` and started by
//! `mpirun -np N` (or `srun`), its N processes train one run together ([`train::run_with`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use train::{Config, RunOptions, Splits, Start, Verbosity, World};

/// Train a GPT from a TOML config, resume a stopped run exactly, or score a run's model on
/// whole splits.
#[derive(Parser, Debug)]
#[command(name = "train", version)]
struct Args {
    /// The run configuration.
    #[arg(long, default_value = "configs/small.toml", conflicts_with_all = ["resume", "evaluate"])]
    config: PathBuf,
    /// Override one config field: --set train.max_iters=50 (repeatable). When resuming,
    /// only train.max_iters (to extend the run).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    set: Vec<String>,
    /// Continue the run in this folder from its latest.ckpt.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "evaluate")]
    resume: Option<PathBuf>,
    /// Instead of training: the loss of this run's best.ckpt (or of the run's checkpoint
    /// given, runs/NAME/latest.ckpt) over every window of a split (no sampling noise), then
    /// exit.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "set")]
    evaluate: Option<PathBuf>,
    /// The split(s) --evaluate scores [default: val].
    #[arg(long, value_enum)]
    split: Option<Splits>,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
    /// The memory, in GB, a run may plan for [default: what the machine has available]; a
    /// run that needs more is refused before it starts (also QUILL_MAX_MEMORY=GB).
    #[arg(long, value_name = "GB")]
    max_memory: Option<f64>,
}

fn main() -> ExitCode {
    // Under mpirun or srun (built with --features mpi), this process is one rank of a job.
    let world = World::from_launcher();
    let args = Args::parse();
    if let Some(gb) = args.max_memory {
        // One setting for the whole program, read where sizes are checked; set before any
        // thread starts.
        std::env::set_var(model::budget::MAX_MEMORY_VAR, gb.to_string());
    }
    let verbosity = if args.quiet { Verbosity::Quiet } else { Verbosity::Normal };
    if world.size() > 1 && (args.evaluate.is_some() || args.split.is_some()) {
        return fail_job(&world, "--evaluate runs in one process: start it without mpirun");
    }
    if let Some(run_dir) = &args.evaluate {
        return match train::evaluate_run(run_dir, args.split.unwrap_or(Splits::Val), verbosity) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    if args.split.is_some() {
        eprintln!(
            "error: --split chooses what --evaluate RUN_DIR scores; add --evaluate, or drop --split to train"
        );
        return ExitCode::FAILURE;
    }
    let start = match args.resume {
        Some(run_dir) => Start::Resume { run_dir, overrides: args.set },
        None => match Config::load(&args.config, &args.set) {
            Ok(config) => {
                // Errors name where a value came from: the file, or the file and the overrides.
                let origin = match args.set.is_empty() {
                    true => args.config.display().to_string(),
                    false => format!("{} with --set {}", args.config.display(), args.set.join(" --set ")),
                };
                Start::Fresh { config: Box::new(config), origin }
            }
            Err(e) => return fail_job(&world, &e.to_string()),
        },
    };
    match train::run_with(&RunOptions { start, verbosity, handle_ctrl_c: true }, &world) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail_job(&world, &e.to_string()),
    }
}

/// Prints the error and fails; on several ranks, ends the whole job (the other ranks may
/// be waiting for this one), naming the rank.
fn fail_job(world: &World, message: &str) -> ExitCode {
    if world.size() == 1 {
        eprintln!("error: {message}");
        return ExitCode::FAILURE;
    }
    if !world.is_root() {
        // An error every rank meets (a config, a dataset) is printed once, by rank 0, whose
        // abort ends this rank while it waits.
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
    eprintln!("error (rank {} of {}): {message}", world.rank(), world.size());
    world.abort(1)
}

/// Prints the error (its message already names the file, field or step) and fails.
fn fail(e: &train::TrainError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}
