"""The recipe of configs/small.toml (nanoGPT's CPU "baby" Shakespeare run) in PyTorch, to
compare wall time, tokens/s and validation loss with `train --config configs/small.toml` on
the same machine at the same thread count.

    python3 scripts/train_pytorch.py --threads 2 [--max-iters 2000] [--seed N] [--evaluate]

Char-level Tiny Shakespeare (sorted character vocabulary, first 90% train, last 10% val),
4 layers, 4 heads, 128 wide, block 64, batch 12, AdamW (lr 1e-3, betas (0.9, 0.99), weight
decay 0.1 on 2-D weights), 100 warm-up steps then cosine decay to 1e-4, gradient clipping at
1.0, evaluation every 250 steps on 20 batches of each split.
"""

import argparse
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from reference_gpt import GPT  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--input", default="datasets/tinyshakespeare/input.txt")
    ap.add_argument("--max-iters", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--evaluate", action="store_true",
                    help="after training, the loss over every 64-token window of the val split "
                         "(as `train --evaluate` computes it), outside the timed part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    text = open(args.input, encoding="utf-8").read()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(data))
    train, val = data[:split], data[split:]

    cfg = dict(vocab_size=len(chars), block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False, dropout=0.0)
    B, T = 12, 64
    lr, min_lr, warmup, decay_iters = 1e-3, 1e-4, 100, args.max_iters
    eval_interval, eval_iters = 250, 20
    model = GPT(cfg)
    opt = model.optimizer(lr=lr, weight_decay=0.1, betas=(0.9, 0.99))

    def batch(split):
        d = train if split == "train" else val
        ix = torch.randint(len(d) - T, (B,))
        return torch.stack([d[i:i + T] for i in ix]), torch.stack([d[i + 1:i + 1 + T] for i in ix])

    def get_lr(it):
        if it < warmup:
            return lr * (it + 1) / (warmup + 1)
        if it > decay_iters:
            return min_lr
        ratio = (it - warmup) / (decay_iters - warmup)
        return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)

    @torch.no_grad()
    def evaluate():
        model.eval()
        out = {}
        for split in ("train", "val"):
            out[split] = sum(model(*batch(split))[1].item() for _ in range(eval_iters)) / eval_iters
        model.train()
        return out

    print(f"PyTorch {torch.__version__}, {args.threads} threads, {model.num_params()/1e6:.2f}M parameters")
    t0 = time.perf_counter()
    for it in range(args.max_iters + 1):
        if it % eval_interval == 0 or it == args.max_iters:
            losses = evaluate()
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        if it == args.max_iters:
            break
        for g in opt.param_groups:
            g["lr"] = get_lr(it)
        x, y = batch("train")
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    wall = time.perf_counter() - t0
    print(f"done: {args.max_iters} steps in {wall:.1f} s, {args.max_iters * B * T / wall:.0f} tok/s, "
          f"final val loss {losses['val']:.4f}")
    if args.evaluate:
        loss, windows = model.split_loss(val, B)
        print(f"val loss over all {windows} windows: {loss:.4f}")


if __name__ == "__main__":
    main()
