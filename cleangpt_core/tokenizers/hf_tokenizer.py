"""Any Hugging Face tokenizer, through its Rust backend (`tokenizers.Tokenizer`).

From a folder holding ``tokenizer.json`` the backend is loaded directly with the `tokenizers` library;
anything else goes through ``transformers.AutoTokenizer`` (never with remote code), which must give a fast
tokenizer. Special tokens come from the options, else from the folder's ``tokenizer_config.json`` (or the
AutoTokenizer). Saved, a run holds the backend's ``tokenizer.json`` and the special tokens, so it reloads
offline and identically. Whole corpora are encoded in batches by the backend, at the speed of Rust.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cleangpt_core.errors import TokenizerError, TokenizerLoadError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer, TokenIds, as_id_list, wrap_encoded

BACKEND_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
_SPECIAL = ("eos_token", "pad_token", "bos_token", "unk_token")


class HFTokenizer(BaseTokenizer):
    """A Hugging Face tokenizer (BPE, WordPiece, Unigram...) from a local folder or ``AutoTokenizer``.

    name_or_path: a folder with tokenizer.json, or a name or folder ``AutoTokenizer`` loads without remote code.
    eos_token, pad_token, bos_token, unk_token: None takes the tokenizer's own, where it names one.
    """

    tokenizer_type: ClassVar[str] = "hf"

    def __init__(
        self,
        name_or_path: str,
        eos_token: str | None = None,
        pad_token: str | None = None,
        bos_token: str | None = None,
        unk_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.name_or_path = str(name_or_path)
        self._backend, found, self.chat_template = _load_backend(self.name_or_path)
        # a tokenizer.json may carry padding or truncation settings; ids of a corpus must be neither
        self._backend.no_padding()
        self._backend.no_truncation()
        given = {"eos_token": eos_token, "pad_token": pad_token, "bos_token": bos_token, "unk_token": unk_token}
        chosen = {key: given[key] if given[key] is not None else found.get(key) for key in _SPECIAL}
        for key, token in chosen.items():
            if token is not None and self._backend.token_to_id(token) is None:
                raise TokenizerLoadError(f"{key} {token!r} is not in the vocabulary of {self.name_or_path!r}")
        super().__init__(**chosen, **kwargs)

    @property
    def backend(self) -> Any:
        """The wrapped `tokenizers.Tokenizer`."""
        return self._backend

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """The ``{token: id}`` mapping, added tokens included."""
        return self._backend.get_vocab(with_added_tokens=True)

    def tokenize(self, text: str) -> list[str]:
        return self._backend.encode(text, add_special_tokens=False).tokens

    def convert_tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        ids = [self._backend.token_to_id(token) for token in tokens]
        missing = [token for token, token_id in zip(tokens, ids, strict=True) if token_id is None]
        if missing:
            raise TokenizerError(f"token {missing[0]!r} is not in the vocabulary of {self.name_or_path!r}")
        return ids

    def convert_ids_to_tokens(self, ids: TokenIds) -> list[str]:
        return [self._backend.id_to_token(i) for i in self._checked(as_id_list(ids))]

    def encode(
        self, text: str, add_special_tokens: bool = False, return_tensors: str | None = None
    ) -> list[int] | torch.Tensor:
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        ids = self._backend.encode(text, add_special_tokens=False).ids
        return wrap_encoded(self.build_inputs_with_special_tokens(ids) if add_special_tokens else ids, return_tensors)

    def decode(self, token_ids: TokenIds, skip_special_tokens: bool = False) -> str:
        return self._backend.decode(self._checked(as_id_list(token_ids)), skip_special_tokens=skip_special_tokens)

    def encode_corpus(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TokenizerError(f"encode_corpus expects a str, got {type(text).__name__}")
        return np.asarray(self._backend.encode(text, add_special_tokens=False).ids, dtype=self.corpus_dtype)

    def encode_corpus_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Ids of many texts in one call into the Rust backend (without offsets where it can skip them)."""
        encode_batch = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
        return [np.asarray(e.ids, dtype=self.corpus_dtype) for e in encode_batch(list(texts), add_special_tokens=False)]

    def _checked(self, ids: list[int]) -> list[int]:
        size = self.vocab_size
        bad = [i for i in ids if not 0 <= i < size]
        if bad:
            raise TokenizerError(
                f"token id {bad[0]} is outside the vocabulary of {self.name_or_path!r} (ids 0..{size - 1})"
            )
        return ids

    def to_hf_tokenizer(self) -> Any:
        """The same Rust backend as a ``PreTrainedTokenizerFast``: it is a Hugging Face tokenizer already.

        A copy of the backend, so the export never changes this tokenizer; ids and text are identical: a
        special token written in a text is that token, as the backend reads it here.
        """
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(self._backend.to_str()),
            **{key: getattr(self, key) for key in _SPECIAL if getattr(self, key) is not None},
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            clean_up_tokenization_spaces=False,
        )

    def get_config(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _SPECIAL}

    def _save_files(self, directory: Path) -> None:
        self._backend.save(str(directory / BACKEND_FILE))
        if self.chat_template is not None:  # where transformers saves it, and reads it back (see _chat_template_of)
            (directory / CHAT_TEMPLATE_FILE).write_text(self.chat_template, encoding="utf-8")

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> HFTokenizer:
        return cls(name_or_path=str(directory), **{key: config.get(key) for key in _SPECIAL})


