"""The interface every tokenizer implements, with the habits of Hugging Face tokenizers.

A subclass supplies four things (`vocab_size`, `tokenize`, `convert_tokens_to_ids`, `convert_ids_to_tokens`)
and, to be saved, its constructor options (`get_config`) and any extra files (`_save_files`). Everything a
model needs is then built here once for all tokenizers: `encode` / `decode` with tensors, the batch call with
padding, truncation and attention masks (Hugging Face semantics), the numpy fast path for whole corpora, and
JSON-only `save_pretrained` / `from_pretrained` round trips.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from cleangpt_core.checkpoints.json_files import read_json
from cleangpt_core.errors import TokenizerError, TokenizerLoadError
from cleangpt_core.registry import get_component

# The file naming the tokenizer type; HF's own tokenizer_config.json may sit beside it (the gpt2 tokenizer).
TOKENIZER_FILE = "cleangpt_tokenizer.json"
FORMAT_VERSION = 1

TokenIds = list[int] | Sequence[int] | np.ndarray | torch.Tensor

_PADDING = {False: None, "do_not_pad": None, True: "longest", "longest": "longest", "max_length": "max_length"}
_TRUNCATION = {False: False, "do_not_truncate": False, True: True, "longest_first": True, "only_first": True}
_SIDES = ("left", "right")


class BatchEncoding(dict):
    """The result of a tokenizer call: ``input_ids`` and ``attention_mask``, readable as keys or attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to(self, device: str | torch.device) -> BatchEncoding:
        """Move every tensor to `device` (as ``model(**inputs.to(device))`` expects)."""
        return BatchEncoding({k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.items()})


def as_id_list(token_ids: TokenIds | int) -> list[int]:
    """Token ids from a list, a numpy array, or a tensor of shape (T,) or (1, T), as a list of ints."""
    if isinstance(token_ids, torch.Tensor | np.ndarray):
        if token_ids.ndim == 2 and token_ids.shape[0] == 1:
            token_ids = token_ids[0]
        if token_ids.ndim != 1:
            raise TokenizerError(
                f"decode expects one sequence of ids (shape (T,) or (1, T)), got shape {tuple(token_ids.shape)}; "
                "decode a batch row by row"
            )
        return [int(i) for i in token_ids.tolist()]
    if isinstance(token_ids, int):
        return [token_ids]
    return [int(i) for i in token_ids]


