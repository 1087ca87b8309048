"""Registers the built-in optimizers (AdamW, SGD, Muon) and learning-rate schedules (constant, cosine, WSD, linear)."""

from cleangpt_core.config import optim
from cleangpt_core.plugin_api import PLUGIN_API_VERSION, Component, hookimpl

CLEANGPT_PLUGIN_API = PLUGIN_API_VERSION

_OPTIMIZERS = "cleangpt_core.trainers.optimizers"
_SCHEDULES = "cleangpt_core.trainers.schedules"


@hookimpl
def cleangpt_register_optimizers() -> list[Component]:
    """AdamW, SGD with momentum, and Muon for hidden matrices with AdamW for the rest."""
    return [
        Component(
            name="adamw",
            kind="optimizer",
            summary="AdamW (fused kernel); weight decay on matrices, embeddings and head, not on gains",
            target=f"{_OPTIMIZERS}:adamw",
            config_schema=optim.AdamWConfig,
            aliases=("adam_w",),
        ),
        Component(
            name="sgd",
            kind="optimizer",
            summary="SGD with (Nesterov) momentum",
            target=f"{_OPTIMIZERS}:sgd",
            config_schema=optim.SGDConfig,
        ),
        Component(
            name="muon",
            kind="optimizer",
            summary="Muon (orthogonalised momentum) for hidden matrices, AdamW for embeddings, head and gains",
            target=f"{_OPTIMIZERS}:muon",
            config_schema=optim.MuonConfig,
        ),
    ]


@hookimpl
def cleangpt_register_schedules() -> list[Component]:
    """Constant, warmup + cosine, warmup-stable-decay and linear decay."""
    return [
        Component(
            name="constant",
            kind="schedule",
            summary="the optimizer's learning rate throughout, after an optional linear warmup",
            target=f"{_SCHEDULES}:constant_schedule",
            config_schema=optim.ConstantScheduleConfig,
        ),
        Component(
            name="cosine",
            kind="schedule",
            summary="linear warmup, then cosine decay to a floor (nanoGPT)",
            target=f"{_SCHEDULES}:cosine_schedule",
            config_schema=optim.CosineScheduleConfig,
        ),
        Component(
            name="wsd",
            kind="schedule",
            summary="warmup-stable-decay: warmup, the peak held, linear cool-down over the run's last fraction",
            target=f"{_SCHEDULES}:wsd_schedule",
            config_schema=optim.WSDScheduleConfig,
            aliases=("trapezoidal",),
        ),
        Component(
            name="linear",
            kind="schedule",
            summary="linear warmup, then a straight line from the peak to a floor at the run's last step",
            target=f"{_SCHEDULES}:linear_schedule",
            config_schema=optim.LinearScheduleConfig,
        ),
    ]
