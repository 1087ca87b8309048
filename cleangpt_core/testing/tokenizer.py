"""The tokenizer contract, as checks a plugin author runs in one line from pytest.

    from cleangpt_core.testing.tokenizer import check_tokenizer_contract

    def test_my_tokenizer_keeps_the_contract():
        check_tokenizer_contract(MyTokenizer(), ["Hello, world!", "a second, longer sample text"])

Each failed check raises AssertionError naming the rule and what the tokenizer did instead. The samples
must be text the tokenizer can encode (for a character tokenizer: text over its vocabulary), at least two
of them, of different token lengths.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer
from cleangpt_core.tokenizers.factory import from_pretrained


def _expect(condition: bool, rule: str, observed: Any) -> None:
    if not condition:
        raise AssertionError(f"tokenizer contract: {rule}; got {observed!r}")


def check_tokenizer_contract(tokenizer: BaseTokenizer, sample_texts: Sequence[str]) -> None:
    """Run every check below on `tokenizer` with `sample_texts`."""
    samples = list(sample_texts)
    _expect(
        len(samples) >= 2 and all(isinstance(s, str) and s for s in samples),
        "check_tokenizer_contract needs at least two non-empty sample strings",
        samples,
    )
    check_vocabulary(tokenizer)
    for text in samples:
        check_round_trip(tokenizer, text)
    check_special_tokens(tokenizer, samples[0])
    check_batch_call(tokenizer, samples)
    check_corpus_batch(tokenizer, samples)
    check_save_and_load(tokenizer, samples)


def check_vocabulary(tokenizer: BaseTokenizer) -> None:
    """vocab_size is a positive int and every special id lies inside it."""
    size = tokenizer.vocab_size
    _expect(isinstance(size, int) and size > 0, "vocab_size is a positive int", size)
    for name in ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name)
        _expect(
            value is None or (isinstance(value, int) and 0 <= value < size),
            f"{name} is None or an id in [0, vocab_size={size})",
            value,
        )


def check_round_trip(tokenizer: BaseTokenizer, text: str) -> None:
    """decode(encode(text)) == text, and every path to ids gives the same ids."""
    ids = tokenizer.encode(text)
    _expect(isinstance(ids, list) and all(isinstance(i, int) for i in ids), "encode returns a list of ints", ids)
    _expect(all(0 <= i < tokenizer.vocab_size for i in ids), "encoded ids lie in [0, vocab_size)", ids)
    _expect(tokenizer.decode(ids) == text, f"decode(encode(text)) == text for {text!r}", tokenizer.decode(ids))
    tokens = tokenizer.tokenize(text)
    _expect(
        tokenizer.convert_tokens_to_ids(tokens) == ids,
        "convert_tokens_to_ids(tokenize(text)) == encode(text)",
        tokenizer.convert_tokens_to_ids(tokens),
    )
    _expect(
        tokenizer.convert_tokens_to_ids(tokenizer.convert_ids_to_tokens(ids)) == ids,
        "convert_tokens_to_ids(convert_ids_to_tokens(ids)) == ids",
        tokenizer.convert_ids_to_tokens(ids),
    )
    tensor = tokenizer.encode(text, return_tensors="pt")
    _expect(
        isinstance(tensor, torch.Tensor) and tensor.dtype == torch.long and tuple(tensor.shape) == (1, len(ids)),
        f"encode(text, return_tensors='pt') is a LongTensor of shape (1, {len(ids)})",
        getattr(tensor, "shape", tensor),
    )
    _expect(tensor[0].tolist() == ids, "encode(..., return_tensors='pt') holds the same ids as encode", tensor)
    _expect(tokenizer.decode(tensor) == text, "decode accepts a (1, T) tensor", tokenizer.decode(tensor))
    corpus = tokenizer.encode_corpus(text)
    _expect(
        isinstance(corpus, np.ndarray) and corpus.ndim == 1 and np.issubdtype(corpus.dtype, np.integer),
        "encode_corpus returns a flat integer numpy array",
        type(corpus),
    )
    _expect(corpus.tolist() == ids, "encode_corpus(text) holds the same ids as encode(text)", corpus.tolist()[:20])
    if tokenizer.vocab_size <= 2**16:
        _expect(corpus.dtype == np.uint16, "encode_corpus uses uint16 when the vocabulary fits", corpus.dtype)


def check_corpus_batch(tokenizer: BaseTokenizer, samples: Sequence[str]) -> None:
    """`encode_corpus_batch` (what prepare-data's workers call) gives each text's `encode_corpus` ids."""
    batch = tokenizer.encode_corpus_batch(list(samples))
    _expect(len(batch) == len(samples), "encode_corpus_batch returns one array per text", len(batch))
    for text, ids in zip(samples, batch, strict=False):
        expected = tokenizer.encode_corpus(text)
        _expect(
            isinstance(ids, np.ndarray) and ids.dtype == expected.dtype and ids.tolist() == expected.tolist(),
            "encode_corpus_batch gives the ids and dtype of encode_corpus for each text",
            getattr(ids, "dtype", type(ids)),
        )


def check_special_tokens(tokenizer: BaseTokenizer, text: str) -> None:
    """Special tokens decode to nothing with skip_special_tokens=True, and add_special_tokens only adds them."""
    ids = tokenizer.encode(text)
    specials = tokenizer.all_special_ids
    for special in specials:
        decoded = tokenizer.decode([special, *ids, special], skip_special_tokens=True)
        _expect(decoded == text, f"decode(skip_special_tokens=True) drops special id {special}", decoded)
    with_specials = tokenizer.encode(text, add_special_tokens=True)
    extra = list(with_specials)
    for token_id in ids:
        _expect(token_id in extra, "encode(add_special_tokens=True) keeps every id of encode(text)", with_specials)
        extra.remove(token_id)
    _expect(all(i in specials for i in extra), "encode(add_special_tokens=True) adds only special ids", extra)


def check_batch_call(tokenizer: BaseTokenizer, samples: Sequence[str]) -> None:
    """tokenizer(batch) with padding, truncation, attention masks and tensors, as Hugging Face does it."""
    encoded = [tokenizer.encode(text) for text in samples]
    plain = tokenizer(list(samples))
    _expect(
        plain["input_ids"] == encoded, "tokenizer(batch)['input_ids'] == [encode(t) for t in batch]", plain["input_ids"]
    )
    _expect(
        plain["attention_mask"] == [[1] * len(e) for e in encoded],
        "without padding the attention mask is all 1",
        plain["attention_mask"],
    )
    single = tokenizer(samples[0])
    _expect(single["input_ids"] == encoded[0], "tokenizer(text) returns the flat ids of one text", single["input_ids"])
    if tokenizer.pad_token_id is None:
        return
    longest = max(len(e) for e in encoded)
    original_side = tokenizer.padding_side
    try:
        for side in ("right", "left"):
            tokenizer.padding_side = side
            batch = tokenizer(list(samples), padding=True, return_tensors="pt")
            ids, mask = batch["input_ids"], batch["attention_mask"]
            _expect(
                tuple(ids.shape) == (len(samples), longest) and ids.dtype == torch.long,
                f"padding=True gives a LongTensor (batch, longest={longest})",
                tuple(ids.shape),
            )
            _expect(tuple(mask.shape) == tuple(ids.shape), "attention_mask has the shape of input_ids", mask.shape)
            for row, seq in enumerate(encoded):
                pads = longest - len(seq)
                real = slice(pads, None) if side == "left" else slice(0, len(seq))
                padding = slice(0, pads) if side == "left" else slice(len(seq), None)
                _expect(ids[row, real].tolist() == seq, f"{side} padding keeps the ids in order", ids[row].tolist())
                _expect(
                    mask[row, real].eq(1).all().item() and mask[row, padding].eq(0).all().item(),
                    f"attention_mask is 1 on tokens and 0 on {side} padding",
                    mask[row].tolist(),
                )
                _expect(
                    ids[row, padding].eq(tokenizer.pad_token_id).all().item(),
                    "padding uses pad_token_id",
                    ids[row].tolist(),
                )
    finally:
        tokenizer.padding_side = original_side
    limit = max(1, longest // 2)
    cut = tokenizer(list(samples), truncation=True, max_length=limit)
    _expect(
        cut["input_ids"] == [e[:limit] for e in encoded],
        f"truncation=True keeps the first max_length={limit} ids",
        cut["input_ids"],
    )
    fixed = tokenizer(list(samples), padding="max_length", truncation=True, max_length=limit + 1, return_tensors="pt")
    _expect(
        tuple(fixed["input_ids"].shape) == (len(samples), limit + 1),
        "padding='max_length' with truncation gives exactly max_length columns",
        tuple(fixed["input_ids"].shape),
    )


def check_save_and_load(tokenizer: BaseTokenizer, samples: Sequence[str]) -> None:
    """save_pretrained writes JSON files that from_pretrained (by saved type) turns back into an equal tokenizer."""
    with tempfile.TemporaryDirectory(prefix="cleangpt-contract-") as tmp:
        directory = Path(tmp) / "tokenizer"
        tokenizer.save_pretrained(directory)
        pickled = [p.name for p in directory.rglob("*") if p.suffix in {".pkl", ".pickle", ".pt", ".bin"}]
        _expect(not pickled, "save_pretrained writes no pickle files", pickled)
        loaded = from_pretrained(directory)
    _expect(type(loaded) is type(tokenizer), "from_pretrained rebuilds the same class", type(loaded).__name__)
    _expect(loaded.vocab_size == tokenizer.vocab_size, "a loaded tokenizer has the same vocab_size", loaded.vocab_size)
    for name in ("pad_token_id", "eos_token_id", "bos_token_id", "unk_token_id", "padding_side"):
        _expect(
            getattr(loaded, name) == getattr(tokenizer, name), f"a loaded tokenizer keeps {name}", getattr(loaded, name)
        )
    for text in samples:
        _expect(
            loaded.encode(text) == tokenizer.encode(text),
            f"a loaded tokenizer encodes {text!r} the same",
            loaded.encode(text),
        )
