"""A tokenizer whose id space is cut down to a kept subset of another tokenizer's ids.

Token analysis finds the ids that cover, say, 95% of a corpus; keeping only those shrinks the model's
embedding and output layer. Text is still split by the base tokenizer; a base id outside the kept set
becomes ``<unk>`` (the base's own unk token where it has a distinct one). New ids follow the order of
`kept_ids`, then the base's special tokens, then ``<unk>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cleangpt_core.errors import TokenizerError, TokenizerLoadError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer, TokenIds, as_id_list, read_json_file, wrap_encoded

UNK = "<unk>"
BASE_DIR = "base"
KEPT_IDS_FILE = "kept_ids.json"


class ReducedVocabTokenizer(BaseTokenizer):
    """`base` (a tokenizer or its saved directory) restricted to `kept_ids`, every other id mapped to unk."""

    tokenizer_type: ClassVar[str] = "reduced"

    def __init__(self, base: BaseTokenizer | str | Path, kept_ids: Sequence[int], **kwargs: Any) -> None:
        if not isinstance(base, BaseTokenizer):
            from cleangpt_core.tokenizers.factory import from_pretrained

            base = from_pretrained(base)
        self.base = base
        kept = [int(i) for i in kept_ids]
        bad = [i for i in kept if not 0 <= i < base.vocab_size]
        if bad:
            raise TokenizerError(f"kept id {bad[0]} is outside the base vocabulary (ids 0..{base.vocab_size - 1})")
        # The base's special tokens always survive: a model still needs to pad and to end documents.
        order = list(dict.fromkeys([*kept, *base.all_special_ids]))
        # GPT-2's "unk" is <|endoftext|>: mapping unknown text to the document separator would teach the
        # model false document ends, so an unk shared with another special token gets an id of its own.
        base_unk = base.unk_token_id
        self._unk_is_new = base_unk is None or base_unk in {base.eos_token_id, base.pad_token_id, base.bos_token_id}
        self._new_to_base = np.array(order, dtype=np.int64)
        self._unk_id = len(order) if self._unk_is_new else order.index(base_unk)
        self._base_to_new = np.full(base.vocab_size, self._unk_id, dtype=np.int64)
        self._base_to_new[self._new_to_base] = np.arange(len(order))
        super().__init__(
            pad_token=base.pad_token,
            eos_token=base.eos_token,
            bos_token=base.bos_token,
            unk_token=UNK if self._unk_is_new else base.unk_token,
            padding_side=base.padding_side,
            truncation_side=base.truncation_side,
            model_max_length=base.model_max_length,
            **kwargs,
        )

    @property
    def kept_ids(self) -> list[int]:
        """The base ids this tokenizer keeps, in the order of its own ids."""
        return self._new_to_base.tolist()

    @property
    def vocab_size(self) -> int:
        return len(self._new_to_base) + int(self._unk_is_new)

    def _special_id(self, token: str | None) -> int | None:
        if token is None:
            return None
        if token == UNK and self._unk_is_new:
            return self._unk_id
        return int(self._base_to_new[self.base.convert_tokens_to_ids([token])[0]])

    def to_base_ids(self, ids: TokenIds) -> list[int]:
        """Base-tokenizer ids for ids of this tokenizer (unk stays unk only where the base has one)."""
        ids = as_id_list(ids)
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside this reduced vocabulary (ids 0..{self.vocab_size - 1})")
        return [int(self._new_to_base[i]) if i < len(self._new_to_base) else -1 for i in ids]

    def tokenize(self, text: str) -> list[Any]:
        return self.base.tokenize(text)

    def convert_tokens_to_ids(self, tokens: Sequence[Any]) -> list[int]:
        known = [t for t in tokens if not (self._unk_is_new and t == UNK)]
        base_ids = iter(self.base.convert_tokens_to_ids(known))
        return [
            self._unk_id if self._unk_is_new and t == UNK else int(self._base_to_new[next(base_ids)]) for t in tokens
        ]

    def convert_ids_to_tokens(self, ids: TokenIds) -> list[Any]:
        base_ids = self.to_base_ids(ids)
        tokens = self.base.convert_ids_to_tokens([i for i in base_ids if i >= 0])
        by_position = iter(tokens)
        return [UNK if i < 0 else next(by_position) for i in base_ids]

    def encode(self, text: str, add_special_tokens: bool = False, return_tensors: str | None = None) -> Any:
        base_ids = self.base.encode(text, add_special_tokens=add_special_tokens)
        ids = self._base_to_new[np.asarray(base_ids, dtype=np.int64)].tolist()
        return wrap_encoded(ids, return_tensors)

    def encode_corpus(self, text: str) -> np.ndarray:
        return self._base_to_new[self.base.encode_corpus(text).astype(np.int64)].astype(self.corpus_dtype)

    def decode(self, token_ids: TokenIds, skip_special_tokens: bool = False) -> str:
        """Decode through the base; each unk shows as ``<unk>`` (or is dropped with skip_special_tokens)."""
        pieces: list[str] = []
        run: list[int] = []
        special = set(self.all_special_ids) if skip_special_tokens else set()
        for new_id, base_id in zip(as_id_list(token_ids), self.to_base_ids(token_ids), strict=True):
            if new_id in special:
                continue
            if base_id < 0:
                pieces.append(self.base.decode(run))
                pieces.append(UNK)
                run = []
            else:
                run.append(base_id)
        pieces.append(self.base.decode(run))
        return "".join(pieces)

    def token_display(self, token_id: int) -> str:
        base_id = self.to_base_ids([token_id])[0]
        return UNK if base_id < 0 else self.base.token_display(base_id)

    def get_config(self) -> dict[str, Any]:
        return {}

    def _save_files(self, directory: Path) -> None:
        self.base.save_pretrained(directory / BASE_DIR)
        (directory / KEPT_IDS_FILE).write_text(json.dumps(self.kept_ids), "utf-8")

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> ReducedVocabTokenizer:
        kept = read_json_file(directory / KEPT_IDS_FILE, "the kept base ids")
        if not isinstance(kept, list) or not all(isinstance(i, int) for i in kept):
            raise TokenizerLoadError(f"{str(directory / KEPT_IDS_FILE)!r} must hold a list of integer ids")
        return cls(base=directory / BASE_DIR, kept_ids=kept)
