//! `prepare`: the split, streaming across chunk boundaries, and one clear error (with
//! nothing left behind) for each kind of bad input.

use std::path::{Path, PathBuf};

use data::{load_tokenizer, prepare, prepare_with, Gpt2Tokenizer, PrepareOptions, TokenFile, Tokenizer};

fn gpt2_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/gpt2-tokenizer")
}

fn opts(inputs: &[&Path], out: &Path, tokenizer: &str, vocab_size: Option<usize>) -> PrepareOptions {
    PrepareOptions {
        inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
        out_dir: out.to_path_buf(),
        tokenizer: tokenizer.to_string(),
        vocab_size,
        val_fraction: 0.1,
        lossy: false,
        progress: false,
    }
}

fn tokens(path: &Path) -> Vec<u32> {
    let f = TokenFile::open(path).expect("token file");
    let mut out = vec![0; f.len()];
    f.read_into(0, &mut out);
    out
}

fn err_of(r: Result<data::PrepareSummary, data::DataError>) -> String {
    r.expect_err("prepare must fail").to_string()
}

fn entries(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn char_prepare_splits_the_text_90_10_and_writes_a_matching_tokenizer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.txt"));
    std::fs::write(&a, "hello world\n".repeat(5)).expect("write");
    std::fs::write(&b, "fin, é!\n".repeat(5)).expect("write");
    let out = dir.path().join("corpus");
    let summary = prepare(&opts(&[&a, &b], &out, "char", None)).expect("prepare");
    let text = format!("{}{}", "hello world\n".repeat(5), "fin, é!\n".repeat(5));
    let n = text.chars().count();
    let n_train = (n as f64 * 0.9).floor() as usize;
    assert_eq!((summary.train_tokens, summary.val_tokens), (n_train, n - n_train));

    let tok = load_tokenizer(&out.join("tokenizer.bin")).expect("tokenizer");
    assert_eq!(tok.kind(), "char");
    assert_eq!(tok.vocab_size(), summary.vocab_size);
    let train = TokenFile::open(&out.join("train.bin")).expect("train.bin");
    train.check_vocab(tok.vocab_size()).expect("same vocabulary");
    let split: String = text.chars().take(n_train).collect();
    assert_eq!(tok.decode(&tokens(&out.join("train.bin"))), split);
    assert_eq!(tok.decode(&tokens(&out.join("val.bin"))), text.chars().skip(n_train).collect::<String>());
    let mut names = entries(&out);
    names.sort();
    assert_eq!(names, ["tokenizer.bin", "train.bin", "val.bin"]);
}

#[test]
fn streaming_across_chunks_equals_encoding_in_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 1 MiB − 1 bytes of ASCII, so the 3-byte 你 straddles the first read's end; then more
    // text with a special token, past a second chunk boundary.
    let mut text = "ab ".repeat((1 << 20) / 3);
    text.push_str("你好，世界！ They're here.\n\n<|endoftext|>Once upon a time  ");
    text.push_str(&"天下大事，分久必合，合久必分。 It's 2024.\n".repeat(20_000));
    let input = dir.path().join("big.txt");
    std::fs::write(&input, &text).expect("write");

    let out = dir.path().join("gpt2");
    let summary = prepare_with(&opts(&[&input], &out, "gpt2", None), false, &gpt2_dir()).expect("prepare");
    let tok = Gpt2Tokenizer::from_dir(&gpt2_dir()).expect("gpt2");
    let n = text.chars().count();
    let cut = text.char_indices().nth((n as f64 * 0.9).floor() as usize).expect("inside").0;
    assert_eq!(tokens(&out.join("train.bin")), tok.encode(&text[..cut]).expect("ok"));
    assert_eq!(tokens(&out.join("val.bin")), tok.encode(&text[cut..]).expect("ok"));
    assert!(tokens(&out.join("train.bin")).contains(&50256));
    assert_eq!(summary.vocab_size, 50257);

    let out = dir.path().join("bpe");
    prepare(&opts(&[&input], &out, "bpe", Some(300))).expect("prepare");
    let bpe = load_tokenizer(&out.join("tokenizer.bin")).expect("bpe");
    assert_eq!(bpe.vocab_size(), 300);
    assert_eq!(tokens(&out.join("train.bin")), bpe.encode(&text[..cut]).expect("ok"));
    assert_eq!(bpe.decode(&tokens(&out.join("val.bin"))), &text[cut..]);
}

