//! The same inputs give bit-identical outputs and gradients whatever the rayon thread
//! count: a small GPT-like graph (embeddings, layernorm, matmul, attention, GELU,
//! residual adds, dropout, cross-entropy) runs forward and backward on 1, 2 and 3
//! threads, and every tensor and every gradient is compared bit for bit.

use tensor::{Grads, Rng, Tape, Tensor, TensorId};

const B: usize = 6;
const T: usize = 37;
const C: usize = 48;
const N_HEAD: usize = 4;
const VOCAB: usize = 67;
const IGNORE: u32 = u32::MAX;

/// Every value on the tape after forward, and every gradient after backward, as bits.
struct Run {
    values: Vec<Vec<u32>>,
    grads: Vec<Vec<u32>>,
    loss: f32,
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}

/// One forward and backward of a one-block GPT on b·t = 222 rows (enough that rayon splits
/// every kernel's work into several tasks).
fn forward_backward() -> Run {
    let mut rng = Rng::seeded(42);
    let mut tape = Tape::new();
    let mut param = |tape: &mut Tape, name: &str, shape: &[usize], std: f32| {
        tape.param(name, Tensor::randn(shape, std, &mut rng))
    };
    let wte = param(&mut tape, "wte", &[VOCAB, C], 0.5);
    let wpe = param(&mut tape, "wpe", &[T, C], 0.5);
    let ln1_g = param(&mut tape, "ln1.weight", &[C], 1.0);
    let ln1_b = param(&mut tape, "ln1.bias", &[C], 0.1);
    let w_qkv = param(&mut tape, "attn.c_attn.weight", &[3 * C, C], 0.3);
    let b_qkv = param(&mut tape, "attn.c_attn.bias", &[3 * C], 0.1);
    let w_proj = param(&mut tape, "attn.c_proj.weight", &[C, C], 0.2);
    let ln2_g = param(&mut tape, "ln2.weight", &[C], 1.0);
    let ln2_b = param(&mut tape, "ln2.bias", &[C], 0.1);
    let w_fc = param(&mut tape, "mlp.c_fc.weight", &[4 * C, C], 0.2);
    let b_fc = param(&mut tape, "mlp.c_fc.bias", &[4 * C], 0.1);
    let w_out = param(&mut tape, "mlp.c_proj.weight", &[C, 4 * C], 0.1);

    let tokens: Vec<u32> = (0..B * T).map(|i| ((i * 31 + 7) % VOCAB) as u32).collect();
    let positions: Vec<u32> = (0..B * T).map(|i| (i % T) as u32).collect();
    let targets: Vec<u32> =
        (0..B * T).map(|i| if i % 11 == 0 { IGNORE } else { ((i * 17 + 3) % VOCAB) as u32 }).collect();

    let tok = tape.embedding(wte, &tokens, &[B, T]); // (B, T, C)
    let pos = tape.embedding(wpe, &positions, &[B, T]); // (B, T, C)
    let x = tape.add(tok, pos);
    let h = tape.layernorm(x, ln1_g, ln1_b);
    let qkv = tape.matmul(h, w_qkv, Some(b_qkv)); // (B, T, 3C)
    let att = tape.attention(qkv, N_HEAD); // (B, T, C)
    let att = tape.matmul(att, w_proj, None);
    let mut dropout_rng = Rng::seeded(7);
    let att = tape.dropout(att, 0.1, &mut dropout_rng);
    let x = tape.add(x, att);
    let h = tape.layernorm(x, ln2_g, ln2_b);
    let h = tape.matmul(h, w_fc, Some(b_fc)); // (B, T, 4C)
    let h = tape.gelu(h);
    let h = tape.matmul(h, w_out, None); // (B, T, C)
    let x = tape.add(x, h);
    let logits = tape.matmul(x, wte, None); // (B, T, VOCAB), tied to the token embedding
    let loss = tape.cross_entropy(logits, &targets, Some(IGNORE));

    let mut grads = Grads::new();
    tape.backward(loss, &mut grads);
    let ids = (0..tape.len()).map(TensorId);
    Run {
        values: ids.clone().map(|id| bits(tape.data(id))).collect(),
        grads: ids.map(|id| bits(grads.get(id))).collect(),
        loss: tape.data(loss)[0],
    }
}

fn run_on(threads: usize) -> Run {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon thread pool")
        .install(forward_backward)
}

#[test]
fn forward_and_backward_are_bit_identical_for_any_thread_count() {
    let one = run_on(1);
    assert!(one.loss.is_finite() && one.loss > 0.0, "loss {}", one.loss);
    assert!(one.grads.iter().filter(|g| !g.is_empty()).count() >= 12, "every parameter gets a gradient");
    for threads in [2, 3] {
        let many = run_on(threads);
        assert_eq!(one.values.len(), many.values.len());
        for (id, (a, b)) in one.values.iter().zip(&many.values).enumerate() {
            assert!(a == b, "tensor {id} differs between 1 and {threads} threads");
        }
        for (id, (a, b)) in one.grads.iter().zip(&many.grads).enumerate() {
            assert!(a == b, "gradient of tensor {id} differs between 1 and {threads} threads");
        }
    }
}
