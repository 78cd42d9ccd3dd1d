//! Batch sampling: targets are inputs shifted by one, a restored state continues exactly,
//! and evaluation batches walk the file in order.

use data::{sequential_batches, write_token_file, BatchSampler, TokenFile};

fn counting_file(dir: &tempfile::TempDir, n: u32) -> TokenFile {
    let path = dir.path().join("train.bin");
    let tokens: Vec<u32> = (0..n).collect();
    write_token_file(&path, &tokens, n as usize).expect("write");
    TokenFile::open(&path).expect("open")
}

#[test]
fn targets_are_inputs_shifted_by_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = counting_file(&dir, 1000);
    let mut sampler = BatchSampler::new(&file, 4, 16, 1).expect("long enough");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        sampler.next_batch(&file, &mut x, &mut y);
        assert_eq!((x.len(), y.len()), (64, 64));
        for row in 0..4 {
            let (xr, yr) = (&x[row * 16..(row + 1) * 16], &y[row * 16..(row + 1) * 16]);
            // token i holds the value i, so a window is consecutive numbers
            assert!(xr.windows(2).all(|w| w[1] == w[0] + 1));
            assert!(xr.iter().zip(yr).all(|(a, b)| *b == a + 1));
            assert!(yr[15] < 1000);
        }
    }
    assert_eq!(sampler.state().batches_drawn, 20);
}

#[test]
fn restored_state_gives_the_same_next_batches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = counting_file(&dir, 5000);
    let mut a = BatchSampler::new(&file, 3, 8, 42).expect("ok");
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        a.next_batch(&file, &mut x, &mut y);
    }
    let saved = bincode::serialize(&a.state()).expect("state serialises");
    let expected: Vec<Vec<u32>> = (0..5)
        .map(|_| {
            a.next_batch(&file, &mut x, &mut y);
            x.clone()
        })
        .collect();

    let mut b = BatchSampler::new(&file, 3, 8, 999).expect("ok");
    b.restore(bincode::deserialize(&saved).expect("state deserialises"));
    for batch in expected {
        b.next_batch(&file, &mut x, &mut y);
        assert_eq!(x, batch);
    }
    assert_eq!(a.state(), b.state());
    // A different seed draws different windows.
    let mut c = BatchSampler::new(&file, 3, 8, 43).expect("ok");
    let mut first = BatchSampler::new(&file, 3, 8, 42).expect("ok");
    let (mut x2, mut y2) = (Vec::new(), Vec::new());
    c.next_batch(&file, &mut x, &mut y);
    first.next_batch(&file, &mut x2, &mut y2);
    assert_ne!(x, x2);
}

#[test]
fn short_files_are_refused_with_the_needed_length() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = counting_file(&dir, 900);
    let err = BatchSampler::new(&file, 4, 1024, 0).err().expect("too short").to_string();
    assert!(
        err.ends_with(
            "train.bin: 900 tokens, need at least block_size + 1 = 1025; lower block_size or add text"
        ),
        "{err}"
    );
    assert!(BatchSampler::new(&file, 4, 899, 0).is_ok());
}

#[test]
fn sequential_batches_cover_the_file_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = counting_file(&dir, 100);
    // 99 / 8 = 12 windows → 3 batches of 4; the rest is dropped.
    let batches: Vec<_> = sequential_batches(&file, 4, 8, usize::MAX).collect();
    assert_eq!(batches.len(), 3);
    let starts: Vec<u32> = batches.iter().flat_map(|(x, _)| x.chunks(8).map(|w| w[0])).collect();
    assert_eq!(starts, (0..12).map(|w| w * 8).collect::<Vec<_>>());
    for (x, y) in &batches {
        assert!(x.iter().zip(y).all(|(a, b)| *b == a + 1));
    }
    assert_eq!(sequential_batches(&file, 4, 8, 2).count(), 2);
    assert_eq!(data::sequential_batch_count(100, 4, 8), 3);
}
