"""The Hugging Face GPT-2 fixture of crates/convert, and the checks that need transformers.

    pip install torch transformers safetensors
    python3 scripts/hf_fixture.py                       # rewrites crates/convert/tests/fixtures/tiny-gpt2/
    python3 scripts/hf_fixture.py --check-export DIR    # loads DIR (written by convert --to-hf) and compares logits
    python3 scripts/hf_fixture.py --gpt2-124m DIR       # a random GPT-2-small-shaped model, for timing (not for git)
    python3 scripts/hf_fixture.py --time-generate DIR   # PyTorch's KV-cache sampling speed on DIR, batch 1

The fixture is a randomly initialised `GPT2LMHeadModel` (2 layers, n_embd 32, 4 heads,
context 16) saved with `save_pretrained`, with a tiny GPT-2 tokenizer that is still
consistent: the 256 byte tokens in GPT-2's order, 15 merges and `<|endoftext|>`, so 272
tokens (a byte-level BPE cannot have fewer than 256). Every tensor is random, biases and
layer-norm gains included (GPT-2's zero biases and unit gains would hide a swapped pair),
and larger than GPT-2's init so the logits spread. `logits.json` holds the text, its token
ids as transformers' GPT2Tokenizer encodes them, and the float32 logits of the model on
those ids, computed in float64 so the Rust test measures only its own float32 error.
"""

import argparse
import json
import os
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "crates", "convert", "tests", "fixtures", "tiny-gpt2")
TEXT = "the sun is on the water."
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s"),
          ("r", "e"), ("Ġ", "w"), ("a", "t"), ("o", "u"), ("e", "n"), ("i", "s"), ("Ġ", "o")]


def bytes_to_unicode():
    """GPT-2's table, in GPT-2's order: printable bytes first, then the other 68."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer(out):
    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode())}
    for a, b in MERGES:
        assert a in vocab and b in vocab, (a, b)
        vocab[a + b] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    with open(os.path.join(out, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    return len(vocab)


def make_fixture():
    os.makedirs(FIXTURE, exist_ok=True)
    vocab_size = write_tokenizer(FIXTURE)
    torch.manual_seed(19)
    config = GPT2Config(vocab_size=vocab_size, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                        bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.normal_(0.0, 0.3 if name.endswith("weight") else 0.1)
    model.save_pretrained(FIXTURE)
    tokenizer = GPT2Tokenizer(os.path.join(FIXTURE, "vocab.json"), os.path.join(FIXTURE, "merges.txt"))
    tokens = tokenizer.encode(TEXT)[: config.n_positions]
    with torch.no_grad():
        logits = model.double()(torch.tensor([tokens])).logits[0].float()
    # 9 significant digits print a float32 exactly.
    values = ", ".join(f"{x:.9g}" for x in logits.flatten().tolist())
    with open(os.path.join(FIXTURE, "logits.json"), "w") as f:
        f.write(f'{{"text": {json.dumps(TEXT)}, "tokens": {json.dumps(tokens)}, '
                f'"shape": {json.dumps(list(logits.shape))}, "logits": [{values}]}}\n')
    sizes = {n: os.path.getsize(os.path.join(FIXTURE, n)) for n in sorted(os.listdir(FIXTURE))}
    print(f"wrote {FIXTURE}: {sizes} ({sum(sizes.values())} bytes); {len(tokens)} tokens {tokens}")


def check_export(folder):
    with open(os.path.join(FIXTURE, "logits.json")) as f:
        fixture = json.load(f)
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model.double()(torch.tensor([fixture["tokens"]])).logits[0].float()
    expected = torch.tensor(fixture["logits"]).reshape(fixture["shape"])
    diff = (logits - expected).abs().max().item()
    tied = model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    print(f"{folder}: loaded by GPT2LMHeadModel.from_pretrained; head tied to wte: {tied}; "
          f"logits max abs diff vs the fixture: {diff:.3g}")
    if diff > 1e-5 or not tied:
        raise SystemExit("FAILED")


def gpt2_124m(folder):
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
    tok_dir = os.path.join(ROOT, "datasets", "gpt2-tokenizer")
    for src, dst in [("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")]:
        with open(os.path.join(tok_dir, src), "rb") as f, open(os.path.join(folder, dst), "wb") as g:
            g.write(f.read())
    print(f"wrote a random GPT-2 124M to {folder}")


def time_generate(folder, new_tokens=128, runs=3):
    """transformers' KV-cache sampling at batch 1, greedy, in f32 and under
    torch.autocast(bfloat16): the median of `runs` runs of `new_tokens` tokens each."""
    model = GPT2LMHeadModel.from_pretrained(folder).eval()
    prompt = torch.tensor([[464, 1266, 1517, 546, 9552, 318, 663, 2694, 284]])
    for label, bf16 in (("f32", False), ("bf16 autocast", True)):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model.generate(prompt, max_new_tokens=8, min_new_tokens=8, do_sample=False, use_cache=True)
            rates = []
            for _ in range(runs):
                start = time.perf_counter()
                model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                               use_cache=True)
                rates.append(new_tokens / (time.perf_counter() - start))
        rates.sort()
        print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, {label}: {new_tokens} tokens, "
              f"{rates[len(rates) // 2]:.1f} tokens/s (median of {runs}; generate, use_cache=True, batch 1)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check-export", metavar="DIR")
    parser.add_argument("--gpt2-124m", metavar="DIR")
    parser.add_argument("--time-generate", metavar="DIR")
    args = parser.parse_args()
    if args.check_export:
        check_export(args.check_export)
    elif args.gpt2_124m:
        gpt2_124m(args.gpt2_124m)
    elif args.time_generate:
        time_generate(args.time_generate)
    else:
        make_fixture()
