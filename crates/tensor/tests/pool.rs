//! `on_pool`: the other workers stay awake while a pass runs, and they always stop, also
//! when several threads run passes at once and when a pass panics.

use rayon::prelude::*;
use tensor::on_pool;

/// A pass of many short parallel ops, as a forward pass is.
fn pass(seed: u64) -> u64 {
    (0..200u64).map(|op| (0..64u64).into_par_iter().map(|i| (i * 31 + op) ^ seed).sum::<u64>()).sum()
}

#[test]
fn concurrent_passes_from_several_threads_all_finish() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a rayon pool");
    let expected: Vec<u64> = (0..6).map(pass).collect();
    pool.install(|| {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..6u64)
                .map(|seed| s.spawn(move || (0..50).map(|_| on_pool(|| pass(seed))).collect::<Vec<_>>()))
                .collect();
            for (seed, h) in handles.into_iter().enumerate() {
                let results = h.join().expect("a pass thread");
                assert!(results.iter().all(|&r| r == expected[seed]));
            }
        });
    });
}

#[test]
fn nested_passes_finish() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("a rayon pool");
    let total =
        pool.install(|| on_pool(|| (0..8u64).into_par_iter().map(|i| on_pool(|| pass(i))).sum::<u64>()));
    assert_eq!(total, (0..8).map(pass).sum::<u64>());
}

#[test]
fn a_panicking_pass_releases_the_workers() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a rayon pool");
    pool.install(|| {
        let result = std::panic::catch_unwind(|| {
            on_pool(|| {
                pass(1);
                panic!("a bad token");
            })
        });
        assert!(result.is_err());
        assert_eq!(on_pool(|| pass(2)), pass(2));
    });
}
