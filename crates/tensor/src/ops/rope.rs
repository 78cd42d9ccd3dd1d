//! Rotary position embeddings (RoPE; Su et al. 2021, "RoFormer"): inside a fused q/k/v
//! row, each attention head's q and k are rotated by angles proportional to the row's
//! position, so that q·k depends on the two positions only through their difference. v
//! passes unchanged. The pairs rotated together are channel j and channel j + hs/2 of a
//! head (the "rotate half" layout of GPT-NeoX and Llama), with frequency
//! θ_j = base^(−2j/hs):
//!
//! ```text
//! out_j        = x_j · cos(p·θ_j) − x_{j+hs/2} · sin(p·θ_j)
//! out_{j+hs/2} = x_j · sin(p·θ_j) + x_{j+hs/2} · cos(p·θ_j)
//! ```
//!
//! The same functions serve the tape (positions 0..t of every sequence) and inference
//! with a KV cache (any position per row): [`rope_angles`] gives the cos and sin of one
//! position, [`rotate_qk`] rotates one row in place, so both paths compute the same bits.

use crate::grads::Grads;
use crate::ops::ROW_CHUNK;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// RoPE's base: θ_j = ROPE_BASE^(−2j/hs), as in RoFormer and Llama.
pub const ROPE_BASE: f64 = 10000.0;

/// cos(p·θ_j) and sin(p·θ_j) for j in 0..hs/2 (the lengths of `cos` and `sin`), computed
/// in f64 and rounded once, so that every path gets the same table for a position.
pub fn rope_angles(position: usize, cos: &mut [f32], sin: &mut [f32]) {
    debug_assert_eq!(cos.len(), sin.len());
    let half = cos.len();
    for (j, (c, s)) in cos.iter_mut().zip(sin.iter_mut()).enumerate() {
        let theta = ROPE_BASE.powf(-(j as f64) / half as f64);
        let angle = position as f64 * theta;
        (*c, *s) = (angle.cos() as f32, angle.sin() as f32);
    }
}

crate::simd::simd_dispatch!(
    /// Rotates every head's q and k of one fused row (3·nh·hs values: q, k, v) in place by
    /// the angles in `cos`, `sin` (hs/2 each, from [`rope_angles`]); with `inverse`, by the
    /// opposite angles (backward: a rotation's transpose is its inverse). No fused
    /// multiply-adds: the same bits in every variant.
    pub fn rotate_qk => rotate_qk_body(row: &mut [f32], nh: usize, cos: &[f32], sin: &[f32], inverse: bool)
);

#[inline(always)]
fn rotate_qk_body(row: &mut [f32], nh: usize, cos: &[f32], sin: &[f32], inverse: bool) {
    let half = cos.len();
    for head in row[..2 * nh * 2 * half].chunks_exact_mut(2 * half) {
        let (x1, x2) = head.split_at_mut(half);
        for (((a, b), &c), &s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
            let s = if inverse { -s } else { s };
            (*a, *b) = (*a * c - *b * s, *a * s + *b * c);
        }
    }
}

/// The (t, hs/2) tables of cos and sin for positions 0..t.
fn tables(t: usize, half: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut cos, mut sin) = (vec![0.0; t * half], vec![0.0; t * half]);
    for (p, (c, s)) in cos.chunks_exact_mut(half.max(1)).zip(sin.chunks_exact_mut(half.max(1))).enumerate() {
        rope_angles(p, c, s);
    }
    (cos, sin)
}

/// out = RoPE(qkv) for b sequences of t positions (row r is position r mod t).
/// qkv, out: (b·t, 3·nh·hs); cos, sin: (t, hs/2) from [`rope_angles`]. Saves nothing
/// (backward takes the same tables).
pub fn rope_forward(
    out: &mut [f32],
    qkv: &[f32],
    (cos, sin): (&[f32], &[f32]),
    t: usize,
    nh: usize,
    hs: usize,
) {
    let (row, half) = (3 * nh * hs, hs / 2);
    debug_assert!(out.len() == qkv.len() && qkv.len().is_multiple_of(row.max(1)) && cos.len() == t * half);
    if row == 0 {
        return;
    }
    out.par_chunks_mut(ROW_CHUNK * row).zip(qkv.par_chunks(ROW_CHUNK * row)).enumerate().for_each(
        |(chunk, (out, qkv))| {
            out.copy_from_slice(qkv);
            for (i, out) in out.chunks_exact_mut(row).enumerate() {
                let p = (chunk * ROW_CHUNK + i) % t;
                rotate_qk(out, nh, &cos[p * half..][..half], &sin[p * half..][..half], false);
            }
        },
    );
}

