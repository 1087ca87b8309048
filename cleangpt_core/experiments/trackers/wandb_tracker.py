"""Weights & Biases: one W&B run per cleanGPT run, its files under ``<run dir>/wandb``.

``WANDB_MODE=offline`` (W&B's own switch) keeps everything on disk for ``wandb sync`` later; nothing is
sent. A resumed run continues the same W&B run id (``resume="allow"``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import wandb

from cleangpt_core.experiments.trackers.base import Tracker


class WandbTracker(Tracker):
    """The experiment config as the run's config, metrics per step, samples as text."""

    def start(self) -> dict[str, Any]:
        run = self.run
        run_id = run.state.get("run_id") or uuid.uuid4().hex[:12]
        self.wandb_run = wandb.init(
            project=run.logging.project,
            name=run.run_name,
            id=run_id,
            resume="allow",
            dir=str(run.run_dir),
            config=run.experiment.model_dump(mode="json"),
            reinit="create_new",  # several runs in one process (compare) each get their own
        )
        return {"run_id": run_id}

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.wandb_run.log(metrics, step=step)

    def log_text(self, step: int, name: str, text: str) -> None:
        self.wandb_run.log({name: wandb.Html(f"<pre>{_escape(text)}</pre>")}, step=step)

    def commit(self) -> None:
        # W&B holds a step's row open until a later step arrives; a checkpoint closes it, so that a crash
        # before the next step cannot lose it
        self.wandb_run.log({}, commit=True)

    def finish(self, checkpoint: Path | None) -> None:
        self.wandb_run.finish()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
