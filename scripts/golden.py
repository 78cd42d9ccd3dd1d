"""Writes the golden fixture that crates/model/tests/golden.rs (and the trainer's AdamW
test) compare against: a tiny nanoGPT-style GPT in PyTorch, run in float64.

    python3 scripts/golden.py        # rewrites crates/model/tests/fixtures/golden.{json,bin}

The model is the architecture of crates/model: token + learned position embeddings,
pre-LN blocks (fused c_attn, causal attention, c_proj; c_fc, GELU tanh form, c_proj),
final LayerNorm, head tied to wte; Linear weights are (out, in); LayerNorm eps 1e-5;
dropout 0; bias=True so every bias is covered. Parameters are drawn in float32 (so
they are exact in the fixture), then everything runs in float64: the fixture holds the
true values and the Rust test measures only its own float32 error.

The model here also takes the architecture options that differ from GPT-2 (`arch`, as in
GptConfig), written from their papers rather than from Quill, for scripts/golden_arch.py;
this fixture uses GPT2, i.e. none of them:
- RMSNorm: x / sqrt(mean(x^2) + 1e-5) * gain (no mean, no shift, even with biases).
- ReLU^2: relu(x)^2 in the MLP.
- RoPE: q and k of each head rotated, channel j paired with j + hs/2, angle
  pos * 10000^(-2j/hs) (angles in float64); no wpe.
- QK-norm: each head's q and k divided by its RMS (eps 1e-5, no gain), before RoPE.
- Untied head: logits = ln_f(x) @ lm_head.weight.T, lm_head.weight its own (V, C) tensor.

Initial values are random for every tensor (not GPT-2's init, whose zero biases and unit
gains would hide a swapped gain and shift): weights N(0, 0.02) (residual projections
0.02/sqrt(2 n_layer)), biases N(0, 0.02), LayerNorm gains 1 + N(0, 0.1), shifts N(0, 0.1).

Fixture: golden.bin holds float32 little-endian arrays back to back; golden.json holds
the config, tokens, targets, the loss, the AdamW settings and losses, and an index
`tensors`: name -> {offset (in floats), shape}. Tensor names: `param.<name>` (initial
weights), `grad.<name>` (d loss / d param at those weights), `logits` (B, T, V), and
`adamw.param.<name>` (weights after the 10 AdamW steps).
"""

import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, bias=True)
GPT2 = dict(norm="layernorm", activation="gelu", position="learned", qk_norm=False, tie_head=True)
EPS = 1e-5
BATCH, T, SEED = 2, 16, 1234
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, steps=10)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "model", "tests", "fixtures")


class RmsNorm(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return rms(x) * self.weight


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


class TensorBlob:
    """float32 little-endian arrays back to back, and their index: name -> {offset (in
    floats), shape}."""

    def __init__(self):
        self.data, self.index = bytearray(), {}

    def put(self, name, tensor):
        flat = tensor.detach().to(torch.float32).contiguous().view(-1).tolist()
        self.index[name] = dict(offset=len(self.data) // 4, shape=list(tensor.shape))
        self.data.extend(struct.pack(f"<{len(flat)}f", *flat))

    def write(self, folder, stem, fixture):
        """Writes <stem>.bin and <stem>.json (the fixture with `tensors` = the index)."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{stem}.bin"), "wb") as f:
            f.write(self.data)
        with open(os.path.join(folder, f"{stem}.json"), "w") as f:
            json.dump(dict(fixture, tensors=self.index), f, indent=1)


def seeded(arch, config, batch, t, seed):
    """The model with `arch` and `config`, its weights drawn by randomise and then in
    float64, and one batch of `batch` rows of t random tokens (targets shifted by one), all
    from one generator seeded with `seed`: (model, tokens, targets)."""
    gen = torch.Generator().manual_seed(seed)
    model = Gpt(arch, **config)
    randomise(model, gen, config["n_layer"])
    model = model.double()
    data = torch.randint(0, config["vocab_size"], (batch, t + 1), generator=gen)
    return model, data[:, :t].contiguous(), data[:, 1:].contiguous()


def forward_backward(model, tokens, targets):
    """A TensorBlob with `param.<name>`, `logits` and `grad.<name>` of one forward and
    backward pass; its `loss` is that pass's loss."""
    blob = TensorBlob()
    for n, p in model.named_parameters():
        blob.put(f"param.{n}", p)
    logits, blob.loss = model(tokens, targets)
    blob.loss.backward()
    blob.put("logits", logits)
    for n, p in model.named_parameters():
        blob.put(f"grad.{n}", p.grad)
    return blob


def main():
    model, tokens, targets = seeded(GPT2, CONFIG, BATCH, T, SEED)
    names = [n for n, _ in model.named_parameters()]

    blob = forward_backward(model, tokens, targets)
    loss = blob.loss

    # nanoGPT's groups: every tensor with 2+ dims (embeddings included) decays.
    decay = [n for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [n for n, p in model.named_parameters() if p.dim() < 2]
    params = dict(model.named_parameters())
    opt = torch.optim.AdamW(
        [dict(params=[params[n] for n in decay], weight_decay=ADAMW["weight_decay"]),
         dict(params=[params[n] for n in no_decay], weight_decay=0.0)],
        lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
    )
    losses = []
    for _ in range(ADAMW["steps"]):
        opt.zero_grad(set_to_none=True)
        _, step_loss = model(tokens, targets)
        step_loss.backward()
        opt.step()
        losses.append(step_loss.item())
    for n, p in model.named_parameters():
        blob.put(f"adamw.param.{n}", p)

    fixture = dict(
        format="quill-golden",
        version=1,
        generator="scripts/golden.py",
        torch=torch.__version__,
        config=CONFIG,
        batch=BATCH,
        t=T,
        seed=SEED,
        param_names=names,
        tokens=tokens.reshape(-1).tolist(),
        targets=targets.reshape(-1).tolist(),
        loss=loss.item(),
        adamw=dict(
            lr=ADAMW["lr"], beta1=ADAMW["betas"][0], beta2=ADAMW["betas"][1], eps=ADAMW["eps"],
            weight_decay=ADAMW["weight_decay"], steps=ADAMW["steps"],
            decay=decay, no_decay=no_decay, grad_clip=None,
            losses=losses,
            note="same batch every step; losses[i] is the loss at the weights before step i+1 "
                 "(losses[0] == loss); bias correction on; decoupled decay: p -= lr*wd*p",
        ),
    )
    blob.write(OUT, "golden", fixture)
    print(f"loss {loss.item():.6f}; AdamW losses {losses[0]:.6f} .. {losses[-1]:.6f}; "
          f"{len(blob.data)} bytes of tensors in {OUT}")


if __name__ == "__main__":
    main()
