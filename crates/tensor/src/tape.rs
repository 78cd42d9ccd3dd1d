//! The tape: reverse-mode automatic differentiation in one file.
//!
//! **Tensors.** Every tensor of a step lives in one arena owned by the tape and is named
//! by a [`TensorId`], its index there. Parameters come first (ids `0..n_params`) and
//! persist across steps; activations follow and live for one step.
//!
//! **Forward records.** Each op (`Tape::matmul`, `Tape::add`, ..., one file each in
//! `ops/`) runs its forward kernel into a new tensor and appends one [`Record`]: the
//! [`Op`] with its dimensions, the input ids, the output id, and the ids of what its
//! backward will read (`mean`, `rstd`, `probs`). An op whose output needs no gradient
//! (none of its inputs needs one, or the tape is in no-grad mode) records nothing.
//!
//! **Execution order is a topological order.** An op can only read tensors that already
//! exist, so each record comes after the records that produced its inputs. Walking the
//! records from last to first therefore reaches every consumer of a tensor before its
//! producer: when the walk arrives at the op that made a tensor, that tensor's gradient
//! is complete.
//!
//! **Backward.** [`Tape::backward`] sets d loss / d loss = 1 and walks the records in
//! reverse. Each record goes, with its output's finished gradient `dout`, to the
//! `backward` of its op's module, which applies the chain rule: it adds
//! dout · ∂output/∂input to the gradient of each input that needs one. A record whose
//! output received no gradient is off the loss's path and is skipped.
//!
//! **Accumulation.** Gradients live in [`Grads`], keyed by tensor id, and contributions
//! add up: a tensor used by two ops gets the sum of both, with no special case. (The
//! first contribution of a pass overwrites the buffer's stale values instead of adding
//! to zeros; parameter gradients keep adding across passes until [`Grads::zero`].)
//!
//! ```text
//! forward          records                    backward, last record first
//! h = x · wᵀ       0: Matmul [x, w] -> h      dloss = 1
//! y = h + x        1: Add    [h, x] -> y      2: dy = dloss, in every element
//! loss = sum(y)    2: Sum    [y]    -> loss   1: dh = dy;  dx = dy
//!                                             0: dx += dh · w;  dw = dhᵀ · x
//! ```
//!
//! `ops/matmul.rs` shows one op whole: its forward and backward kernels, the `Tape`
//! method that runs forward and records, and the `backward` that unpacks a record.
//!
//! Between steps, [`Tape::reset`] forgets the activations and records but keeps their
//! buffers, so the next forward, which asks for the same shapes in the same order,
//! allocates nothing. [`on_pool`] keeps the worker threads awake through a pass, and
//! per-op timing lives in [`crate::profile`].

use crate::grads::Grads;
use crate::ops;
use crate::pool::on_pool;
use crate::profile::Profiler;
use crate::tensor::Tensor;

/// The index of a tensor in its tape's arena.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub usize);

/// One kind of operation with the dimensions its kernels need. Leading dimensions are
/// flattened into a row count (`n` rows of `c` values) wherever an op works row by row.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// out (n, oc) = x (n, c) · wᵀ + bias; inputs [x, w] or [x, w, bias].
    Matmul {
        n: usize,
        c: usize,
        oc: usize,
    },
    /// out (batch, m, n) = a (batch, m, k) · b (batch, k, n), or · bᵀ with b (batch, n, k).
    BatchMatmul {
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        transpose_b: bool,
    },
    /// out = a + b, same shapes.
    Add {
        n: usize,
    },
    /// out = a ⊙ b, same shapes.
    Mul {
        n: usize,
    },
    /// out = s · x.
    Scale {
        n: usize,
        s: f32,
    },
    /// out (n, c) = `table (v, c)[ids]`; the ids are in the record.
    Embedding {
        n: usize,
        c: usize,
        v: usize,
    },
    /// Row-wise layer norm; inputs [x, gamma, beta]; saved [mean, rstd].
    LayerNorm {
        n: usize,
        c: usize,
    },
    /// GPT-2's tanh approximation of GELU.
    Gelu {
        n: usize,
    },
    Relu {
        n: usize,
    },
    /// ReLU squared, max(x, 0)².
    Relu2 {
        n: usize,
    },
    /// Row-wise RMS norm with a gain; inputs `[x, gamma]`; saved `[rstd]`.
    RmsNorm {
        n: usize,
        c: usize,
    },
    /// QK-norm of fused q/k/v rows (n, 3·nh·hs): each head's q and k RMS-normalised, no
    /// gain; saved `[rstd]`, (n, 2·nh).
    QkNorm {
        n: usize,
        nh: usize,
        hs: usize,
    },
    /// Rotary position embeddings of the q and k heads of fused q/k/v rows (b, t, 3·nh·hs).
    Rope {
        b: usize,
        t: usize,
        nh: usize,
        hs: usize,
    },
    /// Row-wise softmax over the last dimension; backward reads its own output.
    Softmax {
        n: usize,
        c: usize,
    },
    /// Causal self-attention, fused per (batch, head); input qkv (b, t, 3c), out (b, t, c);
    /// saved `[lse]` or `[lse, probs]`: the log-sum-exp of each score row, (b, nh, t), and,
    /// for contexts up to `SAVE_PROBS_UP_TO` when a gradient is needed, the probabilities
    /// (b, nh, t · t rounded up to 16).
    Attention {
        b: usize,
        t: usize,
        nh: usize,
        hs: usize,
    },
    /// Mean cross-entropy of softmax(logits (n, v)) against the record's target ids,
    /// skipping `ignore_index`; out is a scalar; saved [probs (n, v)].
    CrossEntropy {
        n: usize,
        v: usize,
        ignore_index: Option<u32>,
    },
    /// Inverted dropout; saved `[mask]` holding 0 or 1/(1-p) per element.
    Dropout {
        n: usize,
        p: f32,
    },
    /// Sum of all elements; out is a scalar.
    Sum {
        n: usize,
    },
    /// Mean of all elements; out is a scalar.
    Mean {
        n: usize,
    },
    /// A copy with a new shape of the same size.
    Reshape {
        n: usize,
    },
    /// (d0, d1, d2, d3) → (d0, d2, d1, d3): splitting heads, and back.
    Transpose12 {
        d0: usize,
        d1: usize,
        d2: usize,
        d3: usize,
    },
}

