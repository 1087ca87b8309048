"""Recording and replacing what flows through a model, by stable name, with no code in its parts.

Two kinds of name are taken, both listed by `part_names` and `hook_point_names`:

- every submodule, by its name with the decoder's ``transformer.`` prefix dropped: ``wte``, ``h.3`` (the residual
  stream after block 3), ``h.3.attn``, ``h.3.mlp``, ``h.3.ln_1``, ``ln_f``, ``lm_head``; its output is recorded.
  The names come from ``named_modules``, so they hold for every preset, part combination and architecture built
  on the decoder, a plugin's included;
- the hook points TransformerLens users know, inside what a module computes: ``h.3.hook_resid_pre`` (the
  residual stream entering block 3), ``h.3.hook_resid_post`` (leaving it, the same as ``h.3``), and on each
  attention part ``h.3.attn.hook_q``, ``hook_k``, ``hook_v`` (queries (B, n_head, T, head_dim) and keys and values
  (B, n_kv_head, T_keys, head_dim), as attention compares them: after QK-norm and rotary positions, the keys
  and values with the cached ones in front), ``hook_attn_scores`` (the scaled scores with any ALiBi bias, -inf
  where a query may not look: what the softmax takes) and ``hook_pattern`` (the softmax weights).

A name is matched exactly; ``*``, ``?`` and ``[...]`` make it a glob whose ``*`` matches within one dotted part
(``h.*`` is every block, ``h.*.attn`` every block's attention) and ``**`` any number of parts (``h.**`` is
everything inside the blocks). `capture` registers PyTorch hooks for the duration of a ``with`` block only:
outside one, a model carries no hook and runs exactly as it would without this module.

The hook points inside attention need no help from the part either: an attention part calls
``layout.attend(q, k, v)`` (the shared `AttentionLayout`), so while it runs its layout's ``attend`` is wrapped:
it sees q, k and v, computes the scores and weights beside the unchanged output, and, when the scores or the
pattern are patched, attends by hand with the patched weights. A part that attends some other way has none of
these hook points and is listed in `Capture.without_attention`; views skip it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cleangpt_core.errors import InspectionError
from cleangpt_core.model.kv_cache import AttentionLayout

# The decoder keeps its stack under `transformer` (GPT-2's parameter names); a stable name leaves it out.
_CONTAINER = "transformer."
_BLOCKS = "h"  # the decoder's stack of blocks: `h.0`, `h.1`, ...
# An attention part sits under this name in every built-in residual block (GPT-2's `attn`).
ATTENTION_NAME = "attn"
RESID_PRE, RESID_POST = "hook_resid_pre", "hook_resid_post"
BLOCK_HOOKS = (RESID_PRE, RESID_POST)
Q, K, V, SCORES, PATTERN = "hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern"
ATTENTION_HOOKS = (Q, K, V, SCORES, PATTERN)
_GLOB_CHARACTERS = frozenset("*?[")

PatchValue = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]
Names = str | Iterable[str]


def stable_name(module_name: str) -> str:
    """`transformer.h.3.attn` -> `h.3.attn`: the name a capture takes."""
    return module_name.removeprefix(_CONTAINER)


def _modules(model: nn.Module) -> dict[str, nn.Module]:
    return {stable_name(name): module for name, module in model.named_modules() if name and name != "transformer"}


def part_names(model: nn.Module) -> list[str]:
    """Every part (submodule) name `capture` accepts for `model`, in the order of `named_modules`."""
    return list(_modules(model))


def attention_part_names(model: nn.Module) -> list[str]:
    """The attention parts' names (`h.0.attn`, `h.1.attn`, ...): the modules a block holds as `attn`."""
    return [name for name in part_names(model) if name.rsplit(".", 1)[-1] == ATTENTION_NAME]


def _block_names(model: nn.Module) -> list[str]:
    blocks = getattr(getattr(model, "transformer", None), _BLOCKS, None)
    return [f"{_BLOCKS}.{index}" for index in range(len(blocks))] if isinstance(blocks, nn.ModuleList) else []


def _hook_points(model: nn.Module) -> dict[str, tuple[str, str]]:
    """Each hook point's name -> (the part it belongs to, which hook point of it)."""
    points = {f"{block}.{hook}": (block, hook) for block in _block_names(model) for hook in BLOCK_HOOKS}
    points |= {f"{part}.{hook}": (part, hook) for part in attention_part_names(model) for hook in ATTENTION_HOOKS}
    return points


def hook_point_names(model: nn.Module) -> list[str]:
    """Every hook point `capture` accepts for `model`: the residual stream before and after each block, and the
    queries, keys, values, scores and pattern of each attention part."""
    return list(_hook_points(model))


def name_matches(pattern: str, name: str) -> bool:
    """Whether `name` is `pattern` or, for a glob, matches it: ``*``, ``?`` and ``[...]`` within one dotted part,
    ``**`` across any number of them."""
    if not _GLOB_CHARACTERS & set(pattern):
        return pattern == name
    return _glob_match(pattern.split("."), name.split("."))