def _load_backend(name_or_path: str) -> tuple[Any, dict[str, str], str | None]:
    """The Rust tokenizer, the special tokens its files name, and its chat template (Jinja) if it has one."""
    from tokenizers import Tokenizer

    path = Path(name_or_path).expanduser()
    if (path / BACKEND_FILE).is_file():
        try:
            backend = Tokenizer.from_file(str(path / BACKEND_FILE))
        except Exception as error:  # the Rust side raises plain Exception for a malformed file
            raise TokenizerLoadError(
                f"{str(path / BACKEND_FILE)!r} is not a valid Hugging Face tokenizer file: {_one_line(error)}"
            ) from None
        return backend, _special_tokens_of(path), _chat_template_of(path)
    looks_local = path.is_absolute() or name_or_path.startswith((".", "~")) or path.exists()
    if looks_local and not path.is_dir():
        raise TokenizerLoadError(f"tokenizer folder {name_or_path!r} does not exist")
    from transformers import AutoTokenizer

    try:
        loaded = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=False)
    except Exception as error:  # OSError, ValueError or hub errors depending on the cause
        where = "folder" if looks_local else "hub tokenizer"
        raise TokenizerLoadError(
            f"could not load {where} {name_or_path!r} ({_one_line(error)}); offline, give a folder holding "
            f"{BACKEND_FILE}"
        ) from None
    if not getattr(loaded, "is_fast", False):
        raise TokenizerLoadError(
            f"{name_or_path!r} has no fast (Rust) tokenizer, so it cannot be used here; convert it to a "
            f"{BACKEND_FILE} first"
        )
    found = {key: getattr(loaded, key) for key in _SPECIAL if isinstance(getattr(loaded, key, None), str)}
    template = getattr(loaded, "chat_template", None)
    return loaded.backend_tokenizer, found, template if isinstance(template, str) else None


def _special_tokens_of(folder: Path) -> dict[str, str]:
    """Special tokens named in a folder's tokenizer_config.json (strings, or {"content": ...} entries)."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenizerLoadError(f"{str(path)!r} is not valid JSON: {error}") from None
    found = {}
    for key in _SPECIAL:
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            found[key] = value
    return found


def _chat_template_of(folder: Path) -> str | None:
    """A folder's chat template, as transformers saves one: chat_template.jinja, or the ``chat_template`` of
    tokenizer_config.json (a string, or a list of named templates, of which the one named "default")."""
    if (folder / CHAT_TEMPLATE_FILE).is_file():
        return (folder / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return None
    template = json.loads(path.read_text(encoding="utf-8")).get("chat_template")  # valid: _special_tokens_of read it
    if isinstance(template, list):
        named = (t for t in template if isinstance(t, dict) and t.get("name") == "default")
        template = next((t.get("template") for t in named), None)
    return template if isinstance(template, str) else None


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