/// One executed op: what backward needs to send gradients from `output` to `inputs`.
#[derive(Clone, Debug)]
pub struct Record {
    pub op: Op,
    pub inputs: Vec<TensorId>,
    pub output: TensorId,
    /// Tensors saved by forward for backward (`mean`, `rstd`, `probs`, ...).
    pub saved: Vec<TensorId>,
    /// Integer data the op read (token ids for embedding, targets for cross-entropy).
    pub ids: Vec<u32>,
}

/// A step's tensors (parameters first) and the records of the ops that made them.
#[derive(Default)]
pub struct Tape {
    values: Vec<Tensor>,
    needs_grad: Vec<bool>,
    param_names: Vec<String>,
    n_params: usize,
    /// Live tensors this step; `values[len..]` are spare buffers kept from earlier steps.
    len: usize,
    /// This step's records are `records[..n_records]`; the rest are kept from earlier
    /// steps so that recording reuses their vectors instead of allocating.
    records: Vec<Record>,
    n_records: usize,
    /// Time per op kind, when profiling is on (see [`Tape::set_profiling`]).
    pub(crate) profiler: Profiler,
    /// While set, no op output needs a gradient (see [`Tape::set_no_grad`]).
    no_grad: bool,
}

impl Op {
    /// The op's kind, as a short name for profiles and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Matmul { .. } => "matmul",
            Op::BatchMatmul { .. } => "batch_matmul",
            Op::Add { .. } => "add",
            Op::Mul { .. } => "mul",
            Op::Scale { .. } => "scale",
            Op::Embedding { .. } => "embedding",
            Op::LayerNorm { .. } => "layernorm",
            Op::Gelu { .. } => "gelu",
            Op::Relu { .. } => "relu",
            Op::Relu2 { .. } => "relu2",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::QkNorm { .. } => "qk_norm",
            Op::Rope { .. } => "rope",
            Op::Softmax { .. } => "softmax",
            Op::Attention { .. } => "attention",
            Op::CrossEntropy { .. } => "cross_entropy",
            Op::Dropout { .. } => "dropout",
            Op::Sum { .. } => "sum",
            Op::Mean { .. } => "mean",
            Op::Reshape { .. } => "reshape",
            Op::Transpose12 { .. } => "transpose12",
        }
    }
}

impl Tape {
    pub fn new() -> Tape {
        Tape::default()
    }

    /// Registers a parameter: persistent across steps, and it receives a gradient.
    /// Parameters must be registered before the first op of a step.
    pub fn param(&mut self, name: &str, value: Tensor) -> TensorId {
        assert_eq!(
            self.len, self.n_params,
            "Tape::param({name}): register parameters before recording any op (call reset first)"
        );
        assert!(
            self.values.len() == self.len,
            "Tape::param({name}): spare buffers exist; register parameters before the first step"
        );
        self.values.push(value);
        self.needs_grad.push(true);
        self.param_names.push(name.to_string());
        self.n_params += 1;
        self.len += 1;
        TensorId(self.len - 1)
    }

