"""Tokenizer throughput on Tiny Shakespeare, each against a reference measured in the same run.

- byte: `ByteLevelTokenizer.encode_corpus` and `encode` vs the tutorial's per-byte list comprehension
  (target: at least 100 MB/s).
- gpt2: `GPT2Tokenizer.encode_corpus` (tiktoken built from the same vocab.json) vs calling transformers'
  GPT2TokenizerFast on the whole text (target: at least 3x, with identical ids).
- character: `encode_corpus` (numpy) vs a dict lookup per character.

Usage: python benchmarks/bench_tokenizers.py [--gpt2 FOLDER] [--repeats N]. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from transformers import GPT2TokenizerFast

from cleangpt_core.tokenizers import CharacterTokenizer, create_tokenizer
from cleangpt_core.utils import tinyshakespeare_text

ROOT = Path(__file__).resolve().parent.parent


def best_seconds(function: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpt2", type=Path, default=ROOT / "tests" / "fixtures" / "gpt2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)

    text = tinyshakespeare_text()
    megabytes = len(text.encode("utf-8")) / 1e6
    print(f"corpus: Tiny Shakespeare, {megabytes:.3f} MB, best of {args.repeats}")
    ok = True

    byte = create_tokenizer("byte")
    byte_corpus = best_seconds(lambda: byte.encode_corpus(text), args.repeats)
    byte_list = best_seconds(lambda: byte.encode(text), args.repeats)
    naive = best_seconds(lambda: [b for b in text.encode("utf-8")], args.repeats)
    assert byte.encode_corpus(text).tolist() == byte.encode(text) == list(text.encode("utf-8"))
    rate = megabytes / byte_corpus
    ok &= rate >= 100
    print(
        f"byte   encode_corpus {rate:9.1f} MB/s | encode (list) {megabytes / byte_list:7.1f} MB/s | "
        f"tutorial per-byte loop {megabytes / naive:6.1f} MB/s | ratio {naive / byte_corpus:6.1f}x "
        f"[target >= 100 MB/s: {'PASS' if rate >= 100 else 'FAIL'}]"
    )

    gpt2 = create_tokenizer("gpt2", pretrained_model_name_or_path=str(args.gpt2))
    reference = GPT2TokenizerFast.from_pretrained(str(args.gpt2))
    ours_ids, hf_ids = gpt2.encode_corpus(text), reference.encode(text)
    assert np.array_equal(ours_ids, np.asarray(hf_ids)), "gpt2 corpus path and transformers disagree"
    ours = best_seconds(lambda: gpt2.encode_corpus(text), args.repeats)
    theirs = best_seconds(lambda: reference.encode(text), args.repeats)
    ratio = theirs / ours
    ok &= ratio >= 3
    print(
        f"gpt2   encode_corpus {megabytes / ours:9.1f} MB/s | "
        f"transformers GPT2TokenizerFast {megabytes / theirs:5.2f} MB/s | ratio {ratio:5.1f}x, "
        f"{ours_ids.size:,} identical ids [target >= 3x: {'PASS' if ratio >= 3 else 'FAIL'}]"
    )

    char = CharacterTokenizer().fit(text)
    vocab = char.get_vocab()
    char_fast = best_seconds(lambda: char.encode_corpus(text), args.repeats)
    char_loop = best_seconds(lambda: [vocab[c] for c in text], args.repeats)
    assert char.encode_corpus(text).tolist() == [vocab[c] for c in text]
    print(
        f"char   encode_corpus {megabytes / char_fast:9.1f} MB/s | per-character dict lookup "
        f"{megabytes / char_loop:6.1f} MB/s | ratio {char_loop / char_fast:5.1f}x"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
