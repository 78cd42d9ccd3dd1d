//! Pictures of a trained model (a checkpoint loaded by `sample::load`): the next-token
//! distribution after a prompt, every layer's and head's attention over a prompt, the
//! token embeddings and the prompt's hidden states projected to 2-D, and the architecture.

use model::Gpt;
use sample::{show_token, token_bytes, Loaded};

use crate::charts::{rank_plot, scatter, Path, Point};
use crate::heatmap::{heatmap_grid, Layout, Panel};
use crate::pca::Pca;
use crate::DrawError;

/// The prompt as token ids the model can take: encoded by the checkpoint's tokenizer (an
/// empty prompt is the start token), the last block_size kept.
pub fn prompt_tokens(loaded: &Loaded, prompt: &str) -> Result<Vec<u32>, DrawError> {
    let tokenizer = loaded.tokenizer.as_ref();
    let (mut ids, _) = sample::encode_text(tokenizer, prompt, "prompt", false)?;
    if ids.is_empty() {
        ids.push(sample::start_token(tokenizer));
    }
    let keep = loaded.gpt.config.block_size;
    if ids.len() > keep {
        ids.drain(..ids.len() - keep);
    }
    Ok(ids)
}

/// A token as a label (space ␣, newline ⏎).
fn label(loaded: &Loaded, id: u32) -> String {
    show_token(&token_bytes(loaded.tokenizer.as_ref(), id))
}

/// The probabilities of the next token after `tokens`, over the tokenizer's vocabulary,
/// as (id, probability), most likely first.
pub fn next_token_probs(gpt: &Gpt, tokens: &[u32], vocab: usize) -> Vec<(u32, f64)> {
    let mut cache = gpt.new_cache();
    let logits = gpt.forward_cached(&mut cache, tokens);
    let vocab = vocab.min(logits.len());
    let max = logits[..vocab].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits[..vocab].iter().map(|&l| f64::from(l - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let mut rows: Vec<(u32, f64)> = exps.iter().enumerate().map(|(i, e)| (i as u32, e / total)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    rows
}

/// Probability by rank of the next token after `prompt`, the `top` most likely labelled.
pub fn next_token_picture(loaded: &Loaded, prompt: &str, top: usize) -> Result<String, DrawError> {
    let tokens = prompt_tokens(loaded, prompt)?;
    let rows = next_token_probs(&loaded.gpt, &tokens, loaded.tokenizer.vocab_size());
    let probs: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let labels: Vec<String> =
        rows.iter().take(top).map(|&(id, p)| format!("{} {:.1}%", label(loaded, id), 100.0 * p)).collect();
    let title = format!("Next token after \"{}\": probability by rank", shown_prompt(loaded, &tokens));
    Ok(rank_plot(&title, &probs, &labels))
}

/// The prompt as the model sees it, shortened to its last 40 characters for a title.
fn shown_prompt(loaded: &Loaded, tokens: &[u32]) -> String {
    let text = sample::decode(loaded.tokenizer.as_ref(), tokens).replace('\n', "⏎");
    let n = text.chars().count();
    if n > 40 {
        format!("…{}", text.chars().skip(n - 40).collect::<String>())
    } else {
        text
    }
}

/// Every layer's (rows) and head's (columns) attention weights over the prompt's tokens:
/// query position down, key position across.
pub fn attention_picture(loaded: &Loaded, prompt: &str) -> Result<String, DrawError> {
    let tokens = prompt_tokens(loaded, prompt)?;
    let trace = loaded.gpt.trace(&tokens);
    let labels: Vec<String> = tokens.iter().map(|&id| label(loaded, id)).collect();
    let mut panels = Vec::new();
    for layer in 0..trace.n_layer {
        for head in 0..trace.n_head {
            panels.push(Panel {
                title: format!("layer {} · head {}", layer + 1, head + 1),
                values: trace.attention_map(layer, head).iter().map(|&w| f64::from(w)).collect(),
                rows: labels.clone(),
                cols: labels.clone(),
            });
        }
    }
    let layout = Layout {
        columns: trace.n_head,
        cell: (220.0 / tokens.len() as f64).clamp(4.0, 16.0),
        x_title: "attends to (key)".into(),
        y_title: "token (query)".into(),
        max: 1.0,
        scale_title: "attention weight".into(),
    };
    let title = format!(
        "Attention of each layer (rows) and head (columns) over \"{}\"",
        shown_prompt(loaded, &tokens)
    );
    Ok(heatmap_grid(&title, &panels, &layout))
}

/// The token embeddings (rows of `wte`, one per tokenizer token) projected on their first
/// two principal components; the distinct tokens of `labelled` carry labels (empty: every
/// token of a vocabulary of at most 100, else the first 60).
pub fn embeddings_picture(loaded: &Loaded, labelled: &str) -> Result<String, DrawError> {
    let gpt = &loaded.gpt;
    let (c, vocab) = (gpt.config.n_embd, loaded.tokenizer.vocab_size().min(gpt.config.vocab_size));
    let wte = gpt.tape.params().find(|p| p.1 == "transformer.wte.weight").map(|p| p.2.data.as_slice());
    let wte =
        wte.ok_or_else(|| DrawError::Message("the checkpoint's model has no token embedding".into()))?;
    let wte = &wte[..vocab * c];
    let chosen: Vec<u32> = if labelled.is_empty() {
        (0..vocab as u32).take(if vocab <= 100 { vocab } else { 60 }).collect()
    } else {
        let (ids, _) = sample::encode_text(loaded.tokenizer.as_ref(), labelled, "text of --tokens", false)?;
        ids
    };
    let pca = Pca::fit(wte, c, 2);
    let points: Vec<Point> = wte
        .chunks_exact(c)
        .enumerate()
        .map(|(id, row)| {
            let at = pca.project(row);
            let label = chosen.contains(&(id as u32)).then(|| label(loaded, id as u32));
            Point { at: (at[0], at[1]), label }
        })
        .collect();
    let title = format!(
        "Token embeddings of {}: first two principal components ({:.0}% of the variance)",
        loaded.path.display(),
        100.0 * pca.explained()
    );
    Ok(scatter(&title, &points, &[], ("principal component 1", "principal component 2")))
}

/// The prompt's hidden states entering the first block and after each block, projected on
/// the first two principal components of all of them: one path per layer along the
/// prompt, the tokens labelled on the last.
pub fn trajectory_picture(loaded: &Loaded, prompt: &str) -> Result<String, DrawError> {
    let tokens = prompt_tokens(loaded, prompt)?;
    let trace = loaded.gpt.trace(&tokens);
    let c = trace.n_embd;
    let pca = Pca::fit(&trace.hidden, c, 2);
    let project = |row: &[f32]| {
        let p = pca.project(row);
        (p[0], p[1])
    };
    let paths: Vec<Path> = (0..=trace.n_layer)
        .map(|index| Path {
            name: if index == 0 { "embedding".into() } else { format!("after block {index}") },
            points: trace.hidden_state(index).chunks_exact(c).map(project).collect(),
        })
        .collect();
    let last = trace.hidden_state(trace.n_layer);
    let points: Vec<Point> = last
        .chunks_exact(c)
        .zip(&tokens)
        .map(|(row, &id)| Point { at: project(row), label: Some(label(loaded, id)) })
        .collect();
    let title = format!(
        "Hidden states along \"{}\", layer by layer (PCA, {:.0}% of the variance)",
        shown_prompt(loaded, &tokens),
        100.0 * pca.explained()
    );
    Ok(scatter(&title, &points, &paths, ("principal component 1", "principal component 2")))
}