    /// A tensor of this step that needs no gradient (data, masks, constants).
    pub fn constant(&mut self, shape: &[usize], data: &[f32]) -> TensorId {
        let id = self.alloc(shape, false);
        assert_eq!(
            data.len(),
            self.values[id.0].data.len(),
            "Tape::constant: shape {shape:?} but {} values",
            data.len()
        );
        self.values[id.0].data.copy_from_slice(data);
        id
    }

    /// A tensor of this step that receives a gradient (for tests and custom inputs).
    pub fn variable(&mut self, value: &Tensor) -> TensorId {
        let id = self.alloc(&value.shape, true);
        self.values[id.0].data.copy_from_slice(&value.data);
        id
    }

    /// Ends a step: forgets activations and records, keeps parameters and buffers.
    pub fn reset(&mut self) {
        self.len = self.n_params;
        self.n_records = 0;
        self.profiler.restart();
    }

    pub fn value(&self, id: TensorId) -> &Tensor {
        assert!(id.0 < self.len, "tape: tensor {} is not live (only {} are)", id.0, self.len);
        &self.values[id.0]
    }

    /// Mutable access, meant for parameters (the optimizer, loading a checkpoint).
    pub fn value_mut(&mut self, id: TensorId) -> &mut Tensor {
        assert!(id.0 < self.len, "tape: tensor {} is not live (only {} are)", id.0, self.len);
        &mut self.values[id.0]
    }

    /// Every parameter, in registration order, to update in place (the optimizer).
    pub fn params_mut(&mut self) -> &mut [Tensor] {
        &mut self.values[..self.n_params]
    }

    pub fn data(&self, id: TensorId) -> &[f32] {
        &self.value(id).data
    }

    pub fn shape(&self, id: TensorId) -> &[usize] {
        &self.value(id).shape
    }

    pub fn needs_grad(&self, id: TensorId) -> bool {
        self.needs_grad[id.0]
    }

    pub fn n_params(&self) -> usize {
        self.n_params
    }

    /// Every live tensor, parameters first; the size of the arena this step.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Parameters in registration order: (id, name, value).
    pub fn params(&self) -> impl Iterator<Item = (TensorId, &str, &Tensor)> {
        (0..self.n_params).map(|i| (TensorId(i), self.param_names[i].as_str(), &self.values[i]))
    }

    pub fn param_name(&self, id: TensorId) -> &str {
        &self.param_names[id.0]
    }

    pub fn records(&self) -> &[Record] {
        &self.records[..self.n_records]
    }

    /// A new tensor of this step. Its contents are unspecified (a reused buffer): the
    /// forward kernel that fills it must write every element.
    pub fn alloc(&mut self, shape: &[usize], needs_grad: bool) -> TensorId {
        let numel: usize = shape.iter().product();
        if self.len == self.values.len() {
            self.values.push(Tensor::default());
            self.needs_grad.push(false);
        }
        let t = &mut self.values[self.len];
        t.shape.clear();
        t.shape.extend_from_slice(shape);
        t.data.resize(numel, 0.0);
        self.needs_grad[self.len] = needs_grad;
        self.len += 1;
        TensorId(self.len - 1)
    }

    /// Splits the arena at `first_output`: every tensor before it (the inputs) to read,
    /// and it and every tensor after it (the outputs just allocated) to write.
    pub fn split_at_mut(&mut self, first_output: TensorId) -> (&[Tensor], &mut [Tensor]) {
        let (inputs, outputs) = self.values[..self.len].split_at_mut(first_output.0);
        (inputs, outputs)
    }

    /// Whether any of `inputs` needs a gradient (then so does the op's output).
    pub fn any_needs_grad(&self, inputs: &[TensorId]) -> bool {
        !self.no_grad && inputs.iter().any(|id| self.needs_grad[id.0])
    }

    /// While on, no op output needs a gradient, so ops skip what only backward would read
    /// (attention's probabilities): for forwards that are never differentiated, such as
    /// evaluation. Parameters keep their gradients; `reset` leaves the setting as it is.
    pub fn set_no_grad(&mut self, on: bool) {
        self.no_grad = on;
    }

    pub fn record(&mut self, op: Op, inputs: &[TensorId], output: TensorId, saved: &[TensorId], ids: &[u32]) {
        self.profiler.forward(op.name());
        if self.needs_grad[output.0] {
            if self.n_records == self.records.len() {
                let empty = Record { op: op.clone(), inputs: vec![], output, saved: vec![], ids: vec![] };
                self.records.push(empty);
            }
            let rec = &mut self.records[self.n_records];
            self.n_records += 1;
            (rec.op, rec.output) = (op, output);
            for (to, from) in [(&mut rec.inputs, inputs), (&mut rec.saved, saved)] {
                to.clear();
                to.extend_from_slice(from);
            }
            rec.ids.clear();
            rec.ids.extend_from_slice(ids);
        }
    }

