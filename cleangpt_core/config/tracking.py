"""The ``logging`` section of an experiment config, and the trackers it may name: their names, packages and
install hints.

The catalog is light (the standard library only): the section checks its names while the config is validated,
before any work starts. Each tracker's implementation (`cleangpt_core.experiments.trackers`), and the
third-party package behind it, is imported only once a run that names it starts.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from cleangpt_core.config.base import StrictModel
from cleangpt_core.errors import ConfigError


@dataclass(frozen=True)
class TrackerSpec:
    """One tracker: its name in ``report_to``, the packages it needs, and the extra that installs them."""

    name: str
    summary: str
    target: str  # "module:Class" of its `Tracker` subclass, imported when a run starts
    packages: tuple[str, ...]  # import names that must be present
    extra: str  # the optional dependency group of cleangpt-core that installs them

    def missing_packages(self) -> list[str]:
        """The packages of `packages` that cannot be imported (found without importing them)."""
        return [package for package in self.packages if importlib.util.find_spec(package) is None]

    @property
    def install_hint(self) -> str:
        """The command that installs what this tracker needs."""
        return f'pip install "cleangpt-core[{self.extra}]"'


TRACKERS: dict[str, TrackerSpec] = {
    spec.name: spec
    for spec in (
        TrackerSpec(
            "tensorboard",
            "TensorBoard event files in <run dir>/tensorboard: scalars, the config and samples as text",
            "cleangpt_core.experiments.trackers.tensorboard_tracker:TensorBoardTracker",
            ("tensorboard",),
            "tensorboard",
        ),
        TrackerSpec(
            "mlflow",
            "an MLflow run (SQLite store next to the run dir by default): params, metrics, final checkpoint",
            "cleangpt_core.experiments.trackers.mlflow_tracker:MLflowTracker",
            ("mlflow", "sqlalchemy", "alembic"),
            "mlflow",
        ),
        TrackerSpec(
            "wandb",
            "a Weights & Biases run (honours WANDB_MODE=offline): config and metrics",
            "cleangpt_core.experiments.trackers.wandb_tracker:WandbTracker",
            ("wandb",),
            "wandb",
        ),
    )
}


def check_trackers_installed(names: list[str]) -> None:
    """Fail before a run starts when a tracker it reports to lacks its package, saying what to install.

    Checked when training starts rather than when a config loads, so that evaluating or exporting a run
    needs no tracker installed.
    """
    for name in names:
        spec = TRACKERS[name]
        missing = spec.missing_packages()
        if missing:
            raise ConfigError(
                f"logging.report_to names {name!r}, which needs {', '.join(missing)} (not installed): "
                f"{spec.install_hint}"
            )


class LoggingConfig(StrictModel):
    """Where a run reports its metrics besides metrics.jsonl (Hugging Face's ``report_to`` convention)."""

    report_to: list[str] = Field(
        default_factory=list, description="trackers to report to: tensorboard, mlflow, wandb (a name or a list)"
    )
    project: str = Field("cleangpt", description="the MLflow experiment / W&B project the run belongs to")
    run_name: str | None = Field(None, description="the tracker run's display name; default: the run dir's name")
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///<run dir>/../mlflow.db"
    )
    sample_tokens: int = Field(
        100, ge=0, description="tokens of the text sample sent to the trackers at each evaluation; 0 sends none"
    )

    @field_validator("report_to", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if value is None or value == "none":
            return []
        if isinstance(value, str):  # --set logging.report_to=wandb or "tensorboard,mlflow"
            return [name.strip() for name in value.split(",") if name.strip()]
        return value

    @field_validator("report_to")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        chosen: list[str] = []
        for name in names:
            spec = TRACKERS.get(name.lower())
            if spec is None:
                raise ValueError(f"unknown tracker {name!r}; trackers are: {', '.join(TRACKERS)}")
            if spec.name not in chosen:
                chosen.append(spec.name)
        return chosen
