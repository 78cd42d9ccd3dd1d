//! The config file: parsing, `--set` overrides, and one clear sentence per bad config.

use train::config::Config;
use train::TrainError;

const GOOD: &str = r#"
[model]
n_layer = 2
n_head = 2
n_embd = 16
block_size = 8

[optim]
learning_rate = 1e-3
min_lr = 1e-4

[train]
max_iters = 100
"#;

fn message(result: Result<Config, TrainError>) -> String {
    match result {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn parses_and_fills_defaults() {
    let c = Config::parse(GOOD, "x.toml", &[]).expect("valid config");
    assert_eq!(c.model.n_layer, 2);
    assert_eq!(c.train.max_iters, 100);
    assert_eq!(c.train.batch_size, 12, "default");
    assert_eq!(c.optim.beta1, 0.9, "default");
    c.validate("x.toml").expect("valid");
}

#[test]
fn set_overrides_any_field() {
    let sets = [
        "train.max_iters=50".to_string(),
        "optim.learning_rate=3e-4".to_string(),
        "data.dataset=datasets/x".to_string(),
        "data.tokenizer=\"bpe\"".to_string(),
        "data.vocab_size=512".to_string(),
        "model.bias=true".to_string(),
    ];
    let c = Config::parse(GOOD, "x.toml", &sets).expect("valid overrides");
    assert_eq!(c.train.max_iters, 50);
    assert_eq!(c.optim.learning_rate, 3e-4);
    assert_eq!(c.data.dataset.to_str(), Some("datasets/x"));
    assert_eq!(c.data.tokenizer, "bpe");
    assert_eq!(c.data.vocab_size, Some(512));
    assert!(c.model.bias);
}

#[test]
fn resolved_config_round_trips() {
    let c = Config::parse(GOOD, "x.toml", &["train.name=\"abc\"".into()]).expect("valid");
    let again = Config::parse(&c.to_toml(), "config.toml", &[]).expect("resolved config parses");
    assert_eq!(c, again);
}

#[test]
fn input_may_be_one_file_or_a_list() {
    let one = Config::parse("[data]\ninput = \"a.txt\"\n", "x.toml", &[]).expect("one");
    assert_eq!(one.data.input.len(), 1);
    let two = Config::parse("[data]\ninput = [\"a.txt\", \"b.txt\"]\n", "x.toml", &[]).expect("two");
    assert_eq!(two.data.input.len(), 2);
}

#[test]
fn unknown_field_names_file_line_section_and_choices() {
    let text = GOOD.replace("min_lr = 1e-4", "lerning_rate = 1e-4");
    let m = message(Config::parse(&text, "configs/x.toml", &[]));
    assert!(
        m.starts_with("configs/x.toml: line 10: unknown field `lerning_rate` in [optim]; expected"),
        "{m}"
    );
    assert!(m.contains("learning_rate"), "{m}");
}

#[test]
fn duplicate_key_and_unknown_section_are_named() {
    let text = GOOD.replace("n_head = 2", "n_head = 2\nn_head = 4");
    let m = message(Config::parse(&text, "configs/x.toml", &[]));
    assert!(m.starts_with("configs/x.toml: line 5: [model] n_head: duplicate key"), "{m}");
    let text = format!("{GOOD}\n[trainer]\nsteps = 5\n");
    let m = message(Config::parse(&text, "configs/x.toml", &[]));
    assert!(
        m.contains("unknown section [trainer]; expected one of `model`, `data`, `optim`, `train`"),
        "{m}"
    );
}

#[test]
fn unknown_override_is_refused() {
    let m = message(Config::parse(GOOD, "x.toml", &["optim.lerning_rate=1".into()]));
    assert!(m.contains("unknown field `lerning_rate` in [optim]"), "{m}");
    let m = message(Config::parse(GOOD, "x.toml", &["max_iters=1".into()]));
    assert!(m.contains("section.key=value"), "{m}");
}

#[test]
fn wrong_type_names_line_and_field() {
    let text = GOOD.replace("max_iters = 100", "max_iters = \"many\"");
    let m = message(Config::parse(&text, "configs/x.toml", &[]));
    assert!(m.starts_with("configs/x.toml: line 13: [train] max_iters: invalid type"), "{m}");
    let m = message(Config::parse(GOOD, "x.toml", &["train.max_iters=\"lots\"".into()]));
    assert!(m.contains("--set train.max_iters") && m.contains("invalid type"), "{m}");
}

fn invalid(sets: &[&str]) -> String {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    let c = Config::parse(GOOD, "configs/x.toml", &sets).expect("parses");
    match c.validate("configs/x.toml") {
        Ok(()) => panic!("expected {sets:?} to be invalid"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn negative_learning_rate_is_refused() {
    let m = invalid(&["optim.learning_rate=-1e-3", "optim.min_lr=-1e-3"]);
    assert_eq!(m, "configs/x.toml: optim.learning_rate: must be a finite number >= 0, found -0.001");
}

#[test]
fn n_embd_must_divide_by_n_head() {
    let m = invalid(&["model.n_embd=30", "model.n_head=4"]);
    assert!(m.starts_with("configs/x.toml: model.n_embd: 30 is not divisible by model.n_head = 4"), "{m}");
}

#[test]
fn other_rules() {
    assert!(invalid(&["model.dropout=1.0"]).contains("model.dropout"));
    assert!(invalid(&["optim.beta2=1.0"]).contains("optim.beta2"));
    assert!(invalid(&["train.batch_size=0"]).contains("train.batch_size"));
    assert!(invalid(&["data.tokenizer=\"words\""]).contains("data.tokenizer"));
    assert!(invalid(&["data.tokenizer=\"bpe\""]).contains("data.vocab_size"));
    assert!(invalid(&["optim.min_lr=1.0"]).contains("optim.min_lr"));
    assert!(invalid(&["train.max_iters=0"]).contains("train.max_iters: must be at least 1"));
    assert!(invalid(&["train.threads=5000"]).contains("train.threads: must be at most 1024"));
    assert!(invalid(&["train.name=\"..\""]).contains("train.name"));
    assert!(invalid(&["data.dataset=\"\""]).contains("data.dataset: is empty"));
    assert!(invalid(&["train.out_dir=\"\""]).contains("train.out_dir: is empty"));
    assert!(invalid(&["data.input=\"\""]).contains("data.input: holds an empty path"));
    assert!(invalid(&["data.tokenizer=\"bpe\"", "data.vocab_size=100"]).contains("100 is too small for BPE"));
    assert!(invalid(&["data.vocab_size=50"]).contains("applies only to tokenizer = \"bpe\""));
}

#[test]
fn muon_and_schedule_values_are_checked() {
    let m = invalid(&["optim.muon_momentum=-0.5"]);
    assert_eq!(m, "configs/x.toml: optim.muon_momentum: must be in [0, 1), found -0.5");
    assert!(invalid(&["optim.muon_learning_rate=-1"]).contains("optim.muon_learning_rate: must be a finite"));
    assert!(invalid(&["optim.muon_weight_decay=-1"]).contains("optim.muon_weight_decay: must be >= 0"));
    let m = invalid(&["optim.schedule=\"wsd\""]);
    assert!(
        m.starts_with("configs/x.toml: optim.warmdown_iters: must be at least 1 with schedule = \"wsd\""),
        "{m}"
    );
    let m = invalid(&["optim.schedule=\"wsd\"", "optim.warmdown_iters=150"]);
    assert_eq!(
        m,
        "configs/x.toml: optim.warmdown_iters: 150 is longer than train.max_iters = 100; use fewer steps"
    );
    let m = invalid(&["optim.schedule=\"wsd\"", "optim.warmdown_iters=90", "optim.lr_decay_iters=100"]);
    assert!(m.contains("optim.warmdown_iters: 90 overlaps the warm-up"), "{m}");
}

#[test]
fn unknown_optimizer_or_schedule_is_named() {
    let text = GOOD.replace("min_lr = 1e-4", "min_lr = 1e-4\noptimizer = \"sgd\"");
    let m = message(Config::parse(&text, "configs/x.toml", &[]));
    assert!(m.starts_with("configs/x.toml: line 11: [optim] optimizer: unknown variant `sgd`"), "{m}");
    assert!(m.contains("`adamw`") && m.contains("`muon`"), "{m}");
    let m = message(Config::parse(GOOD, "x.toml", &["optim.schedule=linear".into()]));
    assert!(m.contains("--set optim.schedule=linear") && m.contains("unknown variant `linear`"), "{m}");
    let muon = Config::parse(GOOD, "x.toml", &["optim.optimizer=muon".into(), "optim.schedule=wsd".into()]);
    let o = muon.expect("valid").optim;
    assert_eq!((o.optimizer, o.schedule), (train::config::OptimizerKind::Muon, train::config::Schedule::Wsd));
}

#[test]
fn shipped_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    for name in ["small.toml", "shakespeare.toml", "chinese.toml"] {
        let path = root.join(name);
        let c = Config::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
        c.validate(name).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.train.name, name.trim_end_matches(".toml"));
    }
}

#[test]
fn every_shipped_config_parses_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/ is there") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        let origin = path.display().to_string();
        let config = Config::parse(&text, &origin, &[]).unwrap_or_else(|e| panic!("{origin}: {e}"));
        config.validate(&origin).unwrap_or_else(|e| panic!("{origin}: {e}"));
        seen += 1;
    }
    assert!(seen >= 5, "found {seen} configs");
}

#[test]
fn a_sharded_optimizer_is_refused_with_muon() {
    let m = invalid(&["optim.optimizer=\"muon\"", "train.shard_optimizer=true"]);
    assert!(m.starts_with("configs/x.toml: train.shard_optimizer: shards AdamW's moments only"), "{m}");
}