def _glob_match(pattern: list[str], name: list[str]) -> bool:
    if not pattern:
        return not name
    if pattern[0] == "**":
        return any(_glob_match(pattern[1:], name[start:]) for start in range(len(name) + 1))
    return bool(name) and fnmatch.fnmatchcase(name[0], pattern[0]) and _glob_match(pattern[1:], name[1:])


def _as_names(names: Names, what: str) -> list[str]:
    """A name or names: a bare string is one name (not its characters)."""
    if isinstance(names, str):
        return [names]
    names = list(names)
    if not all(isinstance(name, str) for name in names):
        raise InspectionError(f"{what} must be a name or a list of names, got {names!r}")
    return names


def _resolve(model: nn.Module, patterns: Iterable[str]) -> list[str]:
    """The part and hook point names `patterns` name, in the model's order, each pattern matching at least one."""
    known = [*part_names(model), *hook_point_names(model)]
    chosen: dict[str, None] = {}
    for pattern in patterns:
        matches = [name for name in known if name_matches(pattern, name)]
        if not matches:
            sample = ", ".join(part_names(model)[:8])
            raise InspectionError(
                f"no part or hook point of the model is named {pattern!r}; names look like {sample}, ..., "
                "h.0.hook_resid_pre, h.0.attn.hook_q (part_names(model) and hook_point_names(model) list them all; "
                "'*' matches within one dotted part, '**' across parts)"
            )
        chosen.update(dict.fromkeys(matches))
    return list(chosen)


def attention_scores(
    layout: AttentionLayout, q: torch.Tensor, k: torch.Tensor, *, allow: torch.Tensor | None = None
) -> torch.Tensor:
    """The scores (B, n_head, T, T_keys) whose softmax ``layout.attend(q, k, v, allow=allow)`` applies: scaled,
    with any ALiBi bias added, -inf where a query may not look. In float32, apart from the attention itself (the
    fused kernel never materialises them)."""
    if k.size(1) != q.size(1):  # grouped-query attention: each key head serves a group of query heads
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
    scale = layout.score_scale(q.size(-1))
    scores = (q.float() * (q.size(-1) ** -0.5 if scale is None else scale)) @ k.float().transpose(-2, -1)
    if layout.bias is not None:
        scores = scores + layout.bias.float()
    visible = layout.visible(k.size(2), q.device)
    if allow is not None:
        visible = visible & allow
    return scores.masked_fill(~visible, float("-inf"))


def attention_weights(
    layout: AttentionLayout, q: torch.Tensor, k: torch.Tensor, *, allow: torch.Tensor | None = None
) -> torch.Tensor:
    """The softmax weights (B, n_head, T, T_keys) that ``layout.attend(q, k, v, allow=allow)`` applies."""
    return attention_scores(layout, q, k, allow=allow).softmax(dim=-1)


