"""The byte-level tokenizer: a text's UTF-8 bytes are its ids, so every string is encodable, nothing is unknown.

Ids 0-255 are the bytes; 256, 257 and 258 are ``<pad>``, ``<bos>`` and ``<eos>``. Encoding and decoding are
numpy conversions of the UTF-8 buffer, never a Python loop per byte. Decoding a sequence that is not valid
UTF-8 (a model's sample cut mid-character) replaces the broken bytes with U+FFFD instead of raising.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from cleangpt_core.errors import TokenizerError
from cleangpt_core.tokenizers.base_tokenizer import BaseTokenizer, TokenIds, as_id_list, wrap_encoded

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS = (PAD, BOS, EOS)
NUM_BYTES = 256
SPECIAL_IDS = {token: NUM_BYTES + offset for offset, token in enumerate(SPECIAL_TOKENS)}


class ByteLevelTokenizer(BaseTokenizer):
    """UTF-8 bytes as ids. Tokens are ints 0-255 (the bytes) or the special token strings."""

    tokenizer_type: ClassVar[str] = "byte"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(pad_token=PAD, bos_token=BOS, eos_token=EOS, **kwargs)

    @property
    def vocab_size(self) -> int:
        return NUM_BYTES + len(SPECIAL_TOKENS)

    def tokenize(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def convert_tokens_to_ids(self, tokens: Sequence[int | str]) -> list[int]:
        ids = []
        for token in tokens:
            if isinstance(token, str):
                if token not in SPECIAL_IDS:
                    raise TokenizerError(
                        f"byte tokenizer token {token!r} is neither a byte (0-255) nor {SPECIAL_TOKENS}"
                    )
                ids.append(SPECIAL_IDS[token])
            elif 0 <= token < NUM_BYTES:
                ids.append(int(token))
            else:
                raise TokenizerError(f"byte tokenizer token {token!r} is not a byte value 0-255")
        return ids

    def convert_ids_to_tokens(self, ids: TokenIds) -> list[int | str]:
        tokens: list[int | str] = []
        for token_id in self._checked(as_id_list(ids)):
            tokens.append(token_id if token_id < NUM_BYTES else SPECIAL_TOKENS[token_id - NUM_BYTES])
        return tokens

    def convert_tokens_to_string(self, tokens: Sequence[int | str]) -> str:
        return self.decode(self.convert_tokens_to_ids(tokens))

    def _checked(self, ids: list[int]) -> list[int]:
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise TokenizerError(f"token id {bad[0]} is outside the byte vocabulary (ids 0..{self.vocab_size - 1})")
        return ids

    def encode(self, text: str, add_special_tokens: bool = False, return_tensors: str | None = None) -> Any:
        if not isinstance(text, str):
            raise TokenizerError(f"encode expects a str, got {type(text).__name__}")
        ids = list(text.encode("utf-8"))  # bytes iterate as ints in C: no per-byte Python work
        if add_special_tokens:
            ids = self.build_inputs_with_special_tokens(ids)
        return wrap_encoded(ids, return_tensors)

    def encode_corpus(self, text: str) -> np.ndarray:
        """The UTF-8 buffer viewed as uint8, widened to uint16 (room for the special ids)."""
        if not isinstance(text, str):
            raise TokenizerError(f"encode_corpus expects a str, got {type(text).__name__}")
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.uint16)

    def decode(self, token_ids: TokenIds, skip_special_tokens: bool = False) -> str:
        ids = np.asarray(as_id_list(token_ids), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            self._checked(ids.tolist())
        special = ids >= NUM_BYTES
        if not special.any():
            return ids.astype(np.uint8).tobytes().decode("utf-8", errors="replace")
        # A special token is not text: the bytes on each side of it decode as separate runs.
        pieces: list[str] = []
        start = 0
        for position in np.flatnonzero(special).tolist():
            pieces.append(ids[start:position].astype(np.uint8).tobytes().decode("utf-8", errors="replace"))
            if not skip_special_tokens:
                pieces.append(SPECIAL_TOKENS[int(ids[position]) - NUM_BYTES])
            start = position + 1
        pieces.append(ids[start:].astype(np.uint8).tobytes().decode("utf-8", errors="replace"))
        return "".join(pieces)

    def to_hf_tokenizer(self) -> Any:
        """A ``tokenizers`` model with one token per byte: the same ids, the same text back.

        Hugging Face's byte-level pre-tokenizer turns text into its UTF-8 bytes (spelled as GPT-2's printable
        byte characters), each byte is its own token with its value as id, and the byte-level decoder turns
        them back into text; the special tokens keep ids 256-258.
        """
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        from cleangpt_core.tokenizers.gpt2_tokenizer import bytes_to_unicode

        vocab = {character: byte for byte, character in bytes_to_unicode().items()}
        vocab.update(SPECIAL_IDS)
        backend = Tokenizer(models.WordLevel(vocab, unk_token=PAD))  # every byte is known: never used
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated"),  # one token per byte
            ]
        )
        backend.decoder = decoders.ByteLevel()
        return PreTrainedTokenizerFast(
            tokenizer_object=backend,
            pad_token=PAD,
            bos_token=BOS,
            eos_token=EOS,
            padding_side=self.padding_side,
            truncation_side=self.truncation_side,
            clean_up_tokenization_spaces=False,
            split_special_tokens=True,  # "<eos>" typed in a text is text, as in this tokenizer
        )

    def token_display(self, token_id: int) -> str:
        """ASCII bytes as themselves, other bytes as ``<0xE2>`` (alone they are no character), specials by name."""
        (token,) = self.convert_ids_to_tokens([token_id])
        if isinstance(token, str):
            return token
        return chr(token) if token < 128 else f"<0x{token:02X}>"
