"""PyTorch's side of `bench_gemm`: the same GEMM shapes and layouts, fp32, printed in the
same table, so both can be run side by side in one sitting:

    cargo run --release -p quill-tensor --bin bench_gemm -- --threads 1,2
    python3 scripts/bench_matmul.py --threads 1,2            # add --quick for N = 2048 only

For width C and n = B·T rows, each linear layer x (n, c) · wᵀ with w (oc, c) runs
fwd  out = x @ w.T,  dx  dx += dout @ w,  dw  dw += dout.T @ x
(the accumulating products use `addmm_`, as an autograd engine accumulating into .grad
would), for the layers qkv (C -> 3C), fc (C -> 4C) and proj (4C -> C). GFLOP/s is the
median over repetitions after one warm-up. torch uses MKL / oneDNN for these; the
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE environment variables, if set, do not affect it.
"""

import argparse
import math
import os
import statistics
import time

import torch


def measure(fn, flops, min_reps, min_seconds):
    fn()
    rates = []
    start = time.perf_counter()
    while len(rates) < min_reps or (time.perf_counter() - start < min_seconds and len(rates) < 200):
        t = time.perf_counter()
        fn()
        rates.append(flops / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--quick", action="store_true", help="N = 2048 only, 3 reps")
    parser.add_argument("--c", default="128,384,768", help="model widths C")
    parser.add_argument("--n", default="768,2048,8192", help="rows N = B*T")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    widths = [int(c) for c in args.c.split(",")]
    rows = [2048] if args.quick else [int(n) for n in args.n.split(",")]
    min_reps, min_seconds = (3, 0.0) if args.quick else (5, 0.3)

    env = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}
    print(f"# torch {torch.__version__}, {torch.__config__.parallel_info().splitlines()[0]}; env {env or 'no OPENBLAS_*'}")
    print(f"# matmul GFLOP/s, median of >= {min_reps} reps; (m, k, n) as Quill's gemm sees them")
    header = f"{'C':>5} {'N':>6} {'layer':<5} {'pass':<4} {'m':>6} {'k':>6} {'n':>6}"
    print(header + "".join(f" {'torch/' + str(t):>9}" for t in threads))
    torch.manual_seed(0)
    log_totals = [0.0] * len(threads)
    count = 0
    for cw in widths:
        for n in rows:
            for layer, c, oc in [("qkv", cw, 3 * cw), ("fc", cw, 4 * cw), ("proj", 4 * cw, cw)]:
                x = torch.randn(n, c)
                w = torch.randn(oc, c) * 0.02
                dout = torch.randn(n, oc) * 0.01
                out = torch.empty(n, oc)
                dx = torch.zeros(n, c)
                dw = torch.zeros(oc, c)
                passes = [
                    ("fwd", (n, c, oc), lambda: torch.matmul(x, w.t(), out=out)),
                    ("dx", (n, oc, c), lambda: dx.addmm_(dout, w)),
                    ("dw", (oc, n, c), lambda: dw.addmm_(dout.t(), x)),
                ]
                for name, (m, k, nn), fn in passes:
                    line = f"{cw:>5} {n:>6} {layer:<5} {name:<4} {m:>6} {k:>6} {nn:>6}"
                    print(line, end="", flush=True)
                    for i, t in enumerate(threads):
                        torch.set_num_threads(t)
                        rate = measure(fn, 2.0 * m * k * nn, min_reps, min_seconds)
                        log_totals[i] += math.log(rate)
                        print(f" {rate:>9.1f}", end="", flush=True)
                    count += 1
                    print()
    print(f"{'geometric mean':<44}" + "".join(f" {math.exp(t / count):>9.1f}" for t in log_totals))


if __name__ == "__main__":
    main()
