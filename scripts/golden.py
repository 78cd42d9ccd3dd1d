"""Writes the golden fixture that crates/model/tests/golden.rs (and the trainer's AdamW
test) compare against: a tiny nanoGPT-style GPT in PyTorch, run in float64.

    python3 scripts/golden.py        # rewrites crates/model/tests/fixtures/golden.{json,bin}

The model is the architecture of crates/model: token + learned position embeddings,
pre-LN blocks (fused c_attn, causal attention, c_proj; c_fc, GELU tanh form, c_proj),
final LayerNorm, head tied to wte; Linear weights are (out, in); LayerNorm eps 1e-5;
dropout 0; bias=True so every bias is covered. Parameters are drawn in float32 (so
they are exact in the fixture), then everything runs in float64: the fixture holds the
true values and the Rust test measures only its own float32 error.

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
BATCH, T, SEED = 2, 16, 1234
ADAMW = dict(lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, steps=10)
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "model", "tests", "fixtures")


class Attention(nn.Module):
    def __init__(self, c, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q, k, v = heads(q), heads(k), heads(v)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.c_proj(y)


class Mlp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = nn.Linear(c, 4 * c)
        self.c_proj = nn.Linear(4 * c, c)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, c, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c, eps=1e-5)
        self.attn = Attention(c, n_head)
        self.ln_2 = nn.LayerNorm(c, eps=1e-5)
        self.mlp = Mlp(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Gpt(nn.Module):
    def __init__(self, vocab_size, block_size, n_layer, n_head, n_embd, **_):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),
            wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(n_embd, eps=1e-5),
        ))

    def forward(self, idx, targets):
        tr = self.transformer
        pos = torch.arange(idx.size(1))
        x = tr.wte(idx) + tr.wpe(pos)
        for block in tr.h:
            x = block(x)
        logits = tr.ln_f(x) @ tr.wte.weight.T  # tied head
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
            else:
                p.copy_(randn(0.02))


def main():
    gen = torch.Generator().manual_seed(SEED)
    model = Gpt(**CONFIG)
    randomise(model, gen, CONFIG["n_layer"])
    model = model.double()
    data = torch.randint(0, CONFIG["vocab_size"], (BATCH, T + 1), generator=gen)
    tokens, targets = data[:, :T].contiguous(), data[:, 1:].contiguous()
    names = [n for n, _ in model.named_parameters()]

    blob, index = bytearray(), {}

    def put(name, tensor):
        flat = tensor.detach().to(torch.float32).contiguous().view(-1).tolist()
        index[name] = dict(offset=len(blob) // 4, shape=list(tensor.shape))
        blob.extend(struct.pack(f"<{len(flat)}f", *flat))

    for n, p in model.named_parameters():
        put(f"param.{n}", p)
    logits, loss = model(tokens, targets)
    loss.backward()
    put("logits", logits)
    for n, p in model.named_parameters():
        put(f"grad.{n}", p.grad)

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
        put(f"adamw.param.{n}", p)

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
        tensors=index,
    )
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "golden.bin"), "wb") as f:
        f.write(blob)
    with open(os.path.join(OUT, "golden.json"), "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"loss {loss.item():.6f}; AdamW losses {losses[0]:.6f} .. {losses[-1]:.6f}; "
          f"{len(blob)} bytes of tensors in {OUT}")


if __name__ == "__main__":
    main()
