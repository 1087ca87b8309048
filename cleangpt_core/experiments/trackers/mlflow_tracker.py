"""MLflow: one MLflow run per cleanGPT run, in a local SQLite store unless ``logging.mlflow_tracking_uri`` says.

The default store ``sqlite:///<run dir>/../mlflow.db`` sits beside the run directory, so every run trained
under ``runs/`` lands in one store (``mlflow ui --backend-store-uri sqlite:///runs/mlflow.db``), with its
artifacts in ``runs/mlartifacts``. Params are the experiment config, flattened (``model.n_layer``); metrics
are logged per step; the final checkpoint's folder is logged as the artifact ``checkpoint``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus
from mlflow.tracking import MlflowClient

from cleangpt_core.config.base import flatten_config
from cleangpt_core.experiments.trackers.base import Tracker

DATABASE_FILE = "mlflow.db"
ARTIFACTS_DIR = "mlartifacts"
_MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch call
_MAX_PARAMS_PER_BATCH = 100
_MAX_PARAM_LENGTH = 6000


def default_tracking_uri(run_dir: Path) -> str:
    """The SQLite store beside a run directory."""
    return f"sqlite:///{(run_dir.resolve().parent / DATABASE_FILE).as_posix()}"


class MLflowTracker(Tracker):
    """Params at the start, metrics per step, the final checkpoint as an artifact."""

    def start(self) -> dict[str, Any]:
        run = self.run
        uri = run.state.get("tracking_uri") or run.logging.mlflow_tracking_uri or default_tracking_uri(run.run_dir)
        self.client = MlflowClient(tracking_uri=uri)
        run_id = run.state.get("run_id")
        if run_id is not None:
            self.run_id = run_id
            self.client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))
        else:
            self.run_id = self.client.create_run(self._experiment_id(uri), run_name=run.run_name).info.run_id
            params = [
                Param(key, str(value)[:_MAX_PARAM_LENGTH])
                for key, value in flatten_config(run.experiment.model_dump(mode="json")).items()
            ]
            for first in range(0, len(params), _MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=params[first : first + _MAX_PARAMS_PER_BATCH])
        return {"tracking_uri": uri, "run_id": self.run_id}

    def _experiment_id(self, uri: str) -> str:
        name = self.run.logging.project
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        # a local store keeps its artifacts beside it, not in ./mlruns of whatever folder training started in
        local = uri == default_tracking_uri(self.run.run_dir)
        location = (self.run.run_dir.resolve().parent / ARTIFACTS_DIR).as_uri() if local else None
        return self.client.create_experiment(name, artifact_location=location)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, value, timestamp, step) for key, value in metrics.items()]
        for first in range(0, len(batch), _MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch[first : first + _MAX_METRICS_PER_BATCH])

    def log_text(self, step: int, name: str, text: str) -> None:
        self.client.log_text(self.run_id, text, f"{name}s/step-{step:08d}.txt")

    def finish(self, checkpoint: Path | None) -> None:
        if checkpoint is not None:
            self.client.log_artifacts(self.run_id, str(checkpoint), artifact_path="checkpoint")
        self.client.set_terminated(self.run_id, RunStatus.to_string(RunStatus.FINISHED))
