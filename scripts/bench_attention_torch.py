"""PyTorch's fused causal attention and cross-entropy on the shapes of
crates/tensor/examples/bench_fused.rs, for comparison. Usage: python3 scripts/bench_attention_torch.py [threads]"""
import sys
import time

import torch
import torch.nn.functional as F


def best(f):
    f()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    torch.set_num_threads(threads)
    print(f"{threads} thread(s), torch {torch.__version__}")
    for b, t, nh, hs in [(16, 64, 4, 32), (12, 128, 4, 32), (8, 256, 6, 64), (4, 256, 12, 64), (1, 1024, 12, 64)]:
        q, k, v = [torch.randn(b, nh, t, hs, requires_grad=True) for _ in range(3)]
        dy = torch.randn(b, nh, t, hs)
        fwd = best(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
        both = best(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(dy))
        product = b * nh * t * t * hs
        bwd = both - fwd
        print(f"attention b={b} t={t} nh={nh} hs={hs}: forward {fwd * 1e3:.3f} ms ({2 * product / fwd / 1e9:.1f} GFLOP/s), "
              f"backward {bwd * 1e3:.3f} ms ({5 * product / bwd / 1e9:.1f} GFLOP/s)")
    for n, v in [(8192, 65), (256, 50257)]:
        logits = torch.randn(n, v, requires_grad=True)
        targets = torch.randint(0, v, (n,))
        fwd = best(lambda: F.cross_entropy(logits, targets))
        both = best(lambda: F.cross_entropy(logits, targets).backward())
        bwd = both - fwd
        print(f"cross_entropy n={n} v={v}: forward {fwd * 1e3:.3f} ms ({fwd * 1e9 / (n * v):.2f} ns/logit), "
              f"backward {bwd * 1e3:.3f} ms ({bwd * 1e9 / (n * v):.2f} ns/logit)")


if __name__ == "__main__":
    main()
