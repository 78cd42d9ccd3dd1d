"""Writes the golden fixtures of the model's architecture options, which
crates/model/tests/golden_arch.rs compares against: the tiny GPT of scripts/golden.py, with
every option of GptConfig's `arch` that differs from GPT-2, in PyTorch, in float64.

    python3 scripts/golden_arch.py   # rewrites crates/model/tests/fixtures/golden_<name>.{json,bin}

One fixture per option alone (`rmsnorm`, `relu2`, `rope`, `qk_norm`, `untied`) and one with
all of them (`all`); the model and each option's definition are golden.py's.

As golden.py: parameters drawn in float32 (exact in the fixture), everything then run in
float64; the fixture holds the config, tokens, targets, loss, `param.<name>`,
`grad.<name>` and `logits` (no AdamW trajectory: the optimizer does not change with the
architecture). Format as golden.py's, version 1.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import golden  # noqa: E402  (the model, its options and the fixture writer)

BASE = dict(vocab_size=32, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)
VARIANTS = {
    "rmsnorm": dict(golden.GPT2, norm="rmsnorm"),
    "relu2": dict(golden.GPT2, activation="relu2"),
    "rope": dict(golden.GPT2, position="rope"),
    "qk_norm": dict(golden.GPT2, qk_norm=True),
    "untied": dict(golden.GPT2, tie_head=False),
    "all": dict(norm="rmsnorm", activation="relu2", position="rope", qk_norm=True, tie_head=False),
}
BATCH, T, SEED = 2, 12, 4321
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "model", "tests", "fixtures")


def write(name, arch):
    model, tokens, targets = golden.seeded(arch, BASE, BATCH, T, SEED)
    blob = golden.forward_backward(model, tokens, targets)
    fixture = dict(
        format="quill-golden",
        version=1,
        generator="scripts/golden_arch.py",
        torch=torch.__version__,
        config=dict(BASE, arch=arch),
        batch=BATCH,
        t=T,
        seed=SEED,
        param_names=[n for n, _ in model.named_parameters()],
        tokens=tokens.reshape(-1).tolist(),
        targets=targets.reshape(-1).tolist(),
        loss=blob.loss.item(),
    )
    blob.write(OUT, f"golden_{name}", fixture)
    print(f"{name}: loss {blob.loss.item():.6f}; {len(blob.data)} bytes of tensors")


def main():
    for name, arch in VARIANTS.items():
        write(name, arch)


if __name__ == "__main__":
    main()
