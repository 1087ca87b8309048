"""`get_optimizer` and `get_schedule`: build a registered optimizer or schedule by name, options checked first.

The experiment runner builds its optimizer and schedule through them, and so can any Python caller of
`get_trainer`: ``get_trainer("advanced", model, data, get_optimizer("muon", model, lr=0.02),
lr_scheduler=get_schedule("wsd", warmup_steps=10))``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cleangpt_core.config.base import validate_config
from cleangpt_core.config.experiment import DEFAULT_WARMUP_FRACTION
from cleangpt_core.errors import ConfigError
from cleangpt_core.model.parameter_roles import parameter_roles
from cleangpt_core.plugin_api import Component
from cleangpt_core.registry import get_component
from cleangpt_core.trainers.base_trainer import ScheduleBuilder


def _validated(component: Component, options: dict[str, Any]) -> dict[str, Any]:
    if component.config_schema is None:
        return options
    return validate_config(component.config_schema, options, f"{component.kind} {component.name!r}").model_dump()


def get_optimizer(name: str, model: nn.Module, **options: Any) -> torch.optim.Optimizer:
    """The optimizer registered as `name` over `model`'s parameters, grouped by the roles the model states.

    A model under muP needs an optimizer whose builder says it applies muP's learning rates (``build.applies_mup
    = True``, having read ``roles.mup_width_multiplier``); any other is refused rather than silently standard.
    """
    component = get_component("optimizer", name)
    build = component.load()
    options = _validated(component, options)
    roles = parameter_roles(model)
    if roles.mup_width_multiplier is not None and not getattr(build, "applies_mup", False):
        raise ConfigError(
            f"optimizer {component.name!r} does not apply muP's learning rates (model.parametrization=mup); "
            "use adamw or muon, or parametrization=standard"
        )
    return build(roles, **options)


def get_schedule(name: str, **options: Any) -> ScheduleBuilder:
    """The schedule registered as `name`, to be built by the trainer over its optimizer and the run's length."""
    component = get_component("schedule", name)
    build = component.load()
    options = _validated(component, options)

    def schedule(optimizer: torch.optim.Optimizer, total_steps: int | None) -> torch.optim.lr_scheduler.LRScheduler:
        return build(optimizer, total_steps=total_steps, **options)

    return schedule


def fit_schedule(
    name: str, options: dict[str, Any], total_steps: int | None, *, shorten_warmup: bool
) -> tuple[dict[str, Any], str | None]:
    """The schedule's options for a run of `total_steps` steps, and a warning when they had to change.

    A warm-up stated in steps may be longer than a short run has room for (a recipe's 100 steps in a 40-step
    fine-tune). Where `shorten_warmup` (the user did not set it for this run), such a warm-up becomes the
    recipe's share of the run (`DEFAULT_WARMUP_FRACTION`), with the warning saying so; otherwise, and for any
    other misfit, the schedule's own error is raised. Built over a stand-in optimizer, so that a plan of several
    runs (`cleangpt compare`) fails before the first one trains, not when a later one starts.
    """
    stand_in = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    try:
        get_schedule(name, **options)(stand_in, total_steps)
        return options, None
    except ConfigError as error:
        warmup = options.get("warmup_steps")
        if not (shorten_warmup and isinstance(warmup, int) and warmup > 0):
            raise
        refusal = error
    fitted = {**options, "warmup_steps": DEFAULT_WARMUP_FRACTION}
    try:
        get_schedule(name, **fitted)(stand_in, total_steps)
    except ConfigError:  # the warm-up was not what did not fit (or the schedule takes no fraction): its own error
        raise refusal from None
    warning = (
        f"schedule {name!r}: the warm-up of {warmup} steps leaves this {total_steps}-step run no room to decay; it is "
        f"shortened to {DEFAULT_WARMUP_FRACTION:.0%} of the run, {round(DEFAULT_WARMUP_FRACTION * (total_steps or 0))} "
        "steps (set schedule.warmup_steps to choose another)"
    )
    return fitted, warning


def check_schedule(name: str, options: dict[str, Any], total_steps: int, *, shorten_warmup: bool = True) -> None:
    """Raise now the error the schedule would raise when a run of `total_steps` steps builds it (after
    `fit_schedule` shortened a warm-up it may shorten)."""
    fit_schedule(name, options, total_steps, shorten_warmup=shorten_warmup)