def _attend_with(pattern: torch.Tensor, v: torch.Tensor, dropout_p: float, dtype: torch.dtype) -> torch.Tensor:
    """What attention outputs with the weights `pattern`: their (dropped-out) average of the values."""
    if v.size(1) != pattern.size(1):
        v = v.repeat_interleave(pattern.size(1) // v.size(1), dim=1)
    weights = F.dropout(pattern, dropout_p) if dropout_p > 0.0 else pattern
    return (weights @ v.float()).to(dtype)


@dataclass
class Capture:
    """What one `capture` block saw; each entry holds the last forward call's value.

    - `outputs[name]`: what flowed out of the part or through the hook point (after any patch), detached unless
      asked otherwise; ``capture[name]`` reads it;
    - `attention[name]`: an attention part's weights (B, n_head, T, T_keys), when attention was asked for;
    - `without_attention`: attention parts asked for (weights or a hook point inside them) that ran but never
      called ``layout.attend``, so report neither weights nor q/k/v, scores and pattern.
    """

    outputs: dict[str, Any] = field(default_factory=dict)
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    attention_asked: list[str] = field(default_factory=list)  # weights or hook points inside them asked for
    attended: set[str] = field(default_factory=set)  # the parts that called layout.attend

    @property
    def without_attention(self) -> list[str]:
        return [name for name in self.attention_asked if name not in self.attended]

    def __getitem__(self, name: str) -> Any:
        if name not in self.outputs:
            part = name.rsplit(".", 1)[0]
            if part in self.without_attention:
                raise InspectionError(
                    f"nothing was recorded at {name!r}: {part} does not attend through layout.attend, so it has no "
                    "q/k/v, scores or pattern to record"
                )
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


class _Hooks:
    """The PyTorch hooks of one `capture` block: what each name records or patches, and the hooks doing it."""

    def __init__(
        self,
        model: nn.Module,
        record: Capture,
        recorded: list[str],
        patches: dict[str, PatchValue],
        attended: list[str],
        detach: bool,
    ) -> None:
        self.modules, self.points = _modules(model), _hook_points(model)
        self.record, self.recorded, self.patches, self.detach = record, set(recorded), patches, detach
        self.weights_for = list(attended)  # the attention parts whose weights go into `Capture.attention`
        self.handles: list[Any] = []

    def see(self, name: str, value: Any) -> Any:
        """`value` at `name`, patched if a patch is given for it, and recorded if asked for."""
        if name in self.patches:
            value = _patched(name, value, self.patches[name])
        if name in self.recorded:
            self.record.outputs[name] = _detached(value) if self.detach else value
        return value

    def install(self, names: Iterable[str]) -> None:
        """Hook what `names` name, and the attention parts whose weights are asked for."""
        outputs: dict[str, list[str]] = {}  # module -> the names its output goes by (`h.0`, `h.0.hook_resid_post`)
        inputs: dict[str, str] = {}  # block -> its `hook_resid_pre`
        inside: dict[str, set[str]] = {part: set() for part in self.weights_for}  # attention part -> hooks in it
        for name in names:
            owner, hook = self.points.get(name, (name, None))
            if hook is None or hook == RESID_POST:
                outputs.setdefault(owner, []).append(name)
            elif hook == RESID_PRE:
                inputs[owner] = name
            else:
                inside.setdefault(owner, set()).add(hook)
        self.record.attention_asked = list(inside)
        for owner, aliases in outputs.items():
            self.handles.append(self.modules[owner].register_forward_hook(self._output_hook(aliases)))
        for owner, name in inputs.items():
            self.handles.append(self.modules[owner].register_forward_pre_hook(self._input_hook(name), with_kwargs=True))
        for owner, hooks in inside.items():
            module = self.modules[owner]
            self.handles.append(module.register_forward_pre_hook(self._attend_hook(owner, hooks), with_kwargs=True))
            self.handles.append(module.register_forward_hook(_unwrap_attend, with_kwargs=True, always_call=True))

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _output_hook(self, aliases: list[str]) -> Callable[..., Any]:
        def hook(_module: nn.Module, _args: tuple[Any, ...], output: Any) -> Any:
            for name in aliases:
                output = self.see(name, output)
            return output if any(name in self.patches for name in aliases) else None

        return hook

    def _input_hook(self, name: str) -> Callable[..., Any]:
        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return ((self.see(name, args[0]), *args[1:]), kwargs) if args else None  # a block's first: the stream

        return hook

    def _attend_hook(self, part: str, hooks: set[str]) -> Callable[..., None]:
        """Wrap the layout's `attend` while the attention part `part` runs, to see and patch what it computes."""
        weights_wanted = bool(hooks & {SCORES, PATTERN}) or part in self.weights_for
        by_hand = any(f"{part}.{hook}" in self.patches for hook in (SCORES, PATTERN))

        def hook(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            layout = _find_layout(args, kwargs)
            if layout is None:
                return
            attend = type(layout).attend.__get__(layout)

            def seeing_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **options: Any) -> torch.Tensor:
                self.record.attended.add(part)
                q, k, v = (self.see(f"{part}.{name}", value) for name, value in ((Q, q), (K, k), (V, v)))
                if not weights_wanted:
                    return attend(q, k, v, **options)
                scores = self.see(f"{part}.{SCORES}", attention_scores(layout, q, k, allow=options.get("allow")))
                pattern = self.see(f"{part}.{PATTERN}", scores.softmax(dim=-1))
                if part in self.weights_for:
                    self.record.attention[part] = pattern.detach() if self.detach else pattern
                if by_hand:
                    return _attend_with(pattern, v, options.get("dropout_p", 0.0), q.dtype)
                return attend(q, k, v, **options)

            layout.attend = seeing_attend  # this call's layout only; removed as the part returns

        return hook


def _unwrap_attend(_module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _output: Any) -> None:
    layout = _find_layout(args, kwargs)
    if layout is not None and "attend" in vars(layout):
        del layout.attend


@contextmanager
def capture(
    model: nn.Module,
    names: Names | None = None,
    *,
    patch: Mapping[str, PatchValue] | None = None,
    attention: bool | Names = False,
    detach: bool = True,
) -> Iterator[Capture]:
    """Record what flows through the parts and hook points `names` while the ``with`` block runs (default:
    every part's output; a name or a list of names, globs allowed: see the module's docstring).

    `patch` maps names to a tensor that replaces the value there, or to a function of the value that returns the
    replacement (activation patching); `attention` (True: every attention part, or names of attention parts)
    also records attention weights (`Capture.attention`). Hooks are removed when the block ends, also on an error.
    """
    record = Capture()
    recorded = _resolve(model, part_names(model) if names is None else _as_names(names, "names"))
    patches = {name: value for pattern, value in (patch or {}).items() for name in _resolve(model, [pattern])}
    asked = attention_part_names(model) if attention is True else _as_names(attention or [], "attention")
    attended = _resolve(model, asked)
    not_parts = [name for name in attended if name not in _modules(model)]
    if not_parts:
        raise InspectionError(f"attention= takes attention parts (h.0.attn), not hook points: {', '.join(not_parts)}")
    hooks = _Hooks(model, record, recorded, patches, attended, detach)
    try:
        hooks.install(dict.fromkeys([*recorded, *patches]))
        yield record
    finally:
        hooks.remove()
