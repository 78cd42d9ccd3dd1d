//! The model's architecture options in whole runs: each option alone and all together
//! learn on the tiny corpus; with every option on, resume is exact and the thread count
//! changes no bit; `--set` names them; fine-tuning takes them from the weights.

mod common;

use common::{error_of, run_fresh, straight_and_resumed, tiny_config};
use model::checkpoint::Checkpoint;
use model::{Activation, Arch, Norm, Position};
use train::config::Config;

fn mean(xs: &[f32]) -> f32 {
    xs.iter().sum::<f32>() / xs.len() as f32
}

/// `config` with the architecture `arch`.
fn with_arch(mut config: Config, arch: Arch) -> Config {
    let m = &mut config.model;
    (m.norm, m.activation, m.position, m.qk_norm, m.tie_head) =
        (arch.norm, arch.activation, arch.position, arch.qk_norm, arch.tie_head);
    config
}

#[test]
fn every_option_learns_alone_and_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = [
        ("rmsnorm", Arch { norm: Norm::RmsNorm, ..Arch::GPT2 }),
        ("relu2", Arch { activation: Activation::Relu2, ..Arch::GPT2 }),
        ("rope", Arch { position: Position::Rope, ..Arch::GPT2 }),
        ("qk_norm", Arch { qk_norm: true, ..Arch::GPT2 }),
        ("untied", Arch { tie_head: false, ..Arch::GPT2 }),
        ("all", Arch::ALL),
    ];
    for (name, arch) in options {
        let mut config = with_arch(tiny_config(dir.path()), arch);
        config.train.name = name.into();
        let summary = run_fresh(&config).expect("the run finishes");
        let (first, last) = (mean(&summary.losses[..5]), mean(&summary.losses[35..]));
        assert!(last < first - 0.8, "{name}: loss fell from {first} to only {last}");
        let ckpt = Checkpoint::load(&summary.run_dir.join("latest.ckpt")).expect("checkpoint");
        assert_eq!(ckpt.model.arch, arch, "{name}: the checkpoint carries the options");
        let resolved = Config::load(&summary.run_dir.join("config.toml"), &[]).expect("resolved config");
        assert_eq!(resolved, config, "{name}: config.toml records the options");
    }
}

#[test]
fn resume_is_bit_identical_with_every_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = with_arch(tiny_config(dir.path()), Arch::ALL);
    config.model.dropout = 0.1;
    config.train.eval_interval = 5;
    straight_and_resumed(&config, 10);
}

#[test]
fn thread_count_does_not_change_the_losses_with_every_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = with_arch(tiny_config(dir.path()), Arch::ALL);
    config.train.max_iters = 6;
    let run_on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
        pool.install(|| run_fresh(&config).expect("runs").losses)
    };
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(run_on(1)), bits(run_on(3)), "1 and 3 threads give different losses");
}

#[test]
fn set_names_the_options_and_an_odd_head_size_for_rope_is_refused() {
    let sets: Vec<String> = ["model.norm=rmsnorm", "model.activation=relu2", "model.position=rope"]
        .into_iter()
        .chain(["model.qk_norm=true", "model.tie_head=false"])
        .map(String::from)
        .collect();
    let config = Config::parse("", "x.toml", &sets).expect("the options parse");
    assert_eq!(with_arch(config.clone(), Arch::ALL), config);
    let err = Config::parse("", "x.toml", &["model.norm=batchnorm".into()]).unwrap_err().to_string();
    assert!(err.contains("batchnorm") && err.contains("rmsnorm"), "{err}");

    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = with_arch(tiny_config(dir.path()), Arch::ALL);
    config.model.n_embd = 30; // 2 heads of 15
    let msg = error_of(run_fresh(&config));
    assert!(msg.contains("model.position = \"rope\" needs an even head size"), "{msg}");
}

#[test]
fn fine_tuning_takes_the_options_from_the_weights_and_refuses_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = with_arch(tiny_config(dir.path()), Arch::ALL);
    config.train.max_iters = 4;
    config.train.name = "base".into();
    let base = run_fresh(&config).expect("base run");

    let mut tune = tiny_config(dir.path());
    tune.train.max_iters = 2;
    tune.train.name = "tune".into();
    tune.model.init_from = Some(base.run_dir.clone());
    let tuned = run_fresh(&tune).expect("fine-tuning run");
    let ckpt = Checkpoint::load(&tuned.run_dir.join("latest.ckpt")).expect("checkpoint");
    assert_eq!(ckpt.model.arch, Arch::ALL, "the options come from the weights");

    let text = format!("[model]\ninit_from = {:?}\nnorm = \"layernorm\"\n", base.run_dir);
    let mut refused = Config::parse(&text, "tune.toml", &[]).expect("config");
    refused.data = tune.data.clone();
    refused.train = tune.train.clone();
    refused.train.name = "refused".into();
    let msg = error_of(run_fresh(&refused));
    assert!(msg.contains("norm") && msg.contains("layernorm") && msg.contains("rmsnorm"), "{msg}");
}
