//! Writes the start of a fresh run of a config: its initial weights and the training batches
//! of its first steps, exactly as `train` draws them, so that `scripts/lockstep_pytorch.py`
//! can train PyTorch's model step by step beside Quill's.
//!
//! ```text
//! cargo run --release -p quill-train --example export_start -- configs/small.toml /tmp/start
//! python3 scripts/lockstep_pytorch.py /tmp/start
//! ```
//!
//! OUT/names.txt: one parameter per line, its name and shape; OUT/weights.f32: their values
//! in that order (little-endian f32); OUT/batches.u32: per step, the inputs then the
//! targets (batch_size × block_size each, little-endian u32); OUT/recipe.json: the model
//! and optimizer settings the script needs.

use std::io::Write;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [config, out] = [0, 1].map(|i| args.get(i).map(PathBuf::from));
    let (Some(config_path), Some(out)) = (config, out) else {
        anyhow::bail!("usage: export_start CONFIG.toml OUT_DIR");
    };
    let config = train::Config::load(&config_path, &[])?;
    let origin = config_path.display().to_string();
    config.validate(&origin)?;
    let (m, o, t) = (&config.model, &config.optim, &config.train);
    if m.dropout > 0.0 || t.gradient_accumulation_steps > 1 {
        anyhow::bail!("{origin}: lockstep needs model.dropout = 0 and train.gradient_accumulation_steps = 1");
    }
    let corpus = train::corpus::open_corpus(&config, &origin, false)?;
    let (gpt, mut sampler) = train::fresh_start(&config, &corpus)?;
    std::fs::create_dir_all(&out)?;

    let (mut names, mut weights) = (String::new(), Vec::new());
    for (_, name, value) in gpt.tape.params() {
        let shape: Vec<String> = value.shape.iter().map(|d| d.to_string()).collect();
        names.push_str(&format!("{name} {}\n", shape.join(",")));
        weights.extend(value.data.iter().flat_map(|x| x.to_le_bytes()));
    }
    std::fs::write(out.join("names.txt"), names)?;
    std::fs::write(out.join("weights.f32"), weights)?;

    let mut batches = std::io::BufWriter::new(std::fs::File::create(out.join("batches.u32"))?);
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());
    for _ in 0..t.max_iters {
        sampler.next_batch(&corpus.train, &mut inputs, &mut targets);
        for &id in inputs.iter().chain(&targets) {
            batches.write_all(&id.to_le_bytes())?;
        }
    }
    batches.flush()?;

    let recipe = serde_json::json!({
        "vocab_size": corpus.tokenizer.vocab_size(), "block_size": m.block_size, "n_layer": m.n_layer,
        "n_head": m.n_head, "n_embd": m.n_embd, "bias": m.bias, "batch_size": t.batch_size,
        "steps": t.max_iters, "learning_rate": o.learning_rate, "min_lr": o.min_lr,
        "warmup_iters": o.warmup_iters, "lr_decay_iters": o.lr_decay_iters, "decay_lr": o.decay_lr,
        "weight_decay": o.weight_decay, "beta1": o.beta1, "beta2": o.beta2, "grad_clip": o.grad_clip,
        "val": corpus.val.path(),
    });
    std::fs::write(out.join("recipe.json"), serde_json::to_string_pretty(&recipe)?)?;
    println!("{}: {} parameters and {} steps of batches", out.display(), gpt.tape.n_params(), t.max_iters);
    Ok(())
}
