"""GPT-2's byte-level BPE: Hugging Face's fast tokenizer, plus a tiktoken path for whole corpora.

Hugging Face's tokenizer gives the reference ids and the decoding. For a whole corpus, tiktoken (Rust, no
per-token Python objects) runs several times faster; it is built from the very same vocabulary and used only
when that vocabulary has GPT-2's shape (ids = merge ranks, GPT-2's split regex), where both give identical ids.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tiktoken
import torch
from transformers import GPT2TokenizerFast

from cleangpt_core.errors import TokenizerError, TokenizerLoadError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer, TokenIds, as_id_list, wrap_encoded

ENDOFTEXT = "<|endoftext|>"
# What a hub model's tokenizer is made of; only these are downloaded, never the weights.
HUB_TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
# The pre-tokenisation regex of GPT-2 (openai/gpt-2, encoder.py), as tiktoken's "gpt2" encoding uses it.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (how vocab.json spells byte sequences)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def build_tiktoken_encoding(hf_tokenizer: GPT2TokenizerFast, name: str = "gpt2-local") -> tiktoken.Encoding | None:
    """A tiktoken encoding equal to `hf_tokenizer`, or None when its vocabulary is not GPT-2-shaped.

    tiktoken merges the pair whose result has the lowest rank; with ranks = ids that equals applying the
    BPE merges in order exactly when every byte has a token, the i-th merge produces id 256 + i (so no two
    merges make the same token), nothing else is in the vocabulary, and the pre-tokeniser is GPT-2's
    byte-level regex. All of this is checked, not assumed.
    """
    state = json.loads(hf_tokenizer.backend_tokenizer.to_str())
    model, pre = state.get("model") or {}, state.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or pre.get("type") != "ByteLevel" or not pre.get("use_regex", False):
        return None
    if pre.get("add_prefix_space", False) or state.get("normalizer") is not None:
        return None
    byte_decoder = {char: byte for byte, char in bytes_to_unicode().items()}
    special = {token.content: token_id for token_id, token in hf_tokenizer.added_tokens_decoder.items()}
    vocab: dict[str, int] = model["vocab"]
    merges = model.get("merges", [])
    if len(vocab) != 256 + len(merges) + sum(token in vocab for token in special):
        return None
    if any(vocab.get(byte_char) is None for byte_char in byte_decoder):
        return None
    for rank, merge in enumerate(merges):
        left, right = merge if isinstance(merge, list) else merge.split(" ")
        if vocab.get(left + right) != 256 + rank:
            return None
    try:
        ranks = {bytes(byte_decoder[c] for c in token): i for token, i in vocab.items() if token not in special}
    except KeyError:  # a token spelled with characters outside GPT-2's byte alphabet
        return None
    return tiktoken.Encoding(name=name, pat_str=GPT2_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens=special)


class GPT2Tokenizer(BaseTokenizer):
    """GPT-2's tokenizer (50,257 ids, ``<|endoftext|>`` = 50256), loaded from the hub or a local folder.

    pretrained_model_name_or_path: a hub name ("gpt2") or a folder with vocab.json + merges.txt (offline).
    pad_token: None pads with ``<|endoftext|>`` (GPT-2 has no pad token of its own).
    """

    tokenizer_type: ClassVar[str] = "gpt2"

    def __init__(
        self, pretrained_model_name_or_path: str = "gpt2", pad_token: str | None = None, **kwargs: Any
    ) -> None:
        self.pretrained_model_name_or_path = str(pretrained_model_name_or_path)
        self._hf = _load_hf_tokenizer(self.pretrained_model_name_or_path)
        eos = self._hf.eos_token or ENDOFTEXT
        super().__init__(
            pad_token=pad_token or eos,
            eos_token=eos,
            bos_token=self._hf.bos_token,
            unk_token=self._hf.unk_token,
            **kwargs,
        )
        self._hf.pad_token = self.pad_token

    @property
    def hf_tokenizer(self) -> GPT2TokenizerFast:
        """The wrapped Hugging Face tokenizer."""
        return self._hf

    @property
    def vocab_size(self) -> int:
        return len(self._hf)

    def get_vocab(self) -> dict[str, int]:
        """The ``{token: id}`` mapping (tokens in GPT-2's byte-to-unicode spelling, e.g. "Ġthe")."""
        return self._hf.get_vocab()

    def tokenize(self, text: str) -> list[str]:
        return self._hf.tokenize(text)

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        ids = self._hf.convert_tokens_to_ids(list(tokens))
        missing = [token for token, token_id in zip(tokens, ids, strict=True) if token_id is None]
        if missing:
            raise TokenizerError(f"token {missing[0]!r} is not in the GPT-2 vocabulary")
        return ids

    def convert_ids_to_tokens(self, ids: TokenIds) -> list[str]:
        return self._hf.convert_ids_to_tokens(self._checked(as_id_list(ids)))

    def build_inputs_with_special_tokens(self, ids: list[int]) -> list[int]:
        """GPT-2 adds nothing: documents are separated by ``<|endoftext|>`` in the data instead."""
        return ids

    def encode(
        self, text: str, add_special_tokens: bool = False, return_tensors: str | None = None
    ) -> list[int] | torch.Tensor:
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        return wrap_encoded(self._hf.encode(text, add_special_tokens=add_special_tokens), return_tensors)

    def decode(self, token_ids: TokenIds, skip_special_tokens: bool = False) -> str:
        # clean_up_tokenization_spaces would rewrite " ," to ","; a byte-level round trip must be exact.
        ids = self._checked(as_id_list(token_ids))
        return self._hf.decode(ids, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False)

    def _checked(self, ids: list[int]) -> list[int]:
        size = len(self._hf)
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the GPT-2 vocabulary (ids 0..{size - 1})")
        return ids

    @cached_property
    def tiktoken_encoding(self) -> tiktoken.Encoding | None:
        """The tiktoken twin of this tokenizer, or None when the vocabulary does not allow one."""
        return build_tiktoken_encoding(self._hf)

    def encode_corpus(self, text: str) -> np.ndarray:
        """Ids of a whole corpus: tiktoken when it has a twin encoding, else the HF tokenizer."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode_corpus expects a str, got {type(text).__name__}")
        encoding = self.tiktoken_encoding
        if encoding is None:
            return np.asarray(self._hf.encode(text), dtype=self.corpus_dtype)
        # Special-token text such as "<|endoftext|>" becomes its id, as the HF tokenizer does.
        try:  # straight into an array: a list of Python ints costs a fifth of the encoding time
            ids = encoding.encode_to_numpy(text, allowed_special="all")
        except UnicodeEncodeError:  # lone surrogates (JSON escapes can make them): encode() repairs them
            ids = encoding.encode(text, allowed_special="all")
        return np.asarray(ids).astype(self.corpus_dtype)

    def encode_corpus_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode_corpus` of each text, in one tiktoken call for the whole batch when it can.

        tiktoken encodes the text between two special tokens on its own, so the texts joined by the eos token
        give each text's ids with one eos id between them: a call and an array per text saved (a few percent
        of prepare-data's time). A text that spells the eos token itself makes the cuts ambiguous; such a
        batch is encoded text by text.
        """
        encoding = self.tiktoken_encoding
        joinable = encoding is not None and self.eos_token in encoding.special_tokens_set
        if not joinable or len(texts) < 2 or not all(isinstance(text, str) for text in texts):
            return super().encode_corpus_batch(texts)
        ids = self.encode_corpus(self.eos_token.join(texts))
        cuts = np.flatnonzero(ids == self.eos_token_id)
        if len(cuts) != len(texts) - 1:
            return super().encode_corpus_batch(texts)
        return [ids[start + 1 : end] for start, end in pairwise([-1, *cuts.tolist(), len(ids)])]

    def to_hf_tokenizer(self) -> GPT2TokenizerFast:
        """The wrapped Hugging Face tokenizer itself."""
        return self._hf

    def get_config(self) -> dict[str, Any]:
        return {"pad_token": self.pad_token}

    def _save_files(self, directory: Path) -> None:
        self._hf.save_pretrained(str(directory))

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> GPT2Tokenizer:
        return cls(pretrained_model_name_or_path=str(directory), pad_token=config.get("pad_token"))


def _hub_folder(name: str) -> str:
    """The local folder of hub model `name`'s tokenizer files: downloaded, or from the cache when the hub
    cannot be reached. Offline and not cached, a plain error at once: transformers' own loading would retry
    for minutes and then build an empty tokenizer, which reads like a corrupt vocab.json."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, allow_patterns=HUB_TOKENIZER_FILES)
    except LocalEntryNotFoundError as error:
        cause = " ".join(str(error).split()).partition(" An error happened")[0]
        raise TokenizerLoadError(
            f"the GPT-2 tokenizer {name!r} is not in the local Hugging Face cache and cannot be downloaded "
            f"({cause}); offline, pass a folder holding vocab.json and merges.txt as pretrained_model_name_or_path "
            "(e.g. `-o pretrained_model_name_or_path=DIR` on the command line)"
        ) from None


def _load_hf_tokenizer(name_or_path: str) -> GPT2TokenizerFast:
    path = Path(name_or_path)
    looks_local = path.is_absolute() or name_or_path.startswith(".") or path.exists()
    if looks_local and not path.is_dir():
        raise TokenizerLoadError(
            f"GPT-2 tokenizer folder {name_or_path!r} does not exist; give a folder holding vocab.json and "
            "merges.txt (or tokenizer.json), or a hub name such as 'gpt2'"
        )
    try:
        folder = name_or_path if looks_local else _hub_folder(name_or_path)
        tokenizer = GPT2TokenizerFast.from_pretrained(folder)
    except TokenizerLoadError:
        raise
    except Exception as error:  # transformers and the hub raise OSError, ValueError or hub errors by cause
        where = "folder" if looks_local else "hub model"
        raise TokenizerLoadError(
            f"could not load a GPT-2 tokenizer from {where} {name_or_path!r} ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]}); offline, pass a folder holding vocab.json and merges.txt"
        ) from None
    if len(tokenizer) < 257:  # an empty tokenizer is what transformers builds from files it failed to read
        raise TokenizerLoadError(
            f"the GPT-2 tokenizer from {name_or_path!r} has only {len(tokenizer)} tokens; its vocab.json / "
            "merges.txt (or tokenizer.json) are missing or corrupt"
        )
    return tokenizer
