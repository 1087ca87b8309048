"""What a model makes of one text: per-token loss and probability, the logit lens, and attention maps.

One forward pass under `capture` gives all three; the result is plain JSON-ready data, shared by
`cleangpt inspect`, the server's inspection endpoint and the playground page.

The logit lens (nostalgebraist, 2020) reads the residual stream after each block as if it were the last:
through the final norm and the head. Its last layer is the model's own output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.errors import InspectionError
from cleangpt_core.inspection.capture import capture

# The stream before the first block: embeddings plus learned positions, after dropout (the decoder's `drop`).
_EMBEDDINGS = "drop"
DIGITS = 5  # decimals kept in the JSON: enough to compare, small enough to send


def lens_logits(model: nn.Module, residual: torch.Tensor) -> torch.Tensor:
    """The logits `model` would give if `residual` (B, T, n_embd) left its last block: final norm, head, softcap."""
    transformer = getattr(model, "transformer", None)
    if transformer is None or "ln_f" not in transformer or not hasattr(model, "lm_head"):
        raise InspectionError(
            f"{type(model).__name__} has no transformer.ln_f and lm_head, so it has no logit lens: "
            "only decoder-built architectures do"
        )
    logits = model.lm_head(transformer.ln_f(residual))
    softcap = getattr(model.config, "logit_softcap", None)
    return softcap * torch.tanh(logits / softcap) if softcap is not None else logits


def _token_text(tokenizer: Any, token_id: int) -> str:
    return tokenizer.decode([token_id], skip_special_tokens=False)


def _top(tokenizer: Any, log_probs: torch.Tensor, k: int) -> list[dict[str, Any]]:
    values, ids = log_probs.topk(min(k, log_probs.numel()))
    return [
        {"id": int(i), "text": _token_text(tokenizer, int(i)), "logprob": round(float(v), DIGITS)}
        for v, i in zip(values, ids, strict=True)
    ]


def token_log_probs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[t] | ids[<t]) for t >= 1, from logits (T, V) of one sequence: (T - 1,)."""
    return F.log_softmax(logits[:-1].float(), dim=-1).gather(-1, ids[1:].unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def inspect_ids(
    model: nn.Module, tokenizer: Any, ids: list[int], *, top_k: int = 5, attention: bool = True
) -> dict[str, Any]:
    """Everything `cleangpt inspect` shows for the token ids `ids` (at most block_size of them).

    ``tokens[t]``: the token's text, its log-probability and loss given the tokens before it (None for the
    first) and the `top_k` tokens the model preferred there; ``next``: the top tokens after the last one;
    ``logit_lens``: per layer (``embeddings``, ``h.0``, ...) the mean loss and each position's top token;
    ``attention``: per attention part, weights [head][query][key]; ``without_attention``: parts that report none.
    """
    if not ids:
        raise InspectionError("the prompt encodes to no tokens: give a non-empty prompt")
    block_size = model.config.block_size
    if len(ids) > block_size:
        raise InspectionError(f"the prompt is {len(ids)} tokens; this model reads at most {block_size}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    try:
        names = _layer_names(model)
        with capture(model, names, attention=attention) as record:
            logits = model(input_ids)["logits"][0].float()
    finally:
        model.train(was_training)

    log_probs = F.log_softmax(logits, dim=-1)
    tokens = []
    for t, token_id in enumerate(ids):
        entry: dict[str, Any] = {"id": token_id, "text": _token_text(tokenizer, token_id)}
        if t == 0:
            entry.update(logprob=None, loss=None, top=[])
        else:
            value = float(log_probs[t - 1, token_id])
            entry.update(
                logprob=round(value, DIGITS), loss=round(-value, DIGITS), top=_top(tokenizer, log_probs[t - 1], top_k)
            )
        tokens.append(entry)
    losses = [-entry["logprob"] for entry in tokens[1:]]

    lens = []
    for name in names:
        layer_logits = lens_logits(model, record.outputs[name])[0].float()
        layer_log_probs = F.log_softmax(layer_logits, dim=-1)
        target = input_ids[0, 1:]
        loss = -layer_log_probs[:-1].gather(-1, target.unsqueeze(-1)).mean() if len(ids) > 1 else None
        lens.append(
            {
                "layer": "embeddings" if name == _EMBEDDINGS else name,
                "loss": round(float(loss), DIGITS) if loss is not None else None,
                "top": [_top(tokenizer, row, 1)[0] for row in layer_log_probs],
            }
        )
    return {
        "tokens": tokens,
        "next": _top(tokenizer, log_probs[-1], top_k),
        "mean_loss": round(sum(losses) / len(losses), DIGITS) if losses else None,
        "logit_lens": lens,
        "attention": {
            name: [[[round(float(w), DIGITS) for w in row] for row in head] for head in weights[0]]
            for name, weights in record.attention.items()
        },
        "without_attention": record.without_attention,
    }


def _layer_names(model: nn.Module) -> list[str]:
    """The residual stream's read-outs: the embeddings (where named `drop`) and every block's output."""
    transformer = getattr(model, "transformer", None)
    if transformer is None or "h" not in transformer:
        raise InspectionError(f"{type(model).__name__} has no transformer.h blocks to read the residual stream from")
    blocks = [f"h.{i}" for i in range(len(transformer.h))]
    return ([_EMBEDDINGS] if _EMBEDDINGS in transformer else []) + blocks


def inspect_text(model: nn.Module, tokenizer: Any, text: str, **options: Any) -> dict[str, Any]:
    """`inspect_ids` of `text` as `tokenizer` encodes it; the result also holds the text."""
    return {"text": text, **inspect_ids(model, tokenizer, [int(i) for i in tokenizer.encode(text)], **options)}
