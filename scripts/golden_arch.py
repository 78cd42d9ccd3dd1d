"""Writes the golden fixtures of the model's architecture options, which
crates/model/tests/golden_arch.rs compares against: the tiny GPT of scripts/golden.py, with
every option of GptConfig's `arch` that differs from GPT-2, in PyTorch, in float64.

    python3 scripts/golden_arch.py   # rewrites crates/model/tests/fixtures/golden_<name>.{json,bin}

One fixture per option alone (`rmsnorm`, `relu2`, `rope`, `qk_norm`, `untied`) and one with
all of them (`all`). The options, written here from their papers rather than from Quill:
- RMSNorm: x / sqrt(mean(x^2) + 1e-5) * gain (no mean, no shift, even with biases).
- ReLU^2: relu(x)^2 in the MLP.
- RoPE: q and k of each head rotated, channel j paired with j + hs/2, angle
  pos * 10000^(-2j/hs) (angles in float64); no wpe.
- QK-norm: each head's q and k divided by its RMS (eps 1e-5, no gain), before RoPE.
- Untied head: logits = ln_f(x) @ lm_head.weight.T, lm_head.weight its own (V, C) tensor.

As golden.py: parameters drawn in float32 (exact in the fixture), everything then run in
float64; the fixture holds the config, tokens, targets, loss, `param.<name>`,
`grad.<name>` and `logits` (no AdamW trajectory: the optimizer does not change with the
architecture). Format as golden.py's, version 1.
"""

import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

BASE = dict(vocab_size=32, block_size=12, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=True)
GPT2 = dict(norm="layernorm", activation="gelu", position="learned", qk_norm=False, tie_head=True)
VARIANTS = {
    "rmsnorm": dict(GPT2, norm="rmsnorm"),
    "relu2": dict(GPT2, activation="relu2"),
    "rope": dict(GPT2, position="rope"),
    "qk_norm": dict(GPT2, qk_norm=True),
    "untied": dict(GPT2, tie_head=False),
    "all": dict(norm="rmsnorm", activation="relu2", position="rope", qk_norm=True, tie_head=False),
}
BATCH, T, SEED = 2, 12, 4321
EPS = 1e-5
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "model", "tests", "fixtures")


class RmsNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def norm(c, arch):
    return RmsNorm(c) if arch["norm"] == "rmsnorm" else nn.LayerNorm(c, eps=EPS)


def rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS)


def rope(x):
    """x: (B, nh, T, hs), rotated by position (the T axis)."""
    t, hs = x.size(2), x.size(3)
    half = hs // 2
    inv_freq = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, hs/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    def __init__(self, c, n_head, arch):
        super().__init__()
        self.n_head, self.arch = n_head, arch
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q, k, v = heads(q), heads(k), heads(v)
        if self.arch["qk_norm"]:
            q, k = rms(q), rms(k)
        if self.arch["position"] == "rope":
            q, k = rope(q), rope(k)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class Mlp(nn.Module):
    def __init__(self, c, arch):
        super().__init__()
        self.arch = arch
        self.c_fc = nn.Linear(c, 4 * c)
        self.c_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        h = self.c_fc(x)
        h = F.relu(h).square() if self.arch["activation"] == "relu2" else F.gelu(h, approximate="tanh")
        return self.c_proj(h)


class Block(nn.Module):
    def __init__(self, c, n_head, arch):
        super().__init__()
        self.ln_1 = norm(c, arch)
        self.attn = Attention(c, n_head, arch)
        self.ln_2 = norm(c, arch)
        self.mlp = Mlp(c, arch)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, arch, vocab_size, block_size, n_layer, n_head, n_embd, **_):
        super().__init__()
        self.arch = arch
        layers = dict(wte=nn.Embedding(vocab_size, n_embd))
        if arch["position"] == "learned":
            layers["wpe"] = nn.Embedding(block_size, n_embd)
        layers["h"] = nn.ModuleList([Block(n_embd, n_head, arch) for _ in range(n_layer)])
        layers["ln_f"] = norm(n_embd, arch)
        self.transformer = nn.ModuleDict(layers)
        if not arch["tie_head"]:
            self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx, targets):
        tr = self.transformer
        x = tr.wte(idx)
        if "wpe" in tr:
            x = x + tr.wpe(torch.arange(idx.size(1)))
        for block in tr.h:
            x = block(x)
        head = tr.wte.weight if self.arch["tie_head"] else self.lm_head.weight
        logits = tr.ln_f(x) @ head.T
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
        return logits, loss


def randomise(model, gen, n_layer):
    with torch.no_grad():
        for name, p in model.named_parameters():
            randn = lambda std: std * torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                p.copy_(randn(0.1) + (1.0 if name.endswith(".weight") else 0.0))
            elif name.endswith("c_proj.weight"):
                p.copy_(randn(0.02 / math.sqrt(2 * n_layer)))
            elif name == "lm_head.weight":
                p.copy_(randn(0.5))  # larger than wte, so a head read from wte would show
            else:
                p.copy_(randn(0.02))


def write(name, arch):
    gen = torch.Generator().manual_seed(SEED)
    model = Gpt(arch, **BASE)
    randomise(model, gen, BASE["n_layer"])
    model = model.double()
    data = torch.randint(0, BASE["vocab_size"], (BATCH, T + 1), generator=gen)
    tokens, targets = data[:, :T].contiguous(), data[:, 1:].contiguous()

    blob, index = bytearray(), {}

    def put(key, tensor):
        flat = tensor.detach().to(torch.float32).contiguous().view(-1).tolist()
        index[key] = dict(offset=len(blob) // 4, shape=list(tensor.shape))
        blob.extend(struct.pack(f"<{len(flat)}f", *flat))

    for n, p in model.named_parameters():
        put(f"param.{n}", p)
    logits, loss = model(tokens, targets)
    loss.backward()
    put("logits", logits)
    for n, p in model.named_parameters():
        put(f"grad.{n}", p.grad)
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
        loss=loss.item(),
        tensors=index,
    )
    with open(os.path.join(OUT, f"golden_{name}.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(OUT, f"golden_{name}.json"), "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"{name}: loss {loss.item():.6f}; {len(blob)} bytes of tensors")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, arch in VARIANTS.items():
        write(name, arch)


if __name__ == "__main__":
    main()
