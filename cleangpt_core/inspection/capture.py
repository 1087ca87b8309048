"""Recording and replacing what flows out of a model's parts, by stable name, with no code in the parts.

Every submodule is reachable by its name with the decoder's ``transformer.`` prefix dropped: ``wte``,
``h.3`` (the residual stream after block 3), ``h.3.attn``, ``h.3.mlp``, ``h.3.ln_1``, ``ln_f``, ``lm_head``.
The names come from ``named_modules``, so they hold for every preset, part combination and architecture
built on the decoder, a plugin's included. `capture` registers PyTorch forward hooks for the duration of a
``with`` block only: outside one, a model carries no hook and runs exactly as it would without this module.

Attention weights are taken without the part's help: an attention part calls ``layout.attend(q, k, v)``
(the shared `AttentionLayout`), so while it runs its layout's ``attend`` is wrapped to compute the softmax
weights beside the unchanged output. A part that attends some other way records none and is listed in
`Capture.without_attention`; views skip it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cleangpt_core.errors import InspectionError
from cleangpt_core.model.kv_cache import AttentionLayout

# The decoder keeps its stack under `transformer` (GPT-2's parameter names); a stable name leaves it out.
_CONTAINER = "transformer."
# An attention part sits under this name in every built-in residual block (GPT-2's `attn`).
ATTENTION_NAME = "attn"

PatchValue = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


def stable_name(module_name: str) -> str:
    """`transformer.h.3.attn` -> `h.3.attn`: the name a capture takes."""
    return module_name.removeprefix(_CONTAINER)


def part_names(model: nn.Module) -> list[str]:
    """Every name `capture` accepts for `model`, in the order of `named_modules`."""
    return [stable_name(name) for name, _ in model.named_modules() if name and name != "transformer"]


def attention_part_names(model: nn.Module) -> list[str]:
    """The attention parts' names (`h.0.attn`, `h.1.attn`, ...): the modules a block holds as `attn`."""
    return [name for name in part_names(model) if name.rsplit(".", 1)[-1] == ATTENTION_NAME]


def _resolve(model: nn.Module, patterns: Iterable[str]) -> dict[str, nn.Module]:
    """The modules `patterns` name (exact names or shell-style globs such as ``h.*.mlp``), by stable name."""
    modules = {stable_name(name): module for name, module in model.named_modules() if name and name != "transformer"}
    chosen: dict[str, nn.Module] = {}
    for pattern in patterns:
        matches = [name for name in modules if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            sample = ", ".join(list(modules)[:12])
            raise InspectionError(
                f"no part of the model is named {pattern!r}; names look like {sample}, ... "
                "(cleangpt_core.inspection.part_names(model) lists them all)"
            )
        chosen.update((name, modules[name]) for name in matches)
    return chosen


def attention_weights(
    layout: AttentionLayout, q: torch.Tensor, k: torch.Tensor, *, allow: torch.Tensor | None = None
) -> torch.Tensor:
    """The softmax weights (B, n_head, T, T_keys) that ``layout.attend(q, k, v, allow=allow)`` applies.

    Computed apart from the attention itself, in float32: the fused kernel never materialises them.
    """
    if k.size(1) != q.size(1):  # grouped-query attention: each key head serves a group of query heads
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
    scale = layout.score_scale(q.size(-1))
    scores = (q.float() * (q.size(-1) ** -0.5 if scale is None else scale)) @ k.float().transpose(-2, -1)
    if layout.bias is not None:
        scores = scores + layout.bias.float()
    visible = layout.visible(k.size(2), q.device)
    if allow is not None:
        visible = visible & allow
    return scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)


@dataclass
class Capture:
    """What one `capture` block saw; each entry holds the last forward call's value.

    - `outputs[name]`: what flowed out of the part (after any patch), detached unless asked otherwise;
    - `attention[name]`: an attention part's weights (B, n_head, T, T_keys), when attention was asked for;
    - `without_attention`: attention parts that ran but never called ``layout.attend``, so report no weights.
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    attention_asked: list[str] = field(default_factory=list)

    @property
    def without_attention(self) -> list[str]:
        return [name for name in self.attention_asked if name not in self.attention]

    def __getitem__(self, name: str) -> Any:
        if name not in self.outputs:
            raise InspectionError(f"nothing was recorded at {name!r}; recorded: {', '.join(self.outputs) or 'none'}")
        return self.outputs[name]


def _detached(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, tuple | list):
        return type(value)(_detached(item) for item in value)
    return value


def _patched(name: str, output: Any, patch: PatchValue) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        kind = type(output).__name__
        raise InspectionError(f"{name!r} returns {kind}, not a tensor: only tensor outputs can be patched")
    replacement = patch(output) if callable(patch) else patch
    if not isinstance(replacement, torch.Tensor) or replacement.shape != output.shape:
        shape = tuple(replacement.shape) if isinstance(replacement, torch.Tensor) else type(replacement).__name__
        raise InspectionError(
            f"the patch for {name!r} has shape {shape}, the output {tuple(output.shape)}: give a tensor of that shape"
        )
    return replacement.to(device=output.device, dtype=output.dtype)


def _find_layout(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> AttentionLayout | None:
    return next((a for a in (*args, *kwargs.values()) if isinstance(a, AttentionLayout)), None)


@contextmanager
def capture(
    model: nn.Module,
    names: Iterable[str] | None = None,
    *,
    patch: Mapping[str, PatchValue] | None = None,
    attention: bool | Iterable[str] = False,
    detach: bool = True,
) -> Iterator[Capture]:
    """Record the outputs of the parts `names` (default: every part) while the ``with`` block runs.

    `patch` maps names to a tensor that replaces the part's output, or to a function of the output that
    returns the replacement (activation patching); `attention` (True: every attention part, or a list of
    names) also records attention weights. Names are those of `part_names`, globs allowed (``h.*.attn``).
    Hooks are removed when the block ends, also on an error.
    """
    record = Capture()
    recorded = _resolve(model, part_names(model) if names is None else names)
    patches = {name: value for pattern, value in (patch or {}).items() for name in _resolve(model, [pattern])}
    hooked = {**recorded, **_resolve(model, patches)}
    attended = _resolve(model, attention_part_names(model) if attention is True else attention or [])
    record.attention_asked = list(attended)
    handles = []

    def output_hook(name: str) -> Callable[..., Any]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            if name in patches:
                output = _patched(name, output, patches[name])
            if name in recorded:
                record.outputs[name] = _detached(output) if detach else output
            return output if name in patches else None

        return hook

    def attention_pre_hook(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            layout = _find_layout(args, kwargs)
            if layout is None:
                return
            attend = type(layout).attend.__get__(layout)

            def recording_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options: Any) -> torch.Tensor:
                weights = attention_weights(layout, q, k, allow=options.get("allow"))
                record.attention[name] = weights.detach() if detach else weights
                return attend(q, k, v, **options)

            layout.attend = recording_attend  # this call's layout only; removed as the part returns

        return hook

    def attention_post_hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _output: Any) -> None:
        layout = _find_layout(args, kwargs)
        if layout is not None and "attend" in vars(layout):
            del layout.attend

    try:
        for name, module in hooked.items():
            handles.append(module.register_forward_hook(output_hook(name)))
        for name, module in attended.items():
            handles.append(module.register_forward_pre_hook(attention_pre_hook(name), with_kwargs=True))
            handles.append(module.register_forward_hook(attention_post_hook, with_kwargs=True, always_call=True))
        yield record
    finally:
        for handle in handles:
            handle.remove()
