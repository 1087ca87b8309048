"""The ``logging`` section of an experiment config: which experiment trackers a run reports to."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from cleangpt_core.config.base import StrictModel
from cleangpt_core.experiments.trackers.catalog import TRACKERS


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