/// Backward of RoPE: each head's (dq, dk) rotated back by the forward's angles (the
/// rotation's transpose), dv passed through. dqkv += (or, unless `accumulate`, =) that.
/// dqkv, dout: (b·t, 3·nh·hs); cos, sin as in [`rope_forward`].
#[allow(clippy::too_many_arguments)]
pub fn rope_backward(
    dqkv: &mut [f32],
    accumulate: bool,
    dout: &[f32],
    (cos, sin): (&[f32], &[f32]),
    t: usize,
    nh: usize,
    hs: usize,
) {
    let (row, half) = (3 * nh * hs, hs / 2);
    debug_assert!(dqkv.len() == dout.len() && cos.len() == t * half);
    if row == 0 {
        return;
    }
    dqkv.par_chunks_mut(ROW_CHUNK * row).zip(dout.par_chunks(ROW_CHUNK * row)).enumerate().for_each(
        |(chunk, (dqkv, dout))| {
            let mut rotated = vec![0.0f32; row];
            for (i, (dx, dout)) in dqkv.chunks_exact_mut(row).zip(dout.chunks_exact(row)).enumerate() {
                let p = (chunk * ROW_CHUNK + i) % t;
                rotated.copy_from_slice(dout);
                rotate_qk(&mut rotated, nh, &cos[p * half..][..half], &sin[p * half..][..half], true);
                if accumulate {
                    dx.iter_mut().zip(&rotated).for_each(|(dx, &d)| *dx += d);
                } else {
                    dx.copy_from_slice(&rotated);
                }
            }
        },
    );
}

impl Tape {
    /// RoPE: qkv (b, t, 3C) with C = n_head · hs, hs even → (b, t, 3C), each head's q and
    /// k rotated by its position in 0..t, v unchanged.
    pub fn rope(&mut self, qkv: TensorId, n_head: usize) -> TensorId {
        let shape = self.shape(qkv).to_vec();
        let row = *shape.last().expect("rope: qkv has dimensions");
        assert!(
            shape.len() == 3 && n_head > 0 && row.is_multiple_of(6 * n_head),
            "rope: qkv is {shape:?}; it must be (b, t, 3 · n_head · head size) with an even head size, n_head = {n_head}"
        );
        let (b, t, hs) = (shape[0], shape[1], row / (3 * n_head));
        let (cos, sin) = tables(t, hs / 2);
        let out = self.alloc(&shape, self.any_needs_grad(&[qkv]));
        let (ins, outs) = self.split_at_mut(out);
        rope_forward(&mut outs[0].data, &ins[qkv.0].data, (&cos, &sin), t, n_head, hs);
        self.record(Op::Rope { b, t, nh: n_head, hs }, &[qkv], out, &[], &[]);
        out
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    rec: &Record,
    dout: &[f32],
    grads: &mut Grads,
    b: usize,
    t: usize,
    nh: usize,
    hs: usize,
) {
    let qkv = rec.inputs[0];
    let (cos, sin) = tables(t, hs / 2);
    let (dqkv, accumulate) = grads.slot_to_write(qkv, b * t * 3 * nh * hs);
    rope_backward(dqkv, accumulate, dout, (&cos, &sin), t, nh, hs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn rope_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(6);
        // 2 sequences of 11 positions (the chunks of rows straddle sequences), 2 heads of 6.
        let qkv = Tensor::randn(&[2, 11, 3 * 2 * 6], 1.0, &mut rng);
        gradcheck("rope", &[&qkv], |tape, t| tape.rope(t[0], 2));
        gradcheck("rope (twice)", &[&qkv], |tape, t| {
            let a = tape.rope(t[0], 2);
            let b = tape.rope(t[0], 2);
            tape.mul(a, b)
        });
    }

    #[test]
    fn rope_scores_depend_only_on_the_offset() {
        // q at position p and k at position p − 3 give the same dot product for every p.
        let (nh, hs) = (1, 8);
        let mut rng = Rng::seeded(7);
        let q = Tensor::randn(&[hs], 1.0, &mut rng).data;
        let k = Tensor::randn(&[hs], 1.0, &mut rng).data;
        let rotated = |x: &[f32], p: usize| {
            let mut row = [x, x, &[0.0; 8][..]].concat();
            let (mut cos, mut sin) = (vec![0.0; hs / 2], vec![0.0; hs / 2]);
            rope_angles(p, &mut cos, &mut sin);
            rotate_qk(&mut row, nh, &cos, &sin, false);
            row[..hs].to_vec()
        };
        let score = |p: usize| rotated(&q, p).iter().zip(rotated(&k, p - 3)).map(|(a, b)| a * b).sum::<f32>();
        let at_3 = score(3);
        for p in [4, 10, 50] {
            assert!((score(p) - at_3).abs() < 1e-4, "score at {p}: {} vs {at_3}", score(p));
        }
        // Position 0 is the identity; v is never touched.
        assert_eq!(rotated(&q, 0), q);
    }

    #[test]
    fn vector_kernel_gives_the_bits_of_the_portable_loop() {
        let mut rng = Rng::seeded(8);
        let (nh, hs) = (3, 10);
        let x = Tensor::randn(&[3 * nh * hs], 1.0, &mut rng).data;
        let (mut cos, mut sin) = (vec![0.0; hs / 2], vec![0.0; hs / 2]);
        rope_angles(17, &mut cos, &mut sin);
        let (mut a, mut b) = (x.clone(), x);
        rotate_qk(&mut a, nh, &cos, &sin, false);
        rotate_qk_body(&mut b, nh, &cos, &sin, false);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
