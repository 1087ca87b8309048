"""A character-level tokenizer: one id per character, learned from a corpus or given as a vocabulary.

Ids follow nanoGPT's char model: the corpus's characters sorted, then the special tokens after them. Special
tokens are written ``<pad>``, ``<eos>``, ``<unk>``: strings of several characters, so they can never be
mistaken for a character of the text (a vocabulary entry must be a single character or one of them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from cleangpt_core.errors import TokenizerError, TokenizerLoadError, UnknownTokenError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer, TokenIds, as_id_list, read_json_file

PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, EOS, UNK)
UNK_POLICIES = ("error", "unk")
VOCAB_FILE = "vocab.json"


class CharacterTokenizer(BaseTokenizer):
    """One id per character.

    vocab: None (learn it with `fit`, which the data pipeline calls on its first corpus), a list of characters
    (id = position) or a ``{token: id}`` mapping with ids 0..n-1. Special tokens missing from it are appended.
    unk_policy: "error" (default) raises `UnknownTokenError` on a character outside the vocabulary; "unk"
    encodes it as ``<unk>``.
    """

    tokenizer_type: ClassVar[str] = "character"

    def __init__(
        self, vocab: Sequence[str] | Mapping[str, int] | None = None, unk_policy: str = "error", **kwargs: Any
    ) -> None:
        if unk_policy not in UNK_POLICIES:
            raise TokenizerError(f"unk_policy must be one of {UNK_POLICIES}, got {unk_policy!r}")
        self.unk_policy = unk_policy
        super().__init__(pad_token=PAD, eos_token=EOS, unk_token=UNK if unk_policy == "unk" else None, **kwargs)
        self._token_to_id: dict[str, int] = {}
        self._id_to_token: list[str] = []
        if vocab is not None:
            self._set_vocab(vocab)

    # --- the vocabulary -----------------------------------------------------------------------------------

    def fit(self, texts: str | Iterable[str]) -> CharacterTokenizer:
        """Learn the vocabulary: every character of `texts`, sorted. Returns self."""
        characters: set[str] = set()
        for text in [texts] if isinstance(texts, str) else texts:
            if not isinstance(text, str):
                raise TokenizerError(f"fit expects strings, got {type(text).__name__}")
            characters.update(text)
        if not characters:
            raise TokenizerError("cannot fit a character tokenizer on an empty corpus: give it some text")
        self._set_vocab(sorted(characters))
        return self

    @property
    def is_fitted(self) -> bool:
        """Whether the tokenizer has a vocabulary (given or learned)."""
        return bool(self._id_to_token)

    def _set_vocab(self, vocab: Sequence[str] | Mapping[str, int]) -> None:
        if isinstance(vocab, Mapping):
            for token, token_id in vocab.items():  # 1.5 or "1" would index the embedding as int() reads them
                if not isinstance(token_id, Integral) or isinstance(token_id, bool):
                    raise TokenizerError(f"vocab entry {token!r} has the id {token_id!r}, which is not an integer")
            pairs = sorted(((int(i), str(t)) for t, i in vocab.items()), key=lambda pair: pair[0])
            ids = [i for i, _ in pairs]
            if ids != list(range(len(ids))):
                raise TokenizerError(
                    "a vocab mapping must use each id 0..n-1 exactly once (the ids index the model's embedding); "
                    f"got ids {ids[:5]}{'...' if len(ids) > 5 else ''}"
                )
            tokens = [t for _, t in pairs]
        elif isinstance(vocab, str):
            raise TokenizerError("vocab must be a list of characters or a {token: id} mapping, not a str")
        else:
            tokens = [str(t) for t in vocab]
        for token in tokens:
            if len(token) != 1 and token not in SPECIAL_TOKENS:
                raise TokenizerError(
                    f"character vocab entry {token!r} is neither one character nor one of {SPECIAL_TOKENS}"
                )
        if len(set(tokens)) != len(tokens):
            duplicates = sorted({t for t in tokens if tokens.count(t) > 1})
            raise TokenizerError(f"character vocab lists {duplicates[:5]} more than once")
        specials = [PAD, EOS] + ([UNK] if self.unk_policy == "unk" else [])
        tokens += [t for t in specials if t not in tokens]
        self._id_to_token = tokens
        self._token_to_id = {t: i for i, t in enumerate(tokens)}
        # A table from code point to id (-1: unknown) lets encode_corpus map a whole text with one gather;
        # its last slot is -1 so that code points beyond the vocabulary's largest can be clipped onto it.
        codes = {ord(t): i for i, t in enumerate(tokens) if len(t) == 1}
        self._code_table = np.full(max(codes, default=0) + 2, -1, dtype=np.int64)
        self._code_table[list(codes)] = list(codes.values())

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise TokenizerError(
                "this character tokenizer has no vocabulary yet: call tokenizer.fit(texts), pass vocab=..., "
                "or hand it to prepare_causal_lm_dataset / load_and_prepare_data, which fit it on their corpus"
            )

    def get_vocab(self) -> dict[str, int]:
        """The ``{token: id}`` mapping, special tokens included."""
        self._require_fitted()
        return dict(self._token_to_id)

    @property
    def vocab_size(self) -> int:
        self._require_fitted()
        return len(self._id_to_token)

    # --- tokens and ids -----------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        return list(text)

    def _special_id(self, token: str | None) -> int | None:
        self._require_fitted()
        return None if token is None else self._token_to_id[token]

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        self._require_fitted()
        lookup, unk_id = self._token_to_id, self.unk_token_id
        ids = []
        for position, token in enumerate(tokens):
            token_id = lookup.get(token, unk_id)
            if token_id is None:
                raise self._unknown(token, position)
            ids.append(token_id)
        return ids

    def convert_ids_to_tokens(self, ids: TokenIds) -> list[str]:
        self._require_fitted()
        ids = as_id_list(ids)
        size = len(self._id_to_token)
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside this character vocabulary (ids 0..{size - 1})")
        return [self._id_to_token[i] for i in ids]

    def _unknown(self, character: str, position: int) -> UnknownTokenError:
        return UnknownTokenError(
            f"character {character!r} (U+{ord(character[0]):04X}) at position {position} is not in the "
            f"vocabulary of {len(self._id_to_token)} tokens; fit the tokenizer on text that contains it, "
            "or create it with unk_policy='unk' to encode unknown characters as <unk>",
            character=character,
            position=position,
        )

    def encode_corpus(self, text: str) -> np.ndarray:
        """Ids of a whole corpus without a Python loop per character (UTF-32 code points, one table lookup)."""
        self._require_fitted()
        if not isinstance(text, str):
            raise TokenizerError(f"encode_corpus expects a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        table = self._code_table
        ids = table[np.minimum(codes, len(table) - 1)]
        unknown = ids < 0
        if unknown.any():
            unk_id = self.unk_token_id
            if unk_id is None:
                position = int(np.argmax(unknown))
                raise self._unknown(text[position], position)
            ids[unknown] = unk_id
        return ids.astype(self.corpus_dtype)

    # --- saving -------------------------------------------------------------------------------------------

    def get_config(self) -> dict[str, Any]:
        return {"unk_policy": self.unk_policy}

    def _save_files(self, directory: Path) -> None:
        self._require_fitted()
        (directory / VOCAB_FILE).write_text(json.dumps(self._token_to_id, ensure_ascii=False, indent=0), "utf-8")

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> CharacterTokenizer:
        vocab = read_json_file(directory / VOCAB_FILE, "the character vocabulary")
        if not isinstance(vocab, dict):
            raise TokenizerLoadError(f"{str(directory / VOCAB_FILE)!r} must hold a {{token: id}} mapping")
        try:
            tokenizer = cls(**config)
        except (TypeError, TokenizerError) as error:
            raise TokenizerLoadError(f"tokenizer directory {str(directory)!r} is corrupt: {error}") from None
        try:
            tokenizer._set_vocab(vocab)
        except TokenizerError as error:
            raise TokenizerLoadError(f"{str(directory / VOCAB_FILE)!r} is corrupt: {error}") from None
        return tokenizer

    def to_hf_tokenizer(self) -> Any:
        """A ``tokenizers`` WordLevel model over single characters: the same ids, the same text back.

        Each character is its own pre-token and ``<pad>``/``<eos>``/``<unk>`` are special tokens, so
        ``AutoTokenizer`` encodes and decodes exactly as this tokenizer does (a character outside the vocabulary
        is an error, or ``<unk>`` with ``unk_policy="unk"``).
        """
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        self._require_fitted()
        backend = Tokenizer(models.WordLevel(self.get_vocab(), unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # one per character
        backend.decoder = decoders.Fuse()  # characters join with nothing between them
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            pad_token=self.pad_token,
            eos_token=self.eos_token,
            unk_token=self.unk_token,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            clean_up_tokenization_spaces=False,
            split_special_tokens=True,  # "<eos>" typed in a text is text, as in this tokenizer
        )

    def __repr__(self) -> str:
        size = len(self._id_to_token) if self.is_fitted else "unfitted"
        return f"CharacterTokenizer(vocab_size={size}, unk_policy={self.unk_policy!r})"
