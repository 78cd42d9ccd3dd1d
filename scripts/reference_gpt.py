"""A plain PyTorch GPT, the same architecture as Quill's (and nanoGPT's): learned token and
position embeddings, pre-LN blocks with fused q/k/v attention and a 4x GELU(tanh) MLP, a
final LayerNorm, and an output head tied to the token embedding. Parameter names are
GPT-2's, and weights are (out, in) as in nn.Linear, like Quill's.

Used by the PyTorch side of the benchmarks (bench_pytorch.py) and by the reference
training run (train_pytorch.py). Not needed by Quill itself or its tests.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.n_head, self.n_embd = cfg["n_head"], cfg["n_embd"]
        self.c_attn = nn.Linear(self.n_embd, 3 * self.n_embd, bias=cfg["bias"])
        self.c_proj = nn.Linear(self.n_embd, self.n_embd, bias=cfg["bias"])
        self.dropout = cfg.get("dropout", 0.0)

    def forward(self, x, cache=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if cache is not None:  # incremental decoding: append to the cache, attend to all of it
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        causal = cache is None or T > 1
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class Mlp(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg["n_embd"], 4 * cfg["n_embd"], bias=cfg["bias"])
        self.c_proj = nn.Linear(4 * cfg["n_embd"], cfg["n_embd"], bias=cfg["bias"])
        self.dropout = cfg.get("dropout", 0.0)

    def forward(self, x):
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = LayerNorm(cfg["n_embd"], cfg["bias"])
        self.attn = Attention(cfg)
        self.ln_2 = LayerNorm(cfg["n_embd"], cfg["bias"])
        self.mlp = Mlp(cfg)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """cfg: vocab_size, block_size, n_layer, n_head, n_embd, bias, dropout."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg["vocab_size"], cfg["n_embd"]),
                wpe=nn.Embedding(cfg["block_size"], cfg["n_embd"]),
                h=nn.ModuleList([Block(cfg) for _ in range(cfg["n_layer"])]),
                ln_f=LayerNorm(cfg["n_embd"], cfg["bias"]),
            )
        )
        self.lm_head = nn.Linear(cfg["n_embd"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg["n_layer"]))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    def forward(self, idx, targets=None, caches=None, pos0=0):
        B, T = idx.shape
        pos = torch.arange(pos0, pos0 + T, device=idx.device)
        x = F.dropout(self.transformer.wte(idx) + self.transformer.wpe(pos), self.cfg.get("dropout", 0.0), self.training)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if caches is None else caches[i])
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def optimizer(self, lr, weight_decay, betas, eps=1e-8):
        """AdamW with nanoGPT's groups: decay every parameter of 2 or more dimensions."""
        params = [p for p in self.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)

    @torch.no_grad()
    def split_loss(self, tokens, batch_size):
        """Mean loss over every non-overlapping block_size window of a 1-D token tensor (each
        predicting the next block_size tokens), batch_size windows per forward, as Quill's
        `train --evaluate` computes it. Returns (loss, windows)."""
        T, was_training = self.cfg["block_size"], self.training
        self.eval()
        windows, total = (len(tokens) - 1) // T, 0.0
        for w0 in range(0, windows, batch_size):
            rows = range(w0, min(w0 + batch_size, windows))
            x = torch.stack([tokens[w * T:w * T + T] for w in rows])
            y = torch.stack([tokens[w * T + 1:w * T + 1 + T] for w in rows])
            total += self(x, y)[1].item() * len(rows)
        self.train(was_training)
        return total / windows, windows

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def generate_cached(self, idx, max_new_tokens, temperature=0.8, top_k=None):
        """Batch-1 sampling with a KV cache: the prompt once, then one token per step.
        When the window is full, the cache is rebuilt from the last block_size // 2 tokens."""
        block = self.cfg["block_size"]
        caches = [dict() for _ in self.transformer.h]
        logits, _ = self(idx[:, -block:], caches=caches)
        pos = min(idx.shape[1], block)
        for _ in range(max_new_tokens):
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, top_k)
                logits[logits < v[:, [-1]]] = -float("inf")
            nxt = torch.multinomial(F.softmax(logits, dim=-1), 1)
            idx = torch.cat([idx, nxt], dim=1)
            if pos >= block:  # slide: re-prime the cache with the last half window
                caches = [dict() for _ in self.transformer.h]
                logits, _ = self(idx[:, -(block // 2):], caches=caches)
                pos = block // 2
            else:
                logits, _ = self(nxt, caches=caches, pos0=pos)
                pos += 1
        return idx

    @torch.no_grad()
    def generate_uncached(self, idx, max_new_tokens, temperature=0.8):
        """Sampling with a full forward over the window at each step (no cache)."""
        for _ in range(max_new_tokens):
            window = idx[:, -self.cfg["block_size"]:]
            logits, _ = self(window)
            nxt = torch.multinomial(F.softmax(logits[:, -1, :] / temperature, dim=-1), 1)
            idx = torch.cat([idx, nxt], dim=1)
        return idx
