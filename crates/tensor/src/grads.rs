//! `Grads`: one gradient buffer per tensor id, kept from step to step.
//!
//! Parameter gradients accumulate across backward passes until [`Grads::zero`] (so
//! micro-batches add up). Activation gradients start each backward pass *unwritten*: their
//! buffers keep last step's values, and the first op to contribute overwrites the whole
//! buffer ([`Grads::slot_to_write`]) instead of adding into zeros, which spares a memset
//! of every activation's gradient per step. An op that can only add asks for
//! [`Grads::slot`], which zeroes an unwritten buffer first.
//!
//! A trainer reads only parameter gradients, and [`Grads::params_only`] gives it a store
//! that keeps no other: once the op that produced an activation has run its backward,
//! nothing reads that activation's gradient again, so its buffer goes to a pool of spare
//! buffers, and the next gradient of the same size takes the most recently returned one.
//! A backward pass then works in a few buffers, often still in the cache, instead of one
//! per activation (for a GPT, about as much memory again as its activations). The
//! arithmetic is the same, so are the bits.

use rayon::prelude::*;

use crate::tape::{Tape, TensorId};

#[derive(Default)]
pub struct Grads {
    slots: Vec<Vec<f32>>,
    /// Per slot: it holds no contribution of this backward pass yet (its values are stale).
    unwritten: Vec<bool>,
    /// Per slot: the tensor needs a gradient (set for each backward pass).
    wanted: Vec<bool>,
    n_params: usize,
    /// Whether an activation's gradient buffer goes to `spare` once it has been used.
    recycle: bool,
    /// Buffers of used activation gradients (stale values), the most recently used last.
    spare: Vec<Vec<f32>>,
}

/// Values zeroed per parallel task.
const ZERO_CHUNK: usize = 1 << 16;

/// Sets every value to zero, in parallel for long buffers.
fn zero_fill(g: &mut [f32]) {
    g.par_chunks_mut(ZERO_CHUNK).for_each(|c| c.fill(0.0));
}

impl Grads {
    /// A store that keeps every tensor's gradient after backward.
    pub fn new() -> Grads {
        Grads::default()
    }

    /// A store that keeps only parameter gradients after backward: the gradient buffer of
    /// each tensor an op produced is reused once that op's backward has read it (see the
    /// module comment), and [`Grads::get`] returns an empty slice for such tensors. Its pool
    /// of spare buffers holds the most a backward pass needed at once; it is meant for
    /// steps of repeating shapes, as in training.
    pub fn params_only() -> Grads {
        Grads { recycle: true, ..Grads::default() }
    }

    /// Values held in gradient buffers, spare ones included: what the store takes in memory.
    pub fn held_values(&self) -> usize {
        self.slots.iter().chain(&self.spare).map(|g| g.len()).sum()
    }

    /// The gradient of a tensor after backward; empty when it received none.
    pub fn get(&self, id: TensorId) -> &[f32] {
        self.slots.get(id.0).map(|g| g.as_slice()).unwrap_or(&[])
    }

    pub fn get_mut(&mut self, id: TensorId) -> &mut [f32] {
        self.slots.get_mut(id.0).map(|g| g.as_mut_slice()).unwrap_or(&mut [])
    }

    /// Zeroes every parameter gradient, once per optimizer step. (Activation gradients
    /// need nothing: each backward pass starts them unwritten.)
    pub fn zero(&mut self) {
        let n_params = self.n_params.min(self.slots.len());
        self.slots[..n_params].iter_mut().for_each(|g| zero_fill(g));
    }

