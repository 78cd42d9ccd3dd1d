//! Tokenizer behaviour: round-trips (English, Chinese, arbitrary bytes), GPT-2 equal to
//! tiktoken's reference ids, and serialisation.

use std::path::PathBuf;

use data::{tokenizer_from_bytes, BpeTokenizer, CharTokenizer, Gpt2Tokenizer, Tokenizer};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn shakespeare() -> String {
    std::fs::read_to_string(repo().join("datasets/tinyshakespeare/input.txt"))
        .expect("bundled Tiny Shakespeare")
}

fn chinese() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hongloumeng_excerpt.txt"),
    )
    .expect("Chinese fixture")
}

fn gpt2() -> Gpt2Tokenizer {
    Gpt2Tokenizer::from_dir(&repo().join("datasets/gpt2-tokenizer")).expect("bundled GPT-2 tokenizer files")
}

/// Strings made of random bytes, read as UTF-8 with invalid bytes replaced.
fn random_strings() -> Vec<String> {
    let mut rng = tensor::Rng::seeded(7);
    (0..200)
        .map(|_| {
            let len = rng.below(64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

fn assert_round_trip(tok: &dyn Tokenizer, text: &str) {
    let ids = tok.encode(text).expect("encodable");
    assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
    assert_eq!(tok.decode(&ids), text, "{} round trip", tok.kind());
}

#[test]
fn char_tokenizer_round_trips_and_names_unknown_characters() {
    let text = shakespeare();
    let tok = CharTokenizer::from_text(&text);
    assert_eq!(tok.vocab_size(), 65);
    assert_eq!(tok.chars()[0], '\n');
    assert_round_trip(&tok, &text[..5000]);
    let err = tok.encode("café €").expect_err("é and € are not in Shakespeare").to_string();
    assert!(err.contains("'é', '€'"), "{err}");
    let back = tokenizer_from_bytes(&tok.to_bytes()).expect("serialised char tokenizer");
    assert_eq!(back.kind(), "char");
    assert_eq!(back.encode("ROMEO:").ok(), tok.encode("ROMEO:").ok());
}

#[test]
fn bpe_round_trips_english_chinese_and_random_bytes() {
    let english = &shakespeare()[..200_000];
    let bpe = BpeTokenizer::train(english, 512, false).expect("valid vocab size");
    assert_eq!(bpe.vocab_size(), 512);
    let ids = bpe.encode(english).expect("bpe never fails");
    assert!(ids.len() * 10 < english.len() * 6, "512 tokens should shorten the text well: {}", ids.len());
    assert_round_trip(&bpe, english);
    let zh = chinese();
    assert_round_trip(&bpe, &zh);

    let bpe_zh = BpeTokenizer::train(&zh, 600, false).expect("valid vocab size");
    let zh_ids = bpe_zh.encode(&zh).expect("bpe never fails");
    assert!(zh_ids.len() < zh.len() / 2, "merges should cover common Chinese characters");
    assert_round_trip(&bpe_zh, &zh);
    assert_round_trip(&bpe_zh, english);
    for s in random_strings() {
        assert_round_trip(&bpe, &s);
        assert_round_trip(&bpe_zh, &s);
    }

    let back = tokenizer_from_bytes(&bpe.to_bytes()).expect("serialised bpe");
    assert_eq!(back.kind(), "bpe");
    assert_eq!(back.encode(&zh).ok(), bpe.encode(&zh).ok());
}

#[test]
fn bpe_training_is_deterministic_and_refuses_tiny_vocabularies() {
    let text = &shakespeare()[..50_000];
    let a = BpeTokenizer::train(text, 400, false).expect("valid");
    let b = BpeTokenizer::train(text, 400, false).expect("valid");
    assert_eq!(a.to_bytes(), b.to_bytes());
    let err = BpeTokenizer::train(text, 100, false).err().expect("too small").to_string();
    assert!(err.contains("too small"), "{err}");
    // A text with few pairs stops early instead of inventing merges.
    let small = BpeTokenizer::train("abab", 1000, false).expect("valid");
    assert!(small.vocab_size() < 1000);
}

#[test]
fn gpt2_matches_tiktoken_vectors() {
    let tok = gpt2();
    assert_eq!(tok.vocab_size(), 50257);
    let vectors = std::fs::read_to_string(repo().join("datasets/gpt2-tokenizer/gpt2_test_vectors.jsonl"))
        .expect("bundled test vectors");
    let mut checked = 0;
    for line in vectors.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON line");
        let text = v["text"].as_str().expect("text");
        let ids: Vec<u32> = serde_json::from_value(v["ids"].clone()).expect("ids");
        let ordinary: Vec<u32> = serde_json::from_value(v["ids_ordinary"].clone()).expect("ids_ordinary");
        assert_eq!(tok.encode(text).expect("gpt2 never fails"), ids, "encode({text:?})");
        assert_eq!(tok.encode_ordinary(text), ordinary, "encode_ordinary({text:?})");
        assert_eq!(tok.decode(&ids), text);
        checked += 1;
    }
    assert_eq!(checked, 25);

    let back = tokenizer_from_bytes(&tok.to_bytes()).expect("serialised gpt2");
    assert_eq!(back.kind(), "gpt2");
    assert_eq!(back.encode("Hello <|endoftext|> world").expect("ok"), [15496, 220, 50256, 995]);
}

#[test]
fn gpt2_gives_tiktokens_count_for_tiny_shakespeare() {
    let ids = gpt2().encode_ordinary(&shakespeare());
    assert_eq!(ids.len(), 338_025);
    assert_eq!(ids[..10], [5962, 22307, 25, 198, 8421, 356, 5120, 597, 2252, 11]);
}

#[test]
fn damaged_tokenizer_bytes_are_errors() {
    let bytes = CharTokenizer::from_text("abc").to_bytes();
    let err = |b: &[u8]| tokenizer_from_bytes(b).err().expect("must fail").to_string();
    assert!(err(b"hello").contains("bad magic"));
    let mut newer = bytes.clone();
    newer[8] = 9;
    assert!(err(&newer).contains("update Quill"), "{}", err(&newer));
    assert!(err(&bytes[..bytes.len() - 2]).contains("damaged"));
    let bpe = BpeTokenizer::train("hello hello", 260, false).expect("valid").to_bytes();
    assert!(err(&bpe[..bpe.len() / 2]).contains("damaged"));
}

/// An encoder.json whose ids skip or repeat is refused before a table is allocated from
/// its largest id (an id of 4294967295 once asked for 2^32 tokens).
#[test]
fn gpt2_encoder_ids_must_run_from_zero_each_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (encoder, merges) = (dir.path().join("encoder.json"), dir.path().join("vocab.bpe"));
    std::fs::write(&merges, "#version: 0.2\n").expect("write");
    for (json, expected) in [
        (r#"{"a": 0, "b": 4294967295}"#, "no token has id 1, but ids run up to 4294967295"),
        (r#"{"a": 0, "b": 0}"#, "two tokens have id 0"),
    ] {
        std::fs::write(&encoder, json).expect("write");
        let err = Gpt2Tokenizer::from_files(&encoder, &merges).err().expect("refused").to_string();
        assert!(err.contains(expected) && err.contains("encoder.json"), "{err}");
    }
}
