//! Embedding lookup: `out = table[ids]`, one row of the table per id. Backward scatter-adds
//! each output row's gradient into its id's row of the table; repeated ids accumulate.

use crate::grads::Grads;
use crate::ops::ROW_CHUNK;
use crate::tape::{Op, Record, Tape, TensorId};
use rayon::prelude::*;

/// `out[r] = table[ids[r]]`.  table: (v, c)  ids: (n), each < v  →  out: (n, c).
/// Panics (naming the op and the shapes) on an id ≥ v. Saves nothing; the ids go into
/// the record.
pub fn embedding_forward(out: &mut [f32], table: &[f32], ids: &[u32], n: usize, c: usize, v: usize) {
    debug_assert!(out.len() == n * c && table.len() == v * c && ids.len() == n);
    check_ids(ids, v, c);
    if c == 0 {
        return;
    }
    out.par_chunks_mut(ROW_CHUNK * c).zip(ids.par_chunks(ROW_CHUNK)).for_each(|(out, ids)| {
        for (row, &id) in out.chunks_exact_mut(c).zip(ids) {
            let id = id as usize;
            row.copy_from_slice(&table[id * c..(id + 1) * c]);
        }
    });
}

/// Backward of `out[r] = table[ids[r]]`: `dtable[ids[r]] += dout[r]` for every r.
/// dout: (n, c)  ids: (n)  →  dtable: (v, c).
///
/// Deterministic and parallel: the positions are first grouped by id (a counting sort,
/// which keeps them in increasing order), then each table row sums its own positions'
/// gradients in that order, in parallel over chunks of table rows. No two tasks write
/// the same row, and each row's additions happen in the same order on any thread count.
pub fn embedding_backward(dtable: &mut [f32], dout: &[f32], ids: &[u32], n: usize, c: usize, v: usize) {
    debug_assert!(dtable.len() == v * c && dout.len() == n * c && ids.len() == n);
    check_ids(ids, v, c);
    if c == 0 {
        return;
    }
    // start[id]..start[id + 1] indexes `positions` for the rows that looked up `id`.
    let mut start = vec![0usize; v + 1];
    for &id in ids {
        start[id as usize + 1] += 1;
    }
    for i in 0..v {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut positions = vec![0usize; n];
    for (r, &id) in ids.iter().enumerate() {
        positions[next[id as usize]] = r;
        next[id as usize] += 1;
    }
    dtable.par_chunks_mut(ROW_CHUNK * c).enumerate().for_each(|(chunk, rows)| {
        for (i, row) in rows.chunks_exact_mut(c).enumerate() {
            let id = chunk * ROW_CHUNK + i;
            for &r in &positions[start[id]..start[id + 1]] {
                row.iter_mut().zip(&dout[r * c..(r + 1) * c]).for_each(|(g, d)| *g += d);
            }
        }
    });
}

/// Panics on the first id that is out of range for a table of `v` rows.
fn check_ids(ids: &[u32], v: usize, c: usize) {
    if let Some((pos, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= v) {
        panic!(
            "embedding: id {id} at position {pos} of {} ids is out of range for a table of shape [{v}, {c}]",
            ids.len()
        );
    }
}

impl Tape {
    /// table (v, c) looked up at `ids` → `shape + [c]`, where `shape` multiplies to `ids.len()`.
    /// Panics on an id ≥ v.
    pub fn embedding(&mut self, table: TensorId, ids: &[u32], shape: &[usize]) -> TensorId {
        let ts = self.shape(table).to_vec();
        assert!(ts.len() == 2, "embedding: table is {ts:?}; it must be (vocab, dim)");
        let (v, c) = (ts[0], ts[1]);
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            ids.len(),
            "embedding: shape {shape:?} holds {n} ids but {} were given (table is {ts:?})",
            ids.len()
        );
        let mut out_shape = shape.to_vec();
        out_shape.push(c);
        let out = self.alloc(&out_shape, self.any_needs_grad(&[table]));
        let (ins, outs) = self.split_at_mut(out);
        embedding_forward(&mut outs[0].data, &ins[table.0].data, ids, n, c, v);
        self.record(Op::Embedding { n, c, v }, &[table], out, &[], ids);
        out
    }
}

pub(crate) fn backward(rec: &Record, dout: &[f32], grads: &mut Grads, n: usize, c: usize, v: usize) {
    let table = rec.inputs[0];
    embedding_backward(grads.slot(table, v * c), dout, &rec.ids, n, c, v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::gradcheck;
    use crate::rng::Rng;
    use crate::tensor::Tensor;

    #[test]
    fn embedding_backward_matches_finite_differences() {
        let mut rng = Rng::seeded(6);
        let table = Tensor::randn(&[41, 37], 1.0, &mut rng);
        // 7 × 5 positions with repeated ids, and ids never looked up.
        let ids: Vec<u32> = (0..35).map(|i| (i * 7 % 23) as u32).chain([40, 3, 3]).collect();
        gradcheck("embedding", &[&table], |tape, t| tape.embedding(t[0], &ids, &[2, 19]));
    }

    #[test]
    fn repeated_ids_accumulate() {
        let (n, c, v) = (5, 3, 4);
        let ids = [2, 0, 2, 2, 3];
        let dout: Vec<f32> = (0..n * c).map(|i| i as f32).collect();
        let mut dtable = vec![1.0; v * c];
        embedding_backward(&mut dtable, &dout, &ids, n, c, v);
        let expected = [4.0, 5.0, 6.0, 1.0, 1.0, 1.0, 16.0, 19.0, 22.0, 13.0, 14.0, 15.0];
        assert_eq!(dtable, expected);
    }

    #[test]
    #[should_panic(
        expected = "embedding: id 9 at position 2 of 3 ids is out of range for a table of shape [9, 4]"
    )]
    fn embedding_panics_on_id_out_of_range() {
        let mut tape = Tape::new();
        let table = tape.param("wte", Tensor::zeros(&[9, 4]));
        tape.embedding(table, &[0, 8, 9], &[3]);
    }
}
