//! Tape behaviour across ops: a tensor used twice gets both gradients, buffers are reused
//! from step to step, shape mismatches panic with the op and the shapes, and the row-wise
//! and reducing kernels give bit-identical results on 1 and on 2 threads.

use tensor::{Grads, Rng, Tape, Tensor, TensorId};

#[test]
fn add_of_a_tensor_to_itself_gives_twice_the_gradient() {
    let mut tape = Tape::new();
    let x = tape.param("x", Tensor::from_vec(&[2, 3], vec![1.0, -2.0, 3.0, 0.5, 0.0, 7.0]));
    let y = tape.add(x, x);
    assert_eq!(tape.data(y), [2.0, -4.0, 6.0, 1.0, 0.0, 14.0]);
    let dout = [0.1, 0.2, -0.3, 0.4, 0.5, -0.6];
    let mut grads = Grads::new();
    tape.backward_from(y, &dout, &mut grads);
    let expected: Vec<f32> = dout.iter().map(|d| 2.0 * d).collect();
    assert_eq!(grads.get(x), expected);
}

#[test]
fn mul_of_a_tensor_by_itself_gives_two_x_dout() {
    let mut tape = Tape::new();
    let x = tape.param("x", Tensor::from_vec(&[3], vec![1.0, -2.0, 3.0]));
    let y = tape.mul(x, x);
    let mut grads = Grads::new();
    tape.backward_from(y, &[1.0, 1.0, 1.0], &mut grads);
    assert_eq!(grads.get(x), [2.0, -4.0, 6.0]);
}

/// A small network touching every op of this group; returns the scalar loss.
fn forward(tape: &mut Tape, p: &[TensorId], ids: &[u32], rng: &mut Rng) -> TensorId {
    let (b, t, nh, hs) = (3, 19, 2, 11);
    let c = nh * hs;
    let x = tape.embedding(p[0], ids, &[b, t]); // (b, t, c)
    let x = tape.layernorm(x, p[1], p[2]);
    let h = tape.gelu(x);
    let h = tape.dropout(h, 0.1, rng);
    let x = tape.add(x, h);
    let q = tape.reshape(x, &[b, t, nh, hs]);
    let q = tape.transpose12(q); // (b, nh, t, hs)
    let scores = tape.batch_matmul(q, q, true); // (b, nh, t, t)
    let scores = tape.scale(scores, 1.0 / (hs as f32).sqrt());
    let att = tape.softmax(scores);
    let y = tape.batch_matmul(att, q, false); // (b, nh, t, hs)
    let y = tape.transpose12(y);
    let y = tape.reshape(y, &[b, t, c]);
    let y = tape.relu(y);
    let y = tape.mul(y, x);
    let s = tape.sum(y);
    let m = tape.mean(x);
    let loss = tape.add(s, m);
    tape.scale(loss, 0.01)
}

fn setup() -> (Tape, Vec<TensorId>, Vec<u32>) {
    let mut rng = Rng::seeded(21);
    let (v, c) = (50, 22);
    let mut tape = Tape::new();
    let p = vec![
        tape.param("wte", Tensor::randn(&[v, c], 1.0, &mut rng)),
        tape.param("ln.weight", Tensor::randn(&[c], 1.0, &mut rng)),
        tape.param("ln.bias", Tensor::randn(&[c], 1.0, &mut rng)),
    ];
    let ids = (0..3 * 19).map(|_| rng.below(v) as u32).collect();
    (tape, p, ids)
}

#[test]
fn reset_reuses_buffers_and_repeats_the_step() {
    let (mut tape, p, ids) = setup();
    let loss = forward(&mut tape, &p, &ids, &mut Rng::seeded(1));
    let (len, value) = (tape.len(), tape.data(loss).to_vec());
    let mut grads = Grads::new();
    tape.backward(loss, &mut grads);
    let first: Vec<Vec<f32>> = p.iter().map(|&id| grads.get(id).to_vec()).collect();

    tape.reset();
    let loss2 = forward(&mut tape, &p, &ids, &mut Rng::seeded(1));
    assert_eq!(loss2, loss);
    assert_eq!(tape.len(), len, "the second step allocated new arena slots");
    assert_eq!(tape.data(loss2), value);
    grads.zero();
    tape.backward(loss2, &mut grads);
    for (&id, g) in p.iter().zip(&first) {
        assert_eq!(grads.get(id), g.as_slice(), "gradient of {} changed", tape.param_name(id));
    }
}

