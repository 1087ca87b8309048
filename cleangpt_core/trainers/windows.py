"""Training windows starting at every token of a stream: nanoGPT's random sampling, made resumable.

nanoGPT draws each batch's window offsets at random. Here every offset is one item of a map-style dataset,
so the trainer's seeded per-epoch permutation visits them in random order without repeats, and a resumed
run continues that order exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cleangpt_core.errors import ConfigError


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