    /// Backpropagates from a scalar loss: accumulates d loss / d t into `grads` for every
    /// tensor t that needs a gradient. Parameter gradients add to what `grads` already
    /// holds (gradient accumulation); call [`Grads::zero`] once per optimizer step.
    pub fn backward(&self, loss: TensorId, grads: &mut Grads) {
        assert_eq!(
            self.value(loss).data.len(),
            1,
            "backward: the loss must be a scalar, found shape {:?}",
            self.shape(loss)
        );
        self.backward_from(loss, &[1.0], grads);
    }

    /// Backpropagates from any tensor, given the gradient of some scalar with respect to
    /// it (`dout`, same size as the tensor).
    /// Runs on a thread of the current rayon pool (see [`on_pool`]).
    pub fn backward_from(&self, output: TensorId, dout: &[f32], grads: &mut Grads) {
        assert_eq!(dout.len(), self.value(output).data.len(), "backward_from: dout has the wrong size");
        on_pool(|| {
            let mut timer = self.profiler.backward_pass();
            grads.begin_backward(self);
            // The seed: the gradient of the output itself.
            grads.slot(output, dout.len()).iter_mut().zip(dout).for_each(|(g, d)| *g += d);
            for rec in self.records().iter().rev() {
                if rec.output.0 > output.0 || grads.is_unwritten(rec.output) {
                    continue; // recorded after the output, or off its path: no gradient flows
                }
                // Every consumer of rec.output has run its backward: its gradient is final.
                timer.time(rec.op.name(), || {
                    grads.with_output(rec.output, |grads, dout| self.backward_op(rec, dout, grads))
                });
            }
            grads.end_backward();
        })
    }

    /// Hands one record and its output's gradient `dout` to the op's module, whose
    /// `backward` adds the op's contribution to the gradient of each of its inputs.
    fn backward_op(&self, rec: &Record, dout: &[f32], grads: &mut Grads) {
        match &rec.op {
            Op::Matmul { n, c, oc } => ops::matmul::backward(self, rec, dout, grads, *n, *c, *oc),
            Op::BatchMatmul { batch, m, k, n, transpose_b } => {
                ops::batch_matmul::backward(self, rec, dout, grads, *batch, *m, *k, *n, *transpose_b)
            }
            Op::Add { n } => ops::elementwise::add_backward(rec, dout, grads, *n),
            Op::Mul { n } => ops::elementwise::mul_backward(self, rec, dout, grads, *n),
            Op::Scale { n, s } => ops::elementwise::scale_backward(rec, dout, grads, *n, *s),
            Op::Embedding { n, c, v } => ops::embedding::backward(rec, dout, grads, *n, *c, *v),
            Op::LayerNorm { n, c } => ops::layernorm::backward(self, rec, dout, grads, *n, *c),
            Op::Gelu { n } => ops::elementwise::gelu_backward(self, rec, dout, grads, *n),
            Op::Relu { n } => ops::elementwise::relu_backward(self, rec, dout, grads, *n),
            Op::Relu2 { n } => ops::elementwise::relu2_backward(self, rec, dout, grads, *n),
            Op::RmsNorm { n, c } => ops::rmsnorm::backward(self, rec, dout, grads, *n, *c),
            Op::QkNorm { n, nh, hs } => {
                ops::rmsnorm::qk_norm_backward_op(self, rec, dout, grads, *n, *nh, *hs)
            }
            Op::Rope { b, t, nh, hs } => ops::rope::backward(rec, dout, grads, *b, *t, *nh, *hs),
            Op::Softmax { n, c } => ops::softmax::backward(self, rec, dout, grads, *n, *c),
            Op::Attention { b, t, nh, hs } => {
                ops::attention::backward(self, rec, dout, grads, *b, *t, *nh, *hs)
            }
            Op::CrossEntropy { n, v, ignore_index } => {
                ops::cross_entropy::backward(self, rec, dout, grads, *n, *v, *ignore_index)
            }
            Op::Dropout { n, p } => ops::dropout::backward(self, rec, dout, grads, *n, *p),
            Op::Sum { n } => ops::reduce::sum_backward(rec, dout, grads, *n),
            Op::Mean { n } => ops::reduce::mean_backward(rec, dout, grads, *n),
            Op::Reshape { n } => ops::shape::reshape_backward(rec, dout, grads, *n),
            Op::Transpose12 { d0, d1, d2, d3 } => {
                ops::shape::transpose12_backward(rec, dout, grads, *d0, *d1, *d2, *d3)
            }
        }
    }
}
