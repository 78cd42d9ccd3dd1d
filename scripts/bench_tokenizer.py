"""Times tiktoken's GPT-2 encoding (MB/s, one thread) on text files, to compare with
`cargo run --release -p quill-data --example bench_tokenizer -- FILES...`.

tiktoken is built offline from the project's own datasets/gpt2-tokenizer/ files, so no
download happens. Run from the repository root:

    pip install tiktoken
    python3 scripts/bench_tokenizer.py datasets/tinyshakespeare/input.txt
"""

import sys
import time

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def gpt2_encoding() -> tiktoken.Encoding:
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file="datasets/gpt2-tokenizer/vocab.bpe",
        encoder_json_file="datasets/gpt2-tokenizer/encoder.json",
    )
    return tiktoken.Encoding(
        name="gpt2-local",
        pat_str=R50K_PAT,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


def main() -> None:
    files = sys.argv[1:] or ["datasets/tinyshakespeare/input.txt"]
    enc = gpt2_encoding()
    for path in files:
        text = open(path, encoding="utf-8").read()
        mb = len(text.encode("utf-8")) / 1e6
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            n = len(enc.encode_ordinary(text))
            best = min(best, time.perf_counter() - start)
        print(f"tiktoken encode {path}: {mb:.2f} MB -> {n} tokens in {best:.3f} s = {mb / best:.1f} MB/s (1 thread)")


if __name__ == "__main__":
    main()
