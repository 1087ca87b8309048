"""The two ways a token stream becomes windows of `block_size` tokens for next-token prediction.

`TokenBlockDataset` cuts the stream into windows that overlap by one token, so evaluating over all of them
scores every token once. `RandomWindowDataset` starts a window at every token: nanoGPT's random sampling,
made resumable. nanoGPT draws each batch's window offsets at random; here every offset is one item of a
map-style dataset, so the trainer's seeded per-epoch permutation visits them in random order without
repeats, and a resumed run continues that order exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cleangpt_core.errors import ConfigError, DataError

IGNORE_INDEX = -100  # labels the loss skips, as in Hugging Face


class RandomWindowDataset(Dataset):
    """Every window of `block_size` consecutive tokens of `tokens` as inputs, labelled with themselves (the
    model shifts them); with `final_label`, the labels run one token further, so the last position is
    trained too (see `CausalLanguageModel.accepts_final_label`)."""

    def __init__(self, tokens: np.ndarray, block_size: int, final_label: bool = False) -> None:
        self.span = block_size + int(final_label)
        if len(tokens) < self.span:
            raise ConfigError(f"the token stream has {len(tokens)} tokens, fewer than one window of {self.span}")
        self.tokens = tokens
        self.block_size = block_size

    def __len__(self) -> int:
        return len(self.tokens) - self.span + 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        window = torch.from_numpy(np.asarray(self.tokens[index : index + self.span], dtype=np.int64))
        return {"input_ids": window[: self.block_size], "labels": window}


class TokenBlockDataset(Dataset):
    """Windows of `block_size` input tokens over one token stream, for next-token prediction.

    The labels are the window itself (the model shifts them inside) or, with `final_label`, the window and
    the token after it, so that the last position is trained too (see
    `CausalLanguageModel.accepts_final_label`). Consecutive windows overlap by one token: the last label
    of one window is the first token (input only) of the next, so every token but the stream's first is a
    prediction target exactly once and evaluating over all windows scores the whole stream. A last window
    covers the leftover tail; it is aligned to the end of the stream and its labels are -100 where the
    previous window already scored the token.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, final_label: bool = False) -> None:
        if block_size < 2:
            raise DataError(f"block_size must be at least 2 (an input and a target), got {block_size}")
        span = block_size + int(final_label)  # tokens a window's labels cover
        if len(tokens) < span:
            raise DataError(
                f"the corpus has {len(tokens)} tokens, fewer than one block of {span}; "
                "use more text or a smaller block_size / max_seq_length"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.span = span
        stride = span - 1
        full = (len(tokens) - 1) // stride
        starts = [i * stride for i in range(full)]
        masked = [0] * full
        scored_up_to = full * stride  # the last token position already a target
        if scored_up_to < len(tokens) - 1:
            start = len(tokens) - span
            starts.append(start)
            masked.append(scored_up_to - start)  # label positions 1..this are already scored
        self._starts = np.array(starts, dtype=np.int64)
        self._masked = np.array(masked, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._starts)

    @property
    def starts(self) -> np.ndarray:
        """Where each window begins in the token stream."""
        return self._starts

    @property
    def num_targets(self) -> int:
        """Tokens predicted over the whole dataset: every token but the first."""
        return len(self.tokens) - 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = int(self._starts[index])
        window = torch.from_numpy(np.asarray(self.tokens[start : start + self.span], dtype=np.int64))
        labels = window.clone()
        labels[1 : 1 + int(self._masked[index])] = IGNORE_INDEX
        return {"input_ids": window[: self.block_size], "labels": labels}
