//! The token-file format: round trips at both widths, and every damaged header is a clear
//! error rather than a panic.

use std::path::Path;

use data::{write_token_file, TokenFile, TOKEN_FILE_HEADER_LEN};

fn open_err(path: &Path) -> String {
    TokenFile::open(path).err().expect("the file must be refused").to_string()
}

#[test]
fn round_trips_u16_and_u32_tokens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let small = dir.path().join("small.bin");
    write_token_file(&small, &[0, 1, 65535, 7], 65536).expect("write");
    let f = TokenFile::open(&small).expect("open");
    assert_eq!((f.len(), f.vocab_size(), f.token_width()), (4, 65536, 2));
    assert_eq!(std::fs::metadata(&small).expect("exists").len(), TOKEN_FILE_HEADER_LEN as u64 + 8);
    let mut out = [0u32; 3];
    f.read_into(1, &mut out);
    assert_eq!(out, [1, 65535, 7]);

    let big = dir.path().join("big.bin");
    write_token_file(&big, &[70000, 3, 65536], 100_000).expect("write");
    let f = TokenFile::open(&big).expect("open");
    assert_eq!((f.len(), f.token_width(), f.get(0), f.get(2)), (3, 4, 70000, 65536));
    assert!(f.check_vocab(100_000).is_ok());
    assert!(f.check_vocab(65).expect_err("mismatch").to_string().contains("do not belong together"));

    let empty = dir.path().join("empty.bin");
    write_token_file(&empty, &[], 65).expect("write");
    assert!(TokenFile::open(&empty).expect("open").is_empty());
    // Nothing but the real names is left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn damaged_headers_are_clear_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = dir.path().join("good.bin");
    write_token_file(&good, &[1, 2, 3, 4, 5], 65).expect("write");
    let bytes = std::fs::read(&good).expect("read");
    let variant = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = bytes.clone();
        f(&mut b);
        let p = dir.path().join(name);
        std::fs::write(&p, &b).expect("write variant");
        p
    };

    let err = open_err(&variant("foreign.bin", &|b| b[..8].copy_from_slice(b"GIF89a\0\0")));
    assert!(err.contains("not a Quill token file (bad magic); run prepare again"), "{err}");
    assert!(err.contains("foreign.bin"), "{err}");
    let err = open_err(&variant("zero.bin", &|b| b.clear()));
    assert!(err.contains("bad magic"), "{err}");
    let err = open_err(&variant("tiny.bin", &|b| b.truncate(3)));
    assert!(err.contains("bad magic"), "{err}");
    let err = open_err(&variant("header.bin", &|b| b.truncate(20)));
    assert!(err.contains("truncated: 20 bytes"), "{err}");
    let err = open_err(&variant("newer.bin", &|b| b[8] = 2));
    assert!(err.contains("version 2 is newer"), "{err}");
    let err = open_err(&variant("width.bin", &|b| b[12] = 3));
    assert!(err.contains("token width 3"), "{err}");
    let err = open_err(&variant("cut.bin", &|b| b.truncate(b.len() - 1)));
    assert!(
        err.contains("says 5 tokens of 2 bytes (42 bytes with the header), but the file has 41 bytes"),
        "{err}"
    );
    let err = open_err(&variant("count.bin", &|b| b[24] = 200));
    assert!(err.contains("says 200 tokens"), "{err}");
    let err = open_err(&dir.path().join("missing.bin"));
    assert!(err.contains("run prepare first"), "{err}");
}

#[test]
fn an_id_past_the_vocabulary_is_refused_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (vocab, width, bad) in [(50usize, 2usize, 60u32), (100_000, 4, 100_000)] {
        let path = dir.path().join(format!("w{width}.bin"));
        let tokens: Vec<u32> = (0..50_000).map(|i| (i % 50) as u32).collect();
        write_token_file(&path, &tokens, vocab).expect("write");
        assert!(TokenFile::open(&path).is_ok());
        // Patch token 40000 (in the third chunk) and, later, token 45000.
        let mut bytes = std::fs::read(&path).expect("read");
        for index in [40_000, 45_000] {
            let at = TOKEN_FILE_HEADER_LEN + index * width;
            bytes[at..at + width].copy_from_slice(&bad.to_le_bytes()[..width]);
        }
        std::fs::write(&path, &bytes).expect("write");
        let err = TokenFile::open(&path).err().expect("refused");
        assert!(
            matches!(err, data::DataError::TokenOutOfVocab { index: 40_000, id, .. } if id == bad),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("token 40000 is id") && text.contains("run prepare again"), "{text}");
    }
}

/// Not a test of correctness: how long the id check takes on a 1 GB file.
/// `cargo test --release -p quill-data --test token_file -- --ignored --nocapture`
#[test]
#[ignore]
fn id_check_speed_on_one_gigabyte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.bin");
    let mut writer = data::TokenWriter::create(&path, 50_257).expect("create");
    let block: Vec<u32> = (0..1u64 << 20).map(|i| (i * 7919 % 50_257) as u32).collect();
    for _ in 0..512 {
        writer.push(&block).expect("push"); // 512 × 2^20 tokens × 2 bytes = 1 GiB
    }
    writer.finish().expect("finish");
    TokenFile::open(&path).expect("open"); // once to bring the file into the page cache
    let started = std::time::Instant::now();
    let f = TokenFile::open(&path).expect("open");
    let seconds = started.elapsed().as_secs_f64();
    println!("opened and checked {} tokens ({} bytes) in {seconds:.3} s", f.len(), f.len() * 2);
}
