//! `sample --checkpoint DIR` on a Hugging Face GPT-2 folder: the folder is imported on the
//! fly, and the KV-cache path gives transformers' logits (the fixture of crates/convert).

use std::path::Path;

use model::sampling::Decoder;

#[test]
fn a_hugging_face_folder_loads_and_its_cached_logits_are_transformers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../convert/tests/fixtures/tiny-gpt2");
    let loaded = sample::load(&dir).expect("the folder imports");
    assert_eq!(loaded.tokenizer.kind(), "gpt2");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("logits.json")).expect("logits.json"))
            .expect("JSON");
    let text = json["text"].as_str().expect("text");
    let tokens = loaded.tokenizer.encode(text).expect("byte-level");
    let logits: Vec<f32> = json["logits"]
        .as_array()
        .expect("logits")
        .iter()
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect();
    let v = loaded.gpt.config.vocab_size;
    let last = &logits[(tokens.len() - 1) * v..tokens.len() * v];
    let decoder = Decoder::new(&loaded.gpt, &tokens);
    let diff = decoder.logits().iter().zip(last).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    println!("KV-cache logits of the imported fixture: max abs diff {diff:.2e} from transformers'");
    assert!(diff < 1e-5, "{diff}");
}
