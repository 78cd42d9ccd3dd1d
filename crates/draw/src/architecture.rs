//! The model's architecture drawn from its config: tokens → embeddings → n_layer blocks
//! (one drawn open) → final layer norm → head → probabilities, each box with its shapes
//! and parameter count (summed from `model::init::param_specs`, the checkpoint's own list).

use model::init::param_specs;
use model::{Activation, GptConfig, Norm, Position};
use plot::ticks::format_short;

use crate::canvas::{Canvas, INK, MUTED};

/// Parameters whose names contain `part` (in block 0 when `part` is a block's layer).
fn params(config: &GptConfig, part: &str) -> usize {
    param_specs(config)
        .iter()
        .filter(|s| s.name.contains(part))
        .map(|s| s.shape.iter().product::<usize>())
        .sum()
}

/// The height of the open block's frame, in pixels.
const BLOCK_HEIGHT: f64 = 388.0;

/// 804096 → "804,096".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

fn count(n: usize) -> String {
    match n {
        0..=9_999 => format!("{n} params"),
        10_000..=999_999 => format!("{}k params", format_short(n as f64 / 1e3)),
        _ => format!("{}M params", format_short(n as f64 / 1e6)),
    }
}

/// The diagram of a model of `config`, titled with `name` (a checkpoint's path).
pub fn architecture(config: &GptConfig, name: &str) -> String {
    let (v, t, c, nh, nl) =
        (config.vocab_size, config.block_size, config.n_embd, config.n_head, config.n_layer);
    let title = format!("GPT architecture of {name}: {} parameters", thousands(config.num_params()));
    let mut canvas = Canvas::new(720.0, 770.0, &title);
    let (x, w, cx) = (150.0, 420.0, 360.0);
    let mut y = 60.0;
    let step = |canvas: &mut Canvas, y: &mut f64, h: f64, fill: &str, lines: &[&str]| {
        canvas.boxed((x, *y, w, h), fill, "#8a8a8a");
        for (i, line) in lines.iter().enumerate() {
            let size = if i == 0 { 14.0 } else { 12.0 };
            let colour = if i == 0 { INK } else { MUTED };
            canvas.text(cx, *y + 16.0 + 17.0 * i as f64, size, "middle", colour, line);
        }
        canvas.arrow_down(cx, *y + h, *y + h + 22.0);
        *y += h + 22.0;
    };
    step(
        &mut canvas,
        &mut y,
        44.0,
        "#f4f4f4",
        &["tokens", &format!("up to block_size = {t} ids < vocab_size = {v}")],
    );
    let arch = config.arch;
    let rope = arch.position == Position::Rope;
    let (embedding, embeddings) = if rope {
        ("token embedding", format!("wte ({v} × {c}), {}", count(params(config, "wte"))))
    } else {
        (
            "token + position embedding",
            format!(
                "wte ({v} × {c}) + wpe ({t} × {c}), {}",
                count(params(config, "wte") + params(config, "wpe"))
            ),
        )
    };
    step(&mut canvas, &mut y, 44.0, "#deebf7", &[embedding, &embeddings]);
    let norm = match arch.norm {
        Norm::LayerNorm => "layer norm",
        Norm::RmsNorm => "RMS norm",
    };

    // One block drawn open, inside a frame that says how many there are.
    let block_top = y;
    canvas.boxed((x - 30.0, block_top, w + 60.0, BLOCK_HEIGHT), "#fbfbfb", "#5a5a5a");
    canvas.text(x - 18.0, block_top + 16.0, 13.0, "start", INK, &format!("block × n_layer = {nl}"));
    let per_block = params(config, "transformer.h.0.");
    canvas.text(x + w + 18.0, block_top + 16.0, 12.0, "end", MUTED, &count(per_block));
    y += 32.0;
    let hs = c / nh.max(1);
    let qk = match (arch.qk_norm, rope) {
        (false, false) => "",
        (true, false) => "QK-norm; ",
        (false, true) => "rotary q, k; ",
        (true, true) => "QK-norm, rotary q, k; ",
    };
    let attention = format!("{nh} heads × {hs}: {qk}softmax(q·kᵀ/√{hs}) v, causal");
    let qkv =
        format!("q, k, v = x · W ({c} → 3×{c}); out ({c} → {c}); {}", count(params(config, "h.0.attn")));
    step(&mut canvas, &mut y, 30.0, "#ffffff", &[norm]);
    step(&mut canvas, &mut y, 62.0, "#fde0c5", &["self-attention", &attention, &qkv]);
    step(&mut canvas, &mut y, 30.0, "#ffffff", &["+ residual"]);
    step(&mut canvas, &mut y, 30.0, "#ffffff", &[norm]);
    let activation = match arch.activation {
        Activation::Gelu => "GELU",
        Activation::Relu2 => "ReLU²",
    };
    let mlp = format!("{c} → {} → {c}, {activation}; {}", 4 * c, count(params(config, "h.0.mlp")));
    step(&mut canvas, &mut y, 46.0, "#d9f0d3", &["MLP", &mlp]);
    canvas.boxed((x, y, w, 30.0), "#ffffff", "#8a8a8a");
    canvas.text(cx, y + 16.0, 14.0, "middle", INK, "+ residual");
    y = block_top + BLOCK_HEIGHT;
    canvas.arrow_down(cx, y, y + 22.0);
    y += 22.0;
    step(&mut canvas, &mut y, 30.0, "#ffffff", &[&format!("final {norm}")]);
    let head = if arch.tie_head {
        ["head: x · wteᵀ".to_string(), format!("{c} → {v} logits (tied to wte, no new parameters)")]
    } else {
        ["head: x · lm_headᵀ".to_string(), format!("{c} → {v} logits, {}", count(params(config, "lm_head")))]
    };
    step(&mut canvas, &mut y, 44.0, "#deebf7", &[&head[0], &head[1]]);
    canvas.boxed((x, y, w, 44.0), "#f4f4f4", "#8a8a8a");
    canvas.text(cx, y + 16.0, 14.0, "middle", INK, "softmax → next-token probabilities");
    canvas.text(cx, y + 33.0, 12.0, "middle", MUTED, &format!("{v} values summing to 1"));
    canvas.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_states_the_config_sizes() {
        let config = GptConfig {
            vocab_size: 65,
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            dropout: 0.0,
            bias: false,
            arch: model::Arch::GPT2,
        };
        let svg = architecture(&config, "runs/small/best.ckpt");
        for needle in ["n_layer = 4", "4 heads × 32", "128 → 512 → 128", "wte (65 × 128)", "block_size = 64"]
        {
            assert!(svg.contains(needle), "missing {needle}");
        }
        // Block 0's parameters, times the blocks, plus the rest, is the whole model.
        let total = params(&config, "wte")
            + params(&config, "wpe")
            + 4 * params(&config, "transformer.h.0.")
            + params(&config, "ln_f");
        assert_eq!(total, config.num_params());
    }
}