#[test]
fn stale_activation_gradients_never_leak_into_the_next_backward_pass() {
    // Activation gradients are overwritten by their first contribution rather than zeroed
    // up front; a second pass over different data must see none of the first pass's values.
    let (mut tape, p, ids) = setup();
    let mut grads = Grads::new();
    let loss = forward(&mut tape, &p, &ids, &mut Rng::seeded(1));
    tape.backward(loss, &mut grads);

    tape.reset();
    let other_ids: Vec<u32> = ids.iter().map(|&i| (i * 7 + 3) % 50).collect();
    let loss = forward(&mut tape, &p, &other_ids, &mut Rng::seeded(5));
    let off_path = tape.gelu(p[0]); // recorded after the loss: receives no gradient
    grads.zero();
    tape.backward(loss, &mut grads);

    let mut fresh = Grads::new();
    tape.backward(loss, &mut fresh);
    for i in 0..tape.len() {
        let id = TensorId(i);
        assert_eq!(grads.get(id), fresh.get(id), "gradient of tensor {i} differs from a fresh pass");
    }
    assert!(grads.get(off_path).iter().all(|&g| g == 0.0));
}

/// The loss and parameter gradients of one step, run on a pool of `threads` threads.
fn step_on(threads: usize) -> (Vec<f32>, Vec<Vec<f32>>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
    pool.install(|| {
        let (mut tape, p, ids) = setup();
        let loss = forward(&mut tape, &p, &ids, &mut Rng::seeded(2));
        let mut grads = Grads::new();
        tape.backward(loss, &mut grads);
        (tape.data(loss).to_vec(), p.iter().map(|&id| grads.get(id).to_vec()).collect())
    })
}

#[test]
fn results_are_bit_identical_on_one_and_two_threads() {
    let (loss1, grads1) = step_on(1);
    let (loss2, grads2) = step_on(2);
    assert_eq!(loss1, loss2);
    assert_eq!(grads1, grads2);
}

#[test]
fn large_reductions_are_bit_identical_on_one_and_two_threads() {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
        pool.install(|| {
            let mut rng = Rng::seeded(3);
            let mut tape = Tape::new();
            let x = tape.param("x", Tensor::randn(&[700, 37], 1.0, &mut rng));
            let g = tape.param("g", Tensor::randn(&[37], 1.0, &mut rng));
            let b = tape.param("b", Tensor::randn(&[37], 1.0, &mut rng));
            let y = tape.layernorm(x, g, b);
            let s = tape.sum(y);
            let dout: Vec<f32> = (0..700 * 37).map(|_| rng.normal()).collect();
            let mut grads = Grads::new();
            tape.backward_from(y, &dout, &mut grads);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>();
            (tape.data(s)[0].to_bits(), bits(grads.get(x)), bits(grads.get(g)), bits(grads.get(b)))
        })
    };
    assert_eq!(run(1), run(2));
}

#[test]
#[should_panic(expected = "add: a is [8, 64] but b is [8, 65]")]
fn add_panics_on_mismatched_shapes() {
    let mut tape = Tape::new();
    let a = tape.constant(&[8, 64], &[0.0; 8 * 64]);
    let b = tape.constant(&[8, 65], &[0.0; 8 * 65]);
    tape.add(a, b);
}

#[test]
#[should_panic(expected = "transpose12: x is [2, 3, 4]; it must have 4 dimensions")]
fn transpose12_panics_on_three_dimensions() {
    let mut tape = Tape::new();
    let x = tape.constant(&[2, 3, 4], &[0.0; 24]);
    tape.transpose12(x);
}
