//! `Grads`: one gradient buffer per tensor id, kept from step to step.
//!
//! Parameter gradients accumulate across backward passes until [`Grads::zero`] (so
//! micro-batches add up); activation gradients are zeroed by each backward pass itself.

use crate::tape::{Tape, TensorId};

#[derive(Default)]
pub struct Grads {
    slots: Vec<Vec<f32>>,
    n_params: usize,
}

impl Grads {
    pub fn new() -> Grads {
        Grads::default()
    }

    /// The gradient of a tensor after backward; empty when it received none.
    pub fn get(&self, id: TensorId) -> &[f32] {
        self.slots.get(id.0).map(|g| g.as_slice()).unwrap_or(&[])
    }

    pub fn get_mut(&mut self, id: TensorId) -> &mut [f32] {
        self.slots.get_mut(id.0).map(|g| g.as_mut_slice()).unwrap_or(&mut [])
    }

    /// Zeroes every parameter gradient, once per optimizer step, and empties the
    /// activation gradients (the next backward zeroes those it uses; emptying keeps their
    /// memory, so clearing them costs nothing).
    pub fn zero(&mut self) {
        let n_params = self.n_params.min(self.slots.len());
        let (params, activations) = self.slots.split_at_mut(n_params);
        params.iter_mut().for_each(|g| g.fill(0.0));
        activations.iter_mut().for_each(Vec::clear);
    }

    /// Zeroes the activation gradients of this step's tensors that need one, and makes
    /// sure every parameter has a (zero-initialised) slot.
    pub(crate) fn begin_backward(&mut self, tape: &Tape) {
        if self.slots.len() < tape.len() {
            self.slots.resize_with(tape.len(), Vec::new);
        }
        self.n_params = tape.n_params();
        for i in 0..tape.len() {
            let id = TensorId(i);
            let numel = tape.value(id).data.len();
            let g = &mut self.slots[i];
            if !tape.needs_grad(id) {
                g.clear();
            } else if i >= self.n_params || g.len() != numel {
                g.clear();
                g.resize(numel, 0.0);
            }
        }
    }

    /// The gradient buffer of `id`, created as zeros of length `numel` if missing.
    pub fn slot(&mut self, id: TensorId, numel: usize) -> &mut [f32] {
        if self.slots.len() <= id.0 {
            self.slots.resize_with(id.0 + 1, Vec::new);
        }
        let g = &mut self.slots[id.0];
        if g.len() != numel {
            g.clear();
            g.resize(numel, 0.0);
        }
        g
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
