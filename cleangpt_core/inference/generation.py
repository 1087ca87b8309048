"""Text generation with a model and a tokenizer: one prompt (optionally streamed) or a batch of prompts.

Both run the shared decoding engine (`cleangpt_core.inference.decoding.generate_tokens`): the key/value cache,
the registered samplers, stopping at the tokenizer's EOS token and the sliding context window. A batch is
decoded as one left-padded batch with an attention mask, not prompt by prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from cleangpt_core.errors import GenerationError
from cleangpt_core.inference.decoding import SamplerLike, generate_tokens

StreamCallback = Callable[[str], None]


class TextStreamer:
    """Turns new token ids into new text, one piece per step, for printing as it is produced.

    It decodes everything generated so far and emits what was not emitted yet, so multi-token characters
    (byte-level BPE) come out whole: text ending in an incomplete character (U+FFFD) is held back.
    """

    def __init__(self, tokenizer: Any, callback: StreamCallback) -> None:
        self.tokenizer = tokenizer
        self.callback = callback
        self.ids: list[int] = []
        self.emitted = 0

    def __call__(self, new_tokens: torch.Tensor) -> None:
        self.ids.append(int(new_tokens[0, 0]))
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd") or len(text) <= self.emitted:
            return
        self.callback(text[self.emitted :])
        self.emitted = len(text)

    def flush(self) -> None:
        """Emit whatever was held back (an incomplete character at the very end)."""
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if len(text) > self.emitted:
            self.callback(text[self.emitted :])
            self.emitted = len(text)


def _make_generator(
    seed: int | None, generator: torch.Generator | None, device: torch.device
) -> torch.Generator | None:
    if generator is not None or seed is None:
        return generator
    return torch.Generator(device=device).manual_seed(seed)


def _encode(tokenizer: Any, text: str) -> list[int]:
    ids = [int(i) for i in tokenizer.encode(text)]
    if not ids:
        raise GenerationError(f"prompt {text!r} encodes to no tokens: give a non-empty prompt")
    return ids


def run_generation(
    model: nn.Module,
    tokenizer: Any,
    prompt_text: str,
    device: torch.device | str = "cpu",
    max_new_tokens: int = 50,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    *,
    sampler: SamplerLike = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    stream: StreamCallback | None = None,
    stop_at_eos: bool = True,
) -> tuple[list[int], str]:
    """Continue `prompt_text`; return (ids, text) of the prompt followed by what was generated.

    `sampler` names a registered sampler (default: temperature, top-k and top-p combined), given the
    parameters that are not None (one it does not take is an error); `seed` (or an explicit `generator`)
    makes sampling reproducible; `stream(piece)` receives the new text as it is produced. Generation stops
    early at the tokenizer's EOS token unless `stop_at_eos` is False. The model must already be on `device`.
    """
    streamer = TextStreamer(tokenizer, stream) if stream is not None else None
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "sampler": sampler}
    [(prompt_ids, new_ids)] = _generate(
        model, tokenizer, [prompt_text], device, max_new_tokens, sampling, seed, generator, stop_at_eos, streamer
    )
    if streamer is not None:
        streamer.flush()
    ids = prompt_ids + new_ids
    return ids, tokenizer.decode(ids, skip_special_tokens=True)


def batch_generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    device: torch.device | str = "cpu",
    max_new_tokens: int = 50,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    *,
    sampler: SamplerLike = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    stop_at_eos: bool = True,
) -> list[dict[str, Any]]:
    """Continue every prompt in one left-padded batch; return one dict per prompt, in order.

    Each dict holds ``prompt``, ``completion`` (the new text only), ``generated_text`` (prompt followed by
    completion, as Hugging Face's text-generation pipeline returns it) and ``token_ids`` (prompt and new
    ids, without padding; an EOS that ended the row is kept). A row stops at the tokenizer's EOS token.
    """
    if isinstance(prompts, str):
        raise GenerationError("batch_generate takes a list of prompts; use run_generation for a single one")
    if not prompts:
        return []
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "sampler": sampler}
    rows = _generate(model, tokenizer, prompts, device, max_new_tokens, sampling, seed, generator, stop_at_eos)
    return [
        {
            "prompt": prompt,
            "completion": tokenizer.decode(new_ids, skip_special_tokens=True),
            "generated_text": tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True),
            "token_ids": prompt_ids + new_ids,
        }
        for prompt, (prompt_ids, new_ids) in zip(prompts, rows, strict=True)
    ]


def _generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    device: torch.device | str,
    max_new_tokens: int,
    sampling: dict[str, Any],
    seed: int | None,
    generator: torch.Generator | None,
    stop_at_eos: bool,
    on_tokens: Callable[[torch.Tensor], None] | None = None,
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, new ids) of every prompt, decoded as one batch, left-padded with an attention mask when
    the prompts differ in length; a row's new ids end with the EOS that finished it."""
    device = torch.device(device)
    encoded = [_encode(tokenizer, prompt) for prompt in prompts]
    width = max(len(ids) for ids in encoded)
    eos = tokenizer.eos_token_id if stop_at_eos else None
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    padded = len(encoded) > 1  # one prompt needs no mask, and takes the unmasked attention path
    tokens = generate_tokens(
        model,
        input_ids.to(device),
        max_new_tokens,
        **sampling,
        attention_mask=attention_mask.to(device) if padded else None,
        eos_token_id=eos,
        pad_token_id=pad,
        generator=_make_generator(seed, generator, device),
        on_tokens=on_tokens,
    )
    prompt_width = min(width, model.config.block_size)  # the engine crops long prompts
    rows = []
    for ids, row in zip(encoded, tokens[:, prompt_width:].tolist(), strict=True):
        rows.append((ids, row[: row.index(eos) + 1] if eos is not None and eos in row else row))
    return rows
