//! A tiny MLP learns with plain SGD: the whole autodiff stack (matmul, GELU, cross-entropy,
//! the tape and `Grads`) working together on a problem with a known answer.
//!
//! The toy problem: points in the plane, each labelled by the nearest of three centres.
//! Two linear layers with a GELU between them must learn the (piecewise linear) borders.

use tensor::{Grads, Rng, Tape, Tensor};

const CENTRES: [[f32; 2]; 3] = [[-1.0, -0.6], [1.0, -0.4], [0.1, 1.0]];

/// n points uniform in [−2, 2)², flattened (n, 2), with the index of their nearest centre.
fn points(n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<u32>) {
    let xy: Vec<f32> = (0..2 * n).map(|_| 4.0 * rng.uniform() - 2.0).collect();
    let labels = xy
        .chunks(2)
        .map(|p| {
            let dist = |c: &[f32; 2]| (p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2);
            (0..3).min_by(|&a, &b| dist(&CENTRES[a]).total_cmp(&dist(&CENTRES[b]))).expect("three centres")
                as u32
        })
        .collect();
    (xy, labels)
}

#[test]
fn mlp_learns_nearest_centre_classification() {
    let mut rng = Rng::seeded(11);
    let hidden = 32;
    let mut tape = Tape::new();
    let w1 = tape.param("fc1.weight", Tensor::randn(&[hidden, 2], 0.7, &mut rng));
    let b1 = tape.param("fc1.bias", Tensor::zeros(&[hidden]));
    let w2 = tape.param("fc2.weight", Tensor::randn(&[3, hidden], 0.2, &mut rng));
    let b2 = tape.param("fc2.bias", Tensor::zeros(&[3]));
    let params = [w1, b1, w2, b2];

    let (n, batch_size, lr) = (2048, 128, 0.5);
    let (train_x, train_y) = points(n, &mut rng);
    let mut grads = Grads::new();
    let mut losses = Vec::new();
    for step in 0..600 {
        let start = (step * batch_size) % n;
        let (xb, yb) = (&train_x[2 * start..2 * (start + batch_size)], &train_y[start..start + batch_size]);
        tape.reset();
        let x = tape.constant(&[batch_size, 2], xb);
        let h = tape.matmul(x, w1, Some(b1)); // (batch, hidden)
        let h = tape.gelu(h);
        let logits = tape.matmul(h, w2, Some(b2)); // (batch, 3)
        let loss = tape.cross_entropy(logits, yb, None);
        losses.push(tape.data(loss)[0]);
        grads.zero();
        tape.backward(loss, &mut grads);
        for &p in &params {
            let g = grads.get(p).to_vec();
            tape.value_mut(p).data.iter_mut().zip(&g).for_each(|(w, g)| *w -= lr * g);
        }
    }

    // Accuracy on fresh points.
    let (test_x, test_y) = points(1000, &mut rng);
    tape.reset();
    let x = tape.constant(&[1000, 2], &test_x);
    let h = tape.matmul(x, w1, Some(b1));
    let h = tape.gelu(h);
    let logits = tape.matmul(h, w2, Some(b2));
    let correct = tape
        .data(logits)
        .chunks(3)
        .zip(&test_y)
        .filter(|(row, &y)| (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])) == Some(y as usize))
        .count();
    let accuracy = correct as f32 / 1000.0;
    let (first, last) = (losses[0], losses[losses.len() - 20..].iter().sum::<f32>() / 20.0);
    assert!(accuracy > 0.95, "accuracy {accuracy}; loss went from {first} to {last}");
    assert!(last < 0.25 && last < first / 4.0, "loss went from {first} to {last}");
}
