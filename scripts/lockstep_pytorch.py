"""Trains the PyTorch model of reference_gpt.py from the start of a Quill run: the same
initial weights, the same batches in the same order, the same AdamW, learning-rate schedule
and clipping. Prints the loss and gradient norm at a few steps, then the loss over every
window of the validation split, to set beside Quill's own run of the config
(`train --config CONFIG`, then `train --evaluate runs/NAME`). The start is written by

    cargo run --release -p quill-train --example export_start -- configs/small.toml /tmp/start
    python3 scripts/lockstep_pytorch.py /tmp/start [--threads 2]

Seeds aside, this is the whole difference between two implementations of one recipe: if
the two runs agree here, a gap between their results at some seed is the seed's.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from reference_gpt import GPT  # noqa: E402


def token_file(path):
    """The tokens of a Quill token file: a 32-byte header (magic, version, width, vocab, count)."""
    raw = open(path, "rb").read()
    width, _, count = struct.unpack("<IQQ", raw[12:32])
    return torch.from_numpy(np.frombuffer(raw[32:], dtype={1: np.uint8, 2: np.uint16, 4: np.uint32}[width])
                            .astype(np.int64)[:count])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("start", help="the folder export_start wrote")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    r = json.load(open(os.path.join(args.start, "recipe.json")))
    B, T, steps = r["batch_size"], r["block_size"], r["steps"]
    model = GPT(dict(vocab_size=r["vocab_size"], block_size=T, n_layer=r["n_layer"], n_head=r["n_head"],
                     n_embd=r["n_embd"], bias=r["bias"], dropout=0.0))

    weights = np.fromfile(os.path.join(args.start, "weights.f32"), dtype="<f4")
    params, at = dict(model.named_parameters()), 0
    for line in open(os.path.join(args.start, "names.txt")):
        name, shape = line.split()
        shape = [int(d) for d in shape.split(",")]
        n = math.prod(shape)
        with torch.no_grad():
            params[name].copy_(torch.from_numpy(weights[at:at + n].reshape(shape).copy()))
        at += n
    assert at == len(weights), "names.txt and weights.f32 disagree"
    batches = np.fromfile(os.path.join(args.start, "batches.u32"), dtype="<u4").astype(np.int64)
    batches = batches.reshape(steps, 2, B, T)

    opt = model.optimizer(lr=r["learning_rate"], weight_decay=r["weight_decay"], betas=(r["beta1"], r["beta2"]))
    lr, min_lr, warmup, decay_iters = r["learning_rate"], r["min_lr"], r["warmup_iters"], r["lr_decay_iters"]

    def get_lr(it):
        if not r["decay_lr"]:
            return lr
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay_iters or decay_iters == warmup:
            return min_lr
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * (it - warmup) / (decay_iters - warmup))) * (lr - min_lr)

    shown = {1, 10, 100, steps} | {s for s in range(250, steps + 1, 250)}
    for it in range(steps):
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        _, loss = model(torch.from_numpy(batches[it, 0]), torch.from_numpy(batches[it, 1]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), r["grad_clip"] if r["grad_clip"] > 0 else math.inf)
        opt.step()
        if it + 1 in shown:
            print(f"step {it + 1}: loss {loss.item():.6f}, grad norm {norm.item():.6f}", flush=True)

    loss, windows = model.split_loss(token_file(r["val"]), B)
    print(f"val loss over all {windows} windows: {loss:.4f}")


if __name__ == "__main__":
    main()