def read_tokenizer_config(directory: str | Path) -> dict[str, Any]:
    """Read and check the tokenizer-type file of a saved tokenizer directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TokenizerLoadError(
            f"tokenizer directory {str(directory)!r} does not exist; save one with tokenizer.save_pretrained(dir)"
        )
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise TokenizerLoadError(
            f"{str(directory)!r} is not a cleanGPT tokenizer directory: it has no {TOKENIZER_FILE} "
            "(written by tokenizer.save_pretrained)"
        )
    saved = read_json(path, TokenizerLoadError, "save the tokenizer again")
    if not isinstance(saved, dict) or not isinstance(saved.get("tokenizer_type"), str):
        raise TokenizerLoadError(f"{str(path)!r} is corrupt: it does not name a tokenizer_type")
    if not isinstance(saved.get("config", {}), dict):
        raise TokenizerLoadError(f"{str(path)!r} is corrupt: 'config' must be a mapping of constructor options")
    return saved


def read_json_file(path: Path, what: str) -> Any:
    """Load a JSON file of a tokenizer directory, with errors that name the file."""
    if not path.is_file():
        raise TokenizerLoadError(f"tokenizer directory {str(path.parent)!r} lacks {path.name} ({what})")
    return read_json(path, TokenizerLoadError, f"it should hold {what}; save the tokenizer again")


class BaseTokenizer(ABC):
    """Text <-> token ids, for a model.

    `tokenizer_type` is the name the tokenizer is registered under; `from_pretrained` uses it to know which
    class rebuilds a saved directory. Special tokens are strings (``pad_token``...) whose ids are looked up
    in the vocabulary; a tokenizer without one leaves it None.
    """

    tokenizer_type: ClassVar[str | None] = None

    def __init__(
        self,
        *,
        pad_token: str | None = None,
        eos_token: str | None = None,
        bos_token: str | None = None,
        unk_token: str | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        model_max_length: int | None = None,
    ) -> None:
        self.pad_token = pad_token
        self.eos_token = eos_token
        self.bos_token = bos_token
        self.unk_token = unk_token
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.model_max_length = model_max_length

    # --- what a subclass provides -------------------------------------------------------------------------

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included: the model's embedding size."""

    @abstractmethod
    def tokenize(self, text: str) -> list[Any]:
        """Split `text` into tokens (strings for most tokenizers; ints for the byte tokenizer)."""

    @abstractmethod
    def convert_tokens_to_ids(self, tokens: Sequence[Any]) -> list[int]:
        """Map tokens to ids."""

    @abstractmethod
    def convert_ids_to_tokens(self, ids: TokenIds) -> list[Any]:
        """Map ids to tokens."""

    def convert_tokens_to_string(self, tokens: Sequence[Any]) -> str:
        """Join tokens back into text; the default suits tokenizers whose tokens are pieces of the text."""
        return "".join(str(token) for token in tokens)

    def get_config(self) -> dict[str, Any]:
        """The JSON-ready constructor options that, with `_save_files`, rebuild this tokenizer."""
        return {}

    def _save_files(self, directory: Path) -> None:  # noqa: B027 (optional hook, empty on purpose)
        """Write files beyond the config (a vocabulary...) into `directory`; none by default."""

    @classmethod
    def _from_saved(cls, directory: Path, config: dict[str, Any]) -> BaseTokenizer:
        """Rebuild from a saved directory; by default the saved config is the constructor's keywords."""
        try:
            return cls(**config)
        except TypeError as error:
            raise TokenizerLoadError(
                f"tokenizer directory {str(directory)!r} has options {cls.__name__} rejects: {error}"
            ) from None

    # --- special tokens -----------------------------------------------------------------------------------

    def _special_id(self, token: str | None) -> int | None:
        return None if token is None else self.convert_tokens_to_ids([token])[0]

    @property
    def pad_token_id(self) -> int | None:
        """Id used to pad batches (None: this tokenizer cannot pad)."""
        return self._special_id(self.pad_token)

    @property
    def eos_token_id(self) -> int | None:
        """Id that ends a document (the data pipeline puts it between documents)."""
        return self._special_id(self.eos_token)

    @property
    def bos_token_id(self) -> int | None:
        """Id that starts a sequence when ``add_special_tokens=True``."""
        return self._special_id(self.bos_token)

    @property
    def unk_token_id(self) -> int | None:
        """Id that stands for text outside the vocabulary."""
        return self._special_id(self.unk_token)

    @property
    def all_special_ids(self) -> list[int]:
        """The distinct ids of every special token (what ``skip_special_tokens`` drops)."""
        ids = (self.pad_token_id, self.eos_token_id, self.bos_token_id, self.unk_token_id)
        return sorted({i for i in ids if i is not None})

    @property
    def padding_side(self) -> str:
        """'right' (default) or 'left' (for batched generation, so every prompt ends at the last column)."""
        return self._padding_side

    @padding_side.setter
    def padding_side(self, side: str) -> None:
        if side not in _SIDES:
            raise TokenizerError(f"padding_side must be 'left' or 'right', got {side!r}")
        self._padding_side = side

    @property
    def truncation_side(self) -> str:
        """'right' (default: keep the start) or 'left' (keep the end)."""
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        if side not in _SIDES:
            raise TokenizerError(f"truncation_side must be 'left' or 'right', got {side!r}")
        self._truncation_side = side

    # --- encoding and decoding ----------------------------------------------------------------------------

    def build_inputs_with_special_tokens(self, ids: list[int]) -> list[int]:
        """Ids with the special tokens ``add_special_tokens=True`` adds: a leading bos where there is one."""
        bos = self.bos_token_id
        return ids if bos is None else [bos, *ids]

    def encode(
        self, text: str, add_special_tokens: bool = False, return_tensors: str | None = None
    ) -> list[int] | torch.Tensor:
        """Token ids of `text`; a LongTensor of shape (1, T) with ``return_tensors="pt"``."""
        _check_text(text, "encode")
        ids = self.convert_tokens_to_ids(self.tokenize(text))
        if add_special_tokens:
            ids = self.build_inputs_with_special_tokens(ids)
        return wrap_encoded(ids, return_tensors)

    def decode(self, token_ids: TokenIds, skip_special_tokens: bool = False) -> str:
        """Text of `token_ids` (a list, array, or tensor of shape (T,) or (1, T))."""
        ids = as_id_list(token_ids)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        return self.convert_tokens_to_string(self.convert_ids_to_tokens(ids))

    def batch_decode(
        self, sequences: Sequence[TokenIds] | torch.Tensor, skip_special_tokens: bool = False
    ) -> list[str]:
        """Decode each row of a batch."""
        return [self.decode(row, skip_special_tokens=skip_special_tokens) for row in sequences]

    def token_display(self, token_id: int) -> str:
        """A readable form of one id, for statistics and plots."""
        return self.decode([token_id])

    @property
    def corpus_dtype(self) -> np.dtype:
        """The smallest integer type holding every id: uint16 for vocabularies up to 65,536, else uint32."""
        return np.dtype(np.uint16) if self.vocab_size <= 2**16 else np.dtype(np.uint32)

    def encode_corpus(self, text: str) -> np.ndarray:
        """Ids of a whole corpus as a flat numpy array; subclasses override this with a vectorised path."""
        _check_text(text, "encode_corpus")
        return np.asarray(self.encode(text), dtype=self.corpus_dtype)

    def encode_corpus_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode_corpus` of each text; a tokenizer with a batch backend (Rust) overrides this."""
        return [self.encode_corpus(text) for text in texts]

    def __call__(
        self,
        text: str | Sequence[str],
        padding: bool | str = False,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        add_special_tokens: bool = False,
        return_attention_mask: bool = True,
    ) -> BatchEncoding:
        """Encode one text or a batch into ``input_ids`` and ``attention_mask``, as Hugging Face does.

        padding: False, True / "longest" (to the longest in the batch) or "max_length"; truncation to
        `max_length` (default `model_max_length`) keeps the start, or the end with ``truncation_side="left"``;
        pads go on `padding_side`. ``return_tensors="pt"`` gives LongTensors of shape (B, T) ((1, T) for one
        text) and needs sequences of equal length.
        """
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        for item in texts:
            _check_text(item, "the tokenizer call")
        if padding not in _PADDING:
            raise TokenizerError(f"padding must be False, True, 'longest' or 'max_length', got {padding!r}")
        if truncation not in _TRUNCATION:
            raise TokenizerError(f"truncation must be True or False, got {truncation!r}")
        pad_to, truncate = _PADDING[padding], _TRUNCATION[truncation]
        if max_length is None and (truncate or pad_to == "max_length"):
            max_length = self.model_max_length
            if max_length is None and pad_to == "max_length":
                raise TokenizerError("padding='max_length' needs max_length (this tokenizer has no model_max_length)")
        if max_length is not None and max_length < 1:
            raise TokenizerError(f"max_length must be at least 1, got {max_length}")

        sequences = [list(self.encode(item, add_special_tokens=add_special_tokens)) for item in texts]
        if truncate and max_length is not None:
            keep_end = self.truncation_side == "left"
            sequences = [seq[-max_length:] if keep_end else seq[:max_length] for seq in sequences]
        masks = [[1] * len(seq) for seq in sequences]
        if pad_to is not None and sequences:
            target = max(len(seq) for seq in sequences) if pad_to == "longest" else max_length
            sequences, masks = self._pad(sequences, masks, target)

        encoding = BatchEncoding(input_ids=sequences)
        if return_attention_mask:
            encoding["attention_mask"] = masks
        if return_tensors is not None:
            return self._as_tensors(encoding, return_tensors)
        if single:
            return BatchEncoding({key: value[0] for key, value in encoding.items()})
        return encoding

    def _pad(self, sequences: list[list[int]], masks: list[list[int]], target: int) -> tuple[list, list]:
        pad_id = self.pad_token_id
        if pad_id is None and any(len(seq) < target for seq in sequences):
            raise TokenizerError(f"{type(self).__name__} has no pad token, so it cannot pad; set pad_token first")
        left = self.padding_side == "left"
        padded_ids, padded_masks = [], []
        for seq, mask in zip(sequences, masks, strict=True):
            missing = max(0, target - len(seq))
            if left:
                padded_ids.append([pad_id] * missing + seq)
                padded_masks.append([0] * missing + mask)
            else:
                padded_ids.append(seq + [pad_id] * missing)
                padded_masks.append(mask + [0] * missing)
        return padded_ids, padded_masks

    @staticmethod
    def _as_tensors(encoding: BatchEncoding, return_tensors: str) -> BatchEncoding:
        if return_tensors not in ("pt", "np"):
            raise TokenizerError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}")
        lengths = {len(seq) for seq in encoding["input_ids"]}
        if len(lengths) > 1:
            raise TokenizerError(
                f"cannot stack sequences of different lengths {sorted(lengths)} into a tensor; "
                "pass padding=True (or truncation=True with max_length)"
            )
        if return_tensors == "np":
            return BatchEncoding({key: np.asarray(value, dtype=np.int64) for key, value in encoding.items()})
        return BatchEncoding({key: torch.tensor(value, dtype=torch.long) for key, value in encoding.items()})

    # --- saving and loading -------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the tokenizer as JSON files into `directory` (created if missing); returns the directory."""
        if self.tokenizer_type is None:
            raise TokenizerError(
                f"{type(self).__name__} cannot be saved: set its class attribute tokenizer_type to the name it is "
                "registered under, so from_pretrained knows which tokenizer to rebuild"
            )
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        try:
            self._save_files(directory)
        except OSError:
            raise
        except Exception as error:  # the Rust `tokenizers` writer reports an I/O error as a bare Exception
            code = re.search(r"\(os error (\d+)\)", str(error))
            if code is None:
                raise
            # as the OSError it is, so a full disk is handled as every other write's (kept state, one line)
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(directory)) from None
        saved = {
            "tokenizer_type": self.tokenizer_type,
            "format_version": FORMAT_VERSION,
            "config": self.get_config(),
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "model_max_length": self.model_max_length,
        }
        # The type file goes last: a directory interrupted mid-save is reported as incomplete, not misread.
        (directory / TOKENIZER_FILE).write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", "utf-8")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> BaseTokenizer:
        """Rebuild a tokenizer saved with `save_pretrained`; on `BaseTokenizer` the saved type picks the class."""
        saved = read_tokenizer_config(directory)
        if cls is BaseTokenizer:
            return get_component("tokenizer", saved["tokenizer_type"]).load().from_pretrained(directory)
        if cls.tokenizer_type is None or saved["tokenizer_type"].lower() != cls.tokenizer_type.lower():
            raise TokenizerLoadError(
                f"{str(directory)!r} holds a {saved['tokenizer_type']!r} tokenizer, not {cls.tokenizer_type!r}; "
                "load it with cleangpt_core.tokenizers.from_pretrained"
            )
        tokenizer = cls._from_saved(Path(directory), saved.get("config", {}))
        tokenizer.padding_side = saved.get("padding_side", "right")
        tokenizer.truncation_side = saved.get("truncation_side", "right")
        tokenizer.model_max_length = saved.get("model_max_length")
        return tokenizer

    def to_hf_tokenizer(self) -> Any:
        """This tokenizer as a Hugging Face ``PreTrainedTokenizerFast`` that encodes and decodes identically.

        What ``cleangpt export`` writes, so that ``transformers.AutoTokenizer`` loads it with no custom code.
        A tokenizer with no such form raises `TokenizerError`; subclasses that have one override this.
        """
        raise TokenizerError(
            f"the {self.tokenizer_type or type(self).__name__!r} tokenizer has no Hugging Face form: implement "
            f"{type(self).__name__}.to_hf_tokenizer() to export models that use it"
        )

    def fingerprint(self) -> str:
        """A hash of the saved state: equal for tokenizers that map text to ids identically (cache keys)."""
        digest = hashlib.sha256()
        with tempfile.TemporaryDirectory(prefix="cleangpt-tokenizer-") as tmp:
            root = Path(tmp)
            self.save_pretrained(root)
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(b"\0")
                digest.update(path.read_bytes())
        return digest.hexdigest()

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def _check_text(text: object, where: str) -> None:
    if not isinstance(text, str):
        hint = "; call the tokenizer on a list for a batch" if isinstance(text, list | tuple) else ""
        raise TokenizerError(f"{where} expects a str, got {type(text).__name__}{hint}")


def wrap_encoded(ids: list[int], return_tensors: str | None) -> list[int] | torch.Tensor:
    """`ids` as encode returns them: the list itself, or a LongTensor of shape (1, T) for "pt"."""
    if return_tensors is None:
        return ids
    if return_tensors != "pt":
        raise TokenizerError(f"return_tensors must be 'pt' or None, got {return_tensors!r}")
    return torch.tensor([ids], dtype=torch.long)
