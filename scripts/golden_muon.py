"""Writes the Muon fixture that crates/train/tests/golden_muon.rs compares against: ten
steps of Muon (for the blocks' 2-D weights) with AdamW (for the rest) on the golden tiny
GPT of scripts/golden.py, in float64.

    python3 scripts/golden_muon.py   # rewrites crates/train/tests/fixtures/golden_muon.{json,bin}

The model, its initial weights and its batch are golden.py's (the script checks them
against crates/model/tests/fixtures/golden.*, so the Rust test starts from that fixture).
Muon is written out here, after Keller Jordan's reference (github.com/KellerJordan/Muon)
but in float64 rather than bfloat16:

    buf <- momentum * buf + (1 - momentum) * g          (torch: buf.lerp_(g, 1 - momentum))
    u   <- (1 - momentum) * g + momentum * buf          (Nesterov: g.lerp(buf, momentum))
    O   <- newton_schulz(u): 5 quintic steps (3.4445, -4.7750, 2.0315) of u / (|u|_F + 1e-7)
    p   <- p * (1 - lr * wd) - lr * sqrt(max(1, rows / cols)) * O

Muon's parameters are the 2-D weights inside the blocks (`transformer.h.*`); the fused
c_attn weight (3C, C) is orthogonalised as three (C, C) blocks, q, k and v. AdamW (PyTorch's
torch.optim.AdamW, golden.py's settings: decay on wte and wpe only) takes the rest. The
same batch every step, no clipping, constant learning rates.

Fixture: golden_muon.bin holds float32 little-endian arrays back to back; golden_muon.json
the settings, the loss before each step, and an index `tensors`: name -> {offset (in
floats), shape}, with `muon.param.<name>` the weights after the ten steps.
"""

import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import golden  # noqa: E402  (the model and its weights)

MUON = dict(lr=0.02, momentum=0.95, weight_decay=0.01, ns_steps=5, coefficients=(3.4445, -4.7750, 2.0315))
STEPS = 10
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "train", "tests", "fixtures")


def newton_schulz(g, steps, coefficients):
    """Keller Jordan's zeropower_via_newtonschulz5, in the input's precision."""
    a, b, c = coefficients
    x = g / (g.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


def muon_blocks(name, p):
    """Row blocks Muon orthogonalises `p` in, or None for AdamW's parameters."""
    if p.dim() != 2 or not name.startswith("transformer.h."):
        return None
    return 3 if name.endswith("attn.c_attn.weight") else 1


def muon_step(params, bufs, lr, momentum, weight_decay, ns_steps, coefficients):
    with torch.no_grad():
        for (name, p, blocks), buf in zip(params, bufs):
            g = p.grad
            buf.mul_(momentum).add_(g, alpha=1 - momentum)
            u = (1 - momentum) * g + momentum * buf
            rows = p.size(0) // blocks
            o = torch.cat([newton_schulz(part, ns_steps, coefficients) for part in u.split(rows, dim=0)])
            scale = math.sqrt(max(1.0, rows / p.size(1)))
            p.mul_(1 - lr * weight_decay).add_(o, alpha=-lr * scale)


def check_against_golden_fixture(model, tokens, targets):
    """The weights and batch are those of the model crate's golden fixture."""
    fixture = os.path.join(golden.OUT)
    with open(os.path.join(fixture, "golden.json")) as f:
        meta = json.load(f)
    with open(os.path.join(fixture, "golden.bin"), "rb") as f:
        blob = f.read()
    assert meta["tokens"] == tokens.reshape(-1).tolist(), "tokens differ from golden.json"
    assert meta["targets"] == targets.reshape(-1).tolist(), "targets differ from golden.json"
    for n, p in model.named_parameters():
        entry = meta["tensors"][f"param.{n}"]
        count = math.prod(entry["shape"])
        want = struct.unpack_from(f"<{count}f", blob, 4 * entry["offset"])
        got = p.detach().to(torch.float32).reshape(-1).tolist()
        assert list(want) == got, f"{n} differs from golden.bin"


def main():
    model, tokens, targets = golden.seeded(golden.GPT2, golden.CONFIG, golden.BATCH, golden.T, golden.SEED)
    check_against_golden_fixture(model, tokens, targets)

    named = list(model.named_parameters())
    muon = [(n, p, muon_blocks(n, p)) for n, p in named if muon_blocks(n, p) is not None]
    rest = [(n, p) for n, p in named if muon_blocks(n, p) is None]
    bufs = [torch.zeros_like(p) for _, p, _ in muon]
    a = golden.ADAMW
    adamw = torch.optim.AdamW(
        [dict(params=[p for _, p in rest if p.dim() >= 2], weight_decay=a["weight_decay"]),
         dict(params=[p for _, p in rest if p.dim() < 2], weight_decay=0.0)],
        lr=a["lr"], betas=a["betas"], eps=a["eps"],
    )
    losses = []
    for _ in range(STEPS):
        model.zero_grad(set_to_none=True)
        _, loss = model(tokens, targets)
        loss.backward()
        adamw.step()
        muon_step(muon, bufs, MUON["lr"], MUON["momentum"], MUON["weight_decay"], MUON["ns_steps"],
                  MUON["coefficients"])
        losses.append(loss.item())

    blob = golden.TensorBlob()
    for n, p in named:
        blob.put(f"muon.param.{n}", p)
    fixture = dict(
        format="quill-golden-muon",
        version=1,
        generator="scripts/golden_muon.py",
        torch=torch.__version__,
        steps=STEPS,
        muon=dict(MUON, coefficients=list(MUON["coefficients"]), params=[n for n, _, _ in muon],
                  blocks={n: b for n, _, b in muon}),
        adamw=dict(lr=a["lr"], beta1=a["betas"][0], beta2=a["betas"][1], eps=a["eps"],
                   weight_decay=a["weight_decay"], params=[n for n, _ in rest]),
        losses=losses,
        note="same batch every step; losses[i] is the loss at the weights before step i+1",
    )
    blob.write(OUT, "golden_muon", fixture)
    print(f"Muon + AdamW losses {losses[0]:.6f} .. {losses[-1]:.6f}; {len(blob.data)} bytes of tensors in {OUT}")


if __name__ == "__main__":
    main()
