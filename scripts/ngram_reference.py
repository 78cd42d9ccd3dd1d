#!/usr/bin/env python3
"""An independent check of `ngram score`: interpolated, modified Kneser-Ney bits per
character on the val split of a text, for n = 1..N, in plain Python (no third-party
package).

    python3 scripts/ngram_reference.py [datasets/tinyshakespeare/input.txt] [--max-n 6]

The definitions are those of crates/ngram/src/counts.rs (Chen & Goodman 1998): the top
order uses raw counts, lower orders continuation counts N1+(. h w); three discounts per
order and kind of count from its count-of-counts (0.5, 1, 1.5 when some count-of-counts
is zero or some Dr is outside (0, r]); uniform 1/|V| below the unigrams, V the characters of
the whole text. The split is prepare's: the first floor(0.9 * characters) characters
train, the rest val. Each val character is predicted from the val characters before it.
"""

import math
import sys
from collections import defaultdict


def discounts(counts):
    n = [0, 0, 0, 0]
    for c in counts.values():
        if 1 <= c <= 4:
            n[c - 1] += 1
    if 0 in n:
        return (0.5, 1.0, 1.5)
    n1, n2, n3, n4 = n
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if all(0 < x <= r for x, r in zip(d, (1, 2, 3))):
        return d
    return (0.5, 1.0, 1.5)


def contexts(counts):
    """context -> [total, n1, n2, n3+]"""
    out = defaultdict(lambda: [0, 0, 0, 0])
    for gram, c in counts.items():
        s = out[gram[:-1]]
        s[0] += c
        s[min(c, 3)] += 1
    return dict(out)


class Table:
    def __init__(self, counts):
        self.counts = counts
        self.contexts = contexts(counts)
        self.d = discounts(counts)


def main():
    args = sys.argv[1:]
    max_n = 6
    if "--max-n" in args:
        i = args.index("--max-n")
        max_n = int(args[i + 1])
        del args[i : i + 2]
    path = args[0] if args else "datasets/tinyshakespeare/input.txt"
    text = open(path, encoding="utf-8").read()
    split = math.floor(len(text) * (1.0 - 0.1))
    train, val = text[:split], text[split:]
    vocab = len(set(text))

    raw = []
    for k in range(1, max_n + 1):
        counts = defaultdict(int)
        for i in range(len(train) - k + 1):
            counts[train[i : i + k]] += 1
        raw.append(dict(counts))
    cont = []
    for k in range(1, max_n):
        counts = defaultdict(int)
        for gram in raw[k]:  # the distinct (k+1)-grams
            counts[gram[1:]] += 1
        cont.append(dict(counts))
    raw_t = [Table(c) for c in raw]
    cont_t = [Table(c) for c in cont]

    def kn(gram, top):
        k = len(gram)
        lower = 1.0 / vocab if k == 1 else kn(gram[1:], False)
        t = raw_t[k - 1] if top else cont_t[k - 1]
        s = t.contexts.get(gram[:-1])
        if s is None:
            return lower
        c = t.counts.get(gram, 0)
        d = 0.0 if c == 0 else t.d[min(c, 3) - 1]
        gamma = t.d[0] * s[1] + t.d[1] * s[2] + t.d[2] * s[3]
        return (max(c - d, 0.0) + gamma * lower) / s[0]

    nbytes = len(val.encode("utf-8"))
    print(f"{path}: {len(train)} train and {len(val)} val characters ({nbytes} bytes), vocabulary {vocab}")
    for n in range(1, max_n + 1):
        bits = 0.0
        for i in range(len(val)):
            gram = val[max(0, i + 1 - n) : i + 1]
            bits -= math.log2(kn(gram, True))
        print(f"{n}-gram: {bits / len(val):.4f} bits/char, {bits / nbytes:.4f} bits/byte, perplexity {2 ** (bits / len(val)):.3f}")


if __name__ == "__main__":
    main()
