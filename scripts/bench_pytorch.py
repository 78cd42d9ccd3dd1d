"""PyTorch's side of `bench`: the same models, steps and measurements as Quill's bench binary,
fp32, eager, at a given thread count, so both can be run side by side in one sitting.

    python3 scripts/bench_pytorch.py --threads 2            # all configurations
    python3 scripts/bench_pytorch.py --threads 2 --only tiny --steps 10

Prints, per configuration: training tokens/s (forward + backward + AdamW, median over steps
after warm-up), MFU against the f32 GEMM peak measured here, peak resident memory, and
KV-cache sampling tokens/s at batch 1 in f32 and under torch.autocast(bfloat16) and for
eight samples as one batch (each the median of five runs), and without a cache (not for
gpt2). Each configuration runs in its own process so that its peak memory is its own.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, vocab_size=65),
    "small": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=8, vocab_size=65),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=256, batch_size=2, vocab_size=50257),
}

# Timed runs of the KV-cache sampling loop (the median is reported), as in Quill's bench.
SAMPLE_RUNS = 5


def flops_per_token(cfg, n_params):
    """Training FLOPs per token, PaLM's estimate: 6N + 12·L·C·T (the same formula as Quill's)."""
    return 6 * n_params + 12 * cfg["n_layer"] * cfg["n_embd"] * cfg["block_size"]


def gemm_peak(threads):
    import torch

    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def run_one(name, threads, steps, sample_tokens):
    import torch

    sys.path.insert(0, os.path.dirname(__file__))
    from reference_gpt import GPT

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = dict(CONFIGS[name], bias=False, dropout=0.0)
    model = GPT(cfg)
    opt = model.optimizer(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    B, T, V = cfg["batch_size"], cfg["block_size"], cfg["vocab_size"]
    x = torch.randint(0, V, (B, T))
    y = torch.randint(0, V, (B, T))
    times = []
    for i in range(steps + 2):  # two warm-up steps
        t0 = time.perf_counter()
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    result = dict(
        config=name,
        params=model.num_params(),
        step_ms=step * 1e3,
        train_tok_s=B * T / step,
        flops_per_token=flops_per_token(cfg, model.num_params()),
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    model.eval()
    # KV-cache sampling: batch 1 in f32 and under torch.autocast(bfloat16), and eight samples
    # as one batch (all their tokens counted), each the median of SAMPLE_RUNS runs; the
    # uncached loop once, except for gpt2 (minutes at that size).
    runs = [("sample_cached_tok_s", model.generate_cached, 1, False, SAMPLE_RUNS),
            ("sample_bf16_tok_s", model.generate_cached, 1, True, SAMPLE_RUNS),
            ("sample_batch8_tok_s", model.generate_cached, 8, False, SAMPLE_RUNS)]
    if name != "gpt2":
        runs.append(("sample_uncached_tok_s", model.generate_uncached, 1, False, 1))
    for key, fn, batch, bf16, n in runs:
        prompt = torch.randint(0, V, (batch, 8))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            fn(prompt, 8)  # warm-up
            rates = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn(prompt, sample_tokens)
                rates.append(batch * sample_tokens / (time.perf_counter() - t0))
        result[key] = statistics.median(rates)
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--steps", type=int, default=7, help="timed training steps per configuration")
    ap.add_argument("--sample-tokens", type=int, default=256)
    ap.add_argument("--only", choices=list(CONFIGS), action="append")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        run_one(args.one, args.threads, args.steps, args.sample_tokens)
        return
    import torch

    peak = gemm_peak(args.threads)
    print(f"PyTorch {torch.__version__}, {args.threads} threads; f32 GEMM peak (2048³ sgemm): {peak:.0f} GFLOP/s")
    print(f"{'config':<7} {'params':>8} {'step ms':>9} {'train tok/s':>12} {'MFU':>6} {'peak RSS':>9} {'sample tok/s: f32 / bf16 autocast / f32 ×8 / no cache':>54}")
    for name in args.only or CONFIGS:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--threads", str(args.threads), "--steps", str(args.steps),
             "--sample-tokens", str(args.sample_tokens)],
            check=True, capture_output=True, text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        mfu = r["train_tok_s"] * r["flops_per_token"] / (peak * 1e9)
        keys = ["sample_cached_tok_s", "sample_bf16_tok_s", "sample_batch8_tok_s", "sample_uncached_tok_s"]
        sampling = " / ".join(f"{r[k]:.0f}" if k in r else "-" for k in keys)
        print(f"{name:<7} {r['params']/1e6:>7.2f}M {r['step_ms']:>9.1f} {r['train_tok_s']:>12.0f} {mfu:>6.1%} "
              f"{r['peak_rss_mb']:>7.0f}MB {sampling:>54}")


if __name__ == "__main__":
    main()
