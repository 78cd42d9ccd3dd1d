//! Gradient accumulation: 4 micro-batches of 2 sequences give the gradient of one batch
//! of 8, to float tolerance.

use model::{Gpt, GptConfig};
use tensor::{Grads, TensorId};
use train::accumulate_gradients;

#[test]
fn four_micro_batches_of_two_equal_one_batch_of_eight() {
    let config = GptConfig {
        vocab_size: 20,
        block_size: 8,
        n_layer: 2,
        n_head: 2,
        n_embd: 16,
        dropout: 0.0,
        bias: true,
        arch: model::Arch::GPT2,
    };
    let (b, t) = (8, 8);
    let mut gpt = Gpt::new(config, 5);
    let mut x = 11u32;
    let windows: Vec<Vec<u32>> = (0..b)
        .map(|_| {
            (0..=t)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) % 20
                })
                .collect()
        })
        .collect();
    let fill = |rows: std::ops::Range<usize>, inputs: &mut Vec<u32>, targets: &mut Vec<u32>| {
        inputs.clear();
        targets.clear();
        for w in &windows[rows] {
            inputs.extend_from_slice(&w[..t]);
            targets.extend_from_slice(&w[1..]);
        }
    };
    let (mut inputs, mut targets) = (Vec::new(), Vec::new());

    let mut whole = Grads::new();
    let loss_whole = accumulate_gradients(
        &mut gpt,
        &mut whole,
        1,
        (b, t),
        None,
        (&mut inputs, &mut targets),
        &mut |i, tg| fill(0..b, i, tg),
    );
    let mut parts = Grads::new();
    let mut k = 0;
    let loss_parts = accumulate_gradients(
        &mut gpt,
        &mut parts,
        4,
        (2, t),
        None,
        (&mut inputs, &mut targets),
        &mut |i, tg| {
            fill(2 * k..2 * k + 2, i, tg);
            k += 1;
        },
    );
    assert_eq!(k, 4);
    assert!((loss_whole - loss_parts).abs() < 1e-6, "loss {loss_whole} vs {loss_parts}");
    for (id, name, _) in gpt.tape.params() {
        let (a, p) = (whole.get(id), parts.get(id));
        assert_eq!(a.len(), p.len(), "{name}");
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let worst = a.iter().zip(p).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(worst <= 1e-5 * scale.max(1.0), "{name}: max diff {worst} (largest gradient {scale})");
    }
    assert!(whole.get(TensorId(0)).iter().any(|&g| g != 0.0));
}
