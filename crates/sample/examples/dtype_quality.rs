//! How much bfloat16 weights change a model's predictions: scores a text with the KV-cache
//! path in `f32` and in bfloat16 and prints both bits per byte and how often the two agree
//! on the most likely next token.
//!
//! `cargo run --release -p quill-sample --example dtype_quality -- CHECKPOINT TEXT_FILE [START] [BYTES]`
//! (the README's figure: a small.toml checkpoint, `datasets/tinyshakespeare/input.txt`
//! from byte 1003854, the validation split, 20000 bytes).

use anyhow::{Context, Result};
use model::sampling::{argmax, log_prob, Decoder};
use model::Dtype;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, checkpoint, file, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: dtype_quality CHECKPOINT TEXT_FILE [START] [BYTES]");
    };
    let start: usize = rest.first().map_or(Ok(0), |s| s.parse()).context("START")?;
    let bytes: usize = rest.get(1).map_or(Ok(usize::MAX), |s| s.parse()).context("BYTES")?;
    let mut loaded = sample::load(checkpoint.as_ref())?;
    let text = std::fs::read_to_string(file).with_context(|| format!("{file}: cannot read"))?;
    let text = &text[start.min(text.len())..];
    let text = &text[..bytes.min(text.len())];
    let (ids, _) = sample::encode_text(loaded.tokenizer.as_ref(), text, "text", true)?;
    let text_bytes: usize =
        ids.iter().map(|&id| sample::token_bytes(loaded.tokenizer.as_ref(), id).len()).sum();
    // Per dtype: each token's log p and the argmax before it.
    let mut run = |dtype| {
        loaded.gpt.set_sampling_dtype(dtype);
        let mut decoder = Decoder::new(&loaded.gpt, &ids[..1]);
        let mut out = Vec::with_capacity(ids.len());
        for &token in &ids[1..] {
            out.push((log_prob(decoder.logits(), token), argmax(decoder.logits())));
            decoder.push(token);
        }
        out
    };
    let (full, half) = (run(Dtype::F32), run(Dtype::Bf16));
    let bits =
        |r: &[(f64, u32)]| -r.iter().map(|x| x.0).sum::<f64>() / std::f64::consts::LN_2 / text_bytes as f64;
    let agree = full.iter().zip(&half).filter(|(a, b)| a.1 == b.1).count();
    println!(
        "{} tokens: f32 {:.5} bits/byte, bf16 {:.5} bits/byte (difference {:+.5}); top-1 agrees at {} of {} positions ({:.3}%)",
        ids.len(),
        bits(&full),
        bits(&half),
        bits(&half) - bits(&full),
        agree,
        full.len(),
        100.0 * agree as f64 / full.len() as f64
    );
    Ok(())
}
