"""TensorBoard: event files in ``<run dir>/tensorboard`` (``tensorboard --logdir runs/default/tensorboard``).

A resumed run writes into the same folder with ``purge_step`` set to its first step, so TensorBoard hides
whatever a killed run logged after its last checkpoint: every step appears once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from torch.utils.tensorboard import SummaryWriter

from cleangpt_core.checkpoints.run_dir import RunDirectory
from cleangpt_core.experiments.trackers.base import Tracker


class TensorBoardTracker(Tracker):
    """Scalars per step, the experiment config as text at the start, samples as text at each evaluation."""

    discards_replayed_steps: ClassVar[bool] = True

    def start(self) -> dict[str, Any]:
        run = self.run
        # the same folder on resume; purge_step hides what a killed run logged after the checkpoint resumed from
        self.writer = SummaryWriter(
            str(RunDirectory(run.run_dir).tensorboard_dir), purge_step=run.start_step + 1 if run.start_step else None
        )
        if not run.start_step:
            config = json.dumps(run.experiment.model_dump(mode="json"), indent=2)
            self.writer.add_text("config", _as_markdown_code(config), 0)
        return {}

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)

    def log_text(self, step: int, name: str, text: str) -> None:
        self.writer.add_text(name, _as_markdown_code(text), step)

    def commit(self) -> None:
        self.writer.flush()

    def finish(self, checkpoint: Path | None) -> None:
        self.writer.close()


def _as_markdown_code(text: str) -> str:
    # TensorBoard renders text as Markdown; indenting by four spaces shows it verbatim, newlines kept
    return "\n".join("    " + line for line in text.splitlines())