    /// Prepares the slots of this step's tensors: each activation that needs a gradient is
    /// marked unwritten and has a buffer of its size (or, in a [`Grads::params_only`]
    /// store, none until its first contribution takes one from the pool); every parameter
    /// has a (zero-initialised) slot; tensors that need no gradient have an empty one.
    pub(crate) fn begin_backward(&mut self, tape: &Tape) {
        if self.slots.len() < tape.len() {
            self.slots.resize_with(tape.len(), Vec::new);
        }
        for flags in [&mut self.unwritten, &mut self.wanted] {
            flags.clear();
            flags.resize(self.slots.len(), false);
        }
        self.n_params = tape.n_params();
        for i in 0..tape.len() {
            let id = TensorId(i);
            let numel = tape.value(id).data.len();
            let g = &mut self.slots[i];
            if !tape.needs_grad(id) {
                g.clear();
                continue;
            }
            self.wanted[i] = true;
            if i < self.n_params {
                if g.len() != numel {
                    g.clear();
                    g.resize(numel, 0.0);
                }
                continue;
            }
            self.unwritten[i] = true;
            if !self.recycle {
                // Stale values are fine: the first contribution overwrites or zeroes them.
                g.resize(numel, 0.0);
            } else if !g.is_empty() {
                // A buffer left from the last pass (an input that no op produced).
                self.spare.push(std::mem::take(g));
            }
        }
    }

    /// Whether `id` receives a gradient in this backward pass.
    pub(crate) fn wants(&self, id: TensorId) -> bool {
        self.wanted.get(id.0).copied().unwrap_or(false)
    }

    /// Whether `id`'s slot has received no contribution in this backward pass (its
    /// gradient is zero, and its buffer holds stale values).
    pub(crate) fn is_unwritten(&self, id: TensorId) -> bool {
        self.unwritten.get(id.0).copied().unwrap_or(false)
    }

    /// Zeroes the slots that received no contribution, at the end of a backward pass, so
    /// that every gradient read afterwards is right.
    pub(crate) fn end_backward(&mut self) {
        for (g, unwritten) in self.slots.iter_mut().zip(&mut self.unwritten) {
            if std::mem::take(unwritten) {
                zero_fill(g);
            }
        }
    }

    /// The gradient buffer of `id` for adding into, created as zeros of length `numel` if
    /// missing (and zeroed if it is unwritten).
    pub fn slot(&mut self, id: TensorId, numel: usize) -> &mut [f32] {
        let (g, accumulate) = self.slot_to_write(id, numel);
        if !accumulate {
            zero_fill(g);
        }
        g
    }

    /// The gradient buffer of `id` (length `numel`) for an op that writes all of it, and
    /// whether the op must add into it (`true`: it already holds contributions) or
    /// overwrite it (`false`: it is this pass's first contribution, over stale values).
    pub fn slot_to_write(&mut self, id: TensorId, numel: usize) -> (&mut [f32], bool) {
        if self.slots.len() <= id.0 {
            self.slots.resize_with(id.0 + 1, Vec::new);
        }
        let unwritten = self.unwritten.get_mut(id.0).map(std::mem::take).unwrap_or(false);
        if self.slots[id.0].len() != numel {
            // A spare buffer of this size, the most recently used one, else a new one.
            let spare = self.spare.iter().rposition(|g| g.len() == numel);
            self.slots[id.0] = match spare {
                Some(i) => self.spare.remove(i),
                None => vec![0.0; numel],
            };
            return (&mut self.slots[id.0], false);
        }
        (&mut self.slots[id.0], !unwritten)
    }

    /// Runs one op's backward: lends `f` the gradient of the op's `output` (`dout`, to
    /// read) together with the store (to write the gradients of the op's inputs). The
    /// buffer is out of the store meanwhile, so reading it while writing others takes no
    /// copy. The op is the last reader of its output's gradient (every consumer of the
    /// output ran its backward before), so afterwards a [`Grads::params_only`] store takes
    /// the buffer back into its pool; any other store keeps it in its slot.
    pub(crate) fn with_output<R>(&mut self, output: TensorId, f: impl FnOnce(&mut Grads, &[f32]) -> R) -> R {
        let dout = self.take(output);
        let result = f(self, &dout);
        if self.recycle && output.0 >= self.n_params && !dout.is_empty() {
            self.spare.push(dout);
        } else {
            self.put(output, dout);
        }
        result
    }

    /// Takes a gradient buffer out (to read it while writing another); give it back
    /// with [`Grads::put`].
    pub fn take(&mut self, id: TensorId) -> Vec<f32> {
        std::mem::take(&mut self.slots[id.0])
    }

    pub fn put(&mut self, id: TensorId, g: Vec<f32>) {
        self.slots[id.0] = g;
    }
}