#[test]
fn invalid_utf8_names_the_file_and_offset_and_lossy_replaces_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.txt");
    let mut bytes = "é".repeat(600_000).into_bytes(); // 1.2 MB: the bad byte is in the second read
    bytes.push(0xFF);
    bytes.extend_from_slice(b"tail\xE4\xBD");
    std::fs::write(&bad, &bytes).expect("write");
    let out = dir.path().join("out");
    let err = err_of(prepare(&opts(&[&bad], &out, "char", None)));
    assert!(err.contains("bad.txt: invalid UTF-8 at byte 1200000"), "{err}");
    assert!(err.contains("--lossy"), "{err}");
    assert!(entries(&out).is_empty(), "nothing written: {:?}", entries(&out));

    let mut lossy = opts(&[&bad], &out, "char", None);
    lossy.lossy = true;
    let summary = prepare(&lossy).expect("lossy prepare");
    // é, U+FFFD, t, a, i, l
    assert_eq!(summary.vocab_size, 6);
    assert_eq!(summary.train_tokens + summary.val_tokens, 600_000 + 1 + 4 + 1);

    let cut = dir.path().join("cut.txt");
    std::fs::write(&cut, b"abc\xE4\xBD").expect("write");
    let err = err_of(prepare(&opts(&[&cut], &dir.path().join("out2"), "char", None)));
    assert!(err.contains("cut.txt: invalid UTF-8 at byte 3"), "{err}");
}

#[test]
fn each_bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("text.txt");
    std::fs::write(&text, "some text to prepare, some text to prepare.\n".repeat(20)).expect("write");
    let out = dir.path().join("out");

    let missing = dir.path().join("nope.txt");
    let err = err_of(prepare(&opts(&[&text, &missing], &out, "char", None)));
    assert!(err.contains("nope.txt: cannot read the input") && err.contains("--input"), "{err}");

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let err = err_of(prepare_with(&opts(&[&empty], &out, "gpt2", None), false, &gpt2_dir()));
    assert!(err.contains("empty.txt: the input is empty"), "{err}");

    let err = err_of(prepare(&opts(&[&text], &out, "bpe", Some(200))));
    assert!(err.contains("--vocab-size 200 is too small for BPE"), "{err}");
    let err = err_of(prepare(&opts(&[&text], &out, "bpe", None)));
    assert!(err.contains("needs --vocab-size"), "{err}");
    let err = err_of(prepare(&opts(&[&text], &out, "char", Some(300))));
    assert!(err.contains("applies only to --tokenizer bpe"), "{err}");
    let err = err_of(prepare(&opts(&[&text], &out, "words", None)));
    assert!(err.contains("unknown tokenizer \"words\""), "{err}");
    let mut bad_split = opts(&[&text], &out, "char", None);
    bad_split.val_fraction = 1.0;
    assert!(err_of(prepare(&bad_split)).contains("--val-fraction 1"));
    bad_split.val_fraction = 0.0;
    assert!(err_of(prepare(&bad_split)).contains("--val-fraction 0 is outside (0, 1)"));
    let two = dir.path().join("two.txt");
    std::fs::write(&two, "ab").expect("write");
    let err = err_of(prepare(&opts(&[&two], &out, "char", None)));
    assert!(err.contains("two.txt: too little text to split: 1 train and 1 val tokens"), "{err}");
    let err = err_of(prepare_with(&opts(&[&text], &out, "gpt2", None), false, &dir.path().join("no-gpt2")));
    assert!(err.contains("encoder.json") && err.contains("--gpt2-dir"), "{err}");
    assert!(entries(&out).is_empty(), "nothing written: {:?}", entries(&out));

    prepare(&opts(&[&text], &out, "char", None)).expect("first prepare");
    let err = err_of(prepare(&opts(&[&text], &out, "bpe", Some(300))));
    assert!(err.contains("already exists; pass --force"), "{err}");
    // The refused run left the first corpus as it was.
    assert_eq!(load_tokenizer(&out.join("tokenizer.bin")).expect("still there").kind(), "char");
    prepare_with(&opts(&[&text], &out, "bpe", Some(300)), true, &gpt2_dir()).expect("forced");
    assert_eq!(load_tokenizer(&out.join("tokenizer.bin")).expect("replaced").kind(), "bpe");
    assert_eq!(entries(&out).len(), 3, "no temporary files left: {:?}", entries(&out));
}

#[test]
fn an_input_among_the_outputs_is_never_written_even_with_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("data");
    std::fs::create_dir(&out).expect("mkdir");
    let text = "the cat sat on the mat.\n".repeat(40);
    // The text under an output's name, and as a hard link from elsewhere to another.
    let same_name = out.join("train.bin");
    std::fs::write(&same_name, &text).expect("write");
    let elsewhere = dir.path().join("input.txt");
    std::fs::write(&elsewhere, &text).expect("write");
    std::fs::hard_link(&elsewhere, out.join("val.bin")).expect("hard link");
    for (input, output) in [(&same_name, "train.bin"), (&elsewhere, "val.bin")] {
        for force in [false, true] {
            let err = err_of(prepare_with(&opts(&[input], &out, "char", None), force, &gpt2_dir()));
            assert!(err.contains(&format!("{output}: is the input")), "{err}");
            assert!(err.contains("not even with --force") && !err.contains("pass --force"), "{err}");
        }
    }
    assert_eq!(std::fs::read_to_string(&same_name).expect("read"), text);
    assert_eq!(std::fs::read_to_string(&elsewhere).expect("read"), text);
}
