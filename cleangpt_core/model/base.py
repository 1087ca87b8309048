"""What every cleanGPT language model shares beyond its blocks: the loss, the length check, parameter
counting, optimizer groups, the key/value cache and `generate`.

Most architectures are presets of `cleangpt_core.model.decoder.Decoder`, composed of parts; one with its own
blocks passes them to `Decoder`; any other subclasses `CausalLanguageModel`, sets `self.config` and writes
`forward(input_ids, attention_mask=None, labels=None, kv_cache=None, logits_to_keep=0)`; either gets the rest
of the model contract from here. `generate` runs the shared decoding engine (`cleangpt_core.inference.decoding`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.config import ModelConfig
from cleangpt_core.errors import ConfigError, SequenceTooLongError
from cleangpt_core.inference.decoding import generate_tokens
from cleangpt_core.kernels import LazyLogits, chunked_head_loss, head_loss_chunk, next_token_targets
from cleangpt_core.model.kv_cache import KVCache
from cleangpt_core.model.parameter_roles import adamw_groups, parameter_roles
from cleangpt_core.model.parametrization import is_mup


class CausalLanguageModel(nn.Module):
    """Base class of the architectures: shared methods of the model contract, no layers of its own."""

    config: ModelConfig
    # Whether `forward` takes labels one position longer than input_ids (through `causal_lm_loss`), so that
    # the last position is trained too. The training data then gives each window its next token as a final
    # label; without it the last position never gets a target, and a learned embedding for it stays as it
    # was initialised. An architecture that computes its own loss the Hugging Face way leaves it False.
    accepts_final_label: ClassVar[bool] = False
    # Bounds the logits (Gemma 2); read from the config once at construction by the models that have it, since
    # torch.compile cannot trace a config's computed attribute on every forward.
    logit_softcap: float | None = None
    # Whether the architecture implements `model.parametrization=mup`; `get_model` refuses muP for one that does
    # not. The decoder does, for every part, and sets the output multiplier (1/m) the head's input is scaled by.
    supports_mup: ClassVar[bool] = False
    output_multiplier: float | None = None

    def check_length(self, length: int, kv_cache: KVCache | None = None) -> None:
        """Reject a call that would see more than block_size positions, naming both numbers."""
        seen = length + (kv_cache.length if kv_cache is not None else 0)
        if seen > self.config.block_size:
            raise SequenceTooLongError(
                f"sequence of length {seen} is longer than this model's block_size={self.config.block_size}; "
                f"crop the input to its last {self.config.block_size} tokens or build a model with a larger block_size"
            )

    @staticmethod
    def causal_lm_loss(
        logits: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean next-token cross-entropy: position t predicts labels[t+1]; -100 and padding are ignored.

        Labels as long as the input (Hugging Face's convention) leave the last position without a target;
        labels one longer give it the token after the input as its target.
        """
        # Shift the labels left rather than slicing the logits: a (B, T-1, V) slice would copy the logits.
        targets = next_token_targets(labels, logits.size(1), attention_mask)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-100)

    def head_output(
        self, hidden: torch.Tensor, labels: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The output of a forward from the final hidden states (B, T, C): logits through `lm_head` (times muP's
        output multiplier, softcapped where the config says) and, given labels, `causal_lm_loss`.

        Where the host computes the loss faster chunk by chunk (a GPT-2-sized vocabulary on a CPU, as measured
        by `cleangpt_core.kernels.head_loss_chunk`), it does so without the logits, and computes them only
        when the output's ``logits`` is read, in the grad mode and autocast of that moment.
        """
        head = self.lm_head
        if self.output_multiplier is not None:  # muP: logits x 1/m, applied before the head so chunks get it too
            hidden = hidden * self.output_multiplier
        if labels is None:
            return {"logits": self._logits(hidden)}
        rows = hidden.reshape(-1, hidden.size(-1))
        targets = next_token_targets(labels, hidden.size(1), attention_mask).reshape(-1)
        softcap = self.logit_softcap
        chunk = None if head.bias is not None else head_loss_chunk(rows, head.weight, targets, softcap)
        if chunk is None:
            logits = self._logits(hidden)
            return {"logits": logits, "loss": self.causal_lm_loss(logits, labels, attention_mask)}
        loss = chunked_head_loss(rows, head.weight, targets, softcap, chunk)
        return LazyLogits(loss, lambda: self._logits(hidden))

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm_head(hidden)
        softcap = self.logit_softcap
        if softcap is not None:  # bounded logits keep an overconfident head from blowing up the loss (Gemma 2)
            logits = softcap * torch.tanh(logits / softcap)
        return logits

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; learned position embeddings (`wpe`) are left out by default, as they do no compute
        per token.

        Token embeddings stay in: they are (or are as large as) the output head, which does.
        """
        count = sum(p.numel() for p in self.parameters())
        if non_embedding:
            count -= sum(p.numel() for name, p in self.named_parameters() if name.split(".")[-2:-1] == ["wpe"])
        return count

    def optimizer_groups(
        self, weight_decay: float, lr: float | None = None, eps: float | None = None
    ) -> list[dict[str, Any]]:
        """AdamW parameter groups: decay on matrices, embeddings and the head only, as the trainers' AdamW
        (`cleangpt_core.model.parameter_roles.adamw_groups`).

        Gains, norms, biases and scalar gates get no weight decay: pulling them towards zero fights the
        scale they exist to learn (nanoGPT, and the SAS paper for its alpha/beta/gamma gains). Under muP the
        hidden matrices train at lr/m and weight decay x m, a group of its own, so `lr` must be given there, and
        every group carries muP's epsilon, `eps` / m (`eps` defaults to torch.optim.AdamW's 1e-8: give the eps
        you give the optimizer).
        """
        if lr is None and is_mup(self.config):
            raise ConfigError(
                "model.parametrization is 'mup': its hidden matrices train at a learning rate of their own; "
                "pass lr= to optimizer_groups (and the same lr to the optimizer)"
            )
        mup_eps = (1e-8 if eps is None else eps) if is_mup(self.config) else None
        return adamw_groups(parameter_roles(self), lr=lr or 0.0, weight_decay=weight_decay, eps=mup_eps)

    def allocate_kv_cache(self, batch_size: int, capacity: int) -> KVCache:
        """An empty cache for `batch_size` rows of up to `capacity` positions (at most block_size).

        Its tensors are allocated by the first forward that writes them, on that call's device and dtype.
        """
        return KVCache(
            n_layer=self.config.n_layer,
            batch_size=batch_size,
            n_head=self.config.n_head,
            head_dim=self.config.head_dim,
            capacity=min(capacity, self.config.block_size),
        )

    @torch.inference_mode()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        sampler: str | Callable[..., torch.Tensor] | None = None,
        eos_token_id: int | None = None,
        pad_token_id: int | None = None,
        generator: torch.Generator | None = None,
        on_tokens: Callable[[torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Continue each row of `idx` (B, T) by up to `max_new_tokens` tokens, with the key/value cache.

        Returns (B, T + n): the (cropped) prompt followed by the new tokens. See
        `cleangpt_core.inference.decoding.generate_tokens` for the arguments.
        """
        return generate_tokens(
            self,
            idx,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            attention_mask=attention_mask,
            sampler=sampler,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            generator=generator,
            on_tokens=on_tokens,
        )


def takes_final_label(model: nn.Module) -> bool:
    """Whether `model` takes labels one token longer than its input (`CausalLanguageModel.accepts_final_label`);
    a model not built on the base class takes labels as long as its input."""
    return bool(getattr(model, "accepts_final_label", False))
