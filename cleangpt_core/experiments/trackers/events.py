"""The training events, turned into tracker calls: which scalars and texts a run reports, and when.

Called by the built-in plugin ``cleangpt_core.core_plugins.trackers`` (which imports this module only once a run
has started). A run reports to trackers when it has a run directory and an experiment config naming some in
``logging.report_to``; only the main process of a torchrun job reports.
"""

from __future__ import annotations

import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cleangpt_core.experiments.trackers.base import TrackingSession
from cleangpt_core.inference.generation import run_generation
from cleangpt_core.registry import load_component
from cleangpt_core.trainers.step_values import is_logging_step

if TYPE_CHECKING:
    from cleangpt_core.trainers.base_trainer import BaseTrainer

# step metrics (as the trainers send them) -> tracker names; a key a trainer does not send is left out
STEP_SCALARS = {
    "loss": "train/loss",
    "lr": "train/lr",
    "tokens_per_s": "train/tokens_per_s",
    "grad_norm": "train/grad_norm",
}
EVALUATION_SCALARS = {"loss": "val/loss", "perplexity": "val/perplexity"}

_sessions: weakref.WeakKeyDictionary[BaseTrainer, TrackingSession] = weakref.WeakKeyDictionary()


def _reports(trainer: BaseTrainer) -> bool:
    experiment = getattr(trainer, "experiment", None)
    logging = getattr(experiment, "logging", None)
    return bool(logging and logging.report_to) and trainer.output_dir is not None and trainer.context.is_main


def on_train_begin(trainer: BaseTrainer) -> None:
    """Open (or, for a resumed run, continue) the run's trackers."""
    if _reports(trainer):
        _sessions[trainer] = TrackingSession(trainer)


def on_step_end(trainer: BaseTrainer, step: int, metrics: dict[str, Any]) -> None:
    """Report a step's training scalars on logging steps (reading them on others would make a GPU wait)."""
    session = _sessions.get(trainer)
    if session is not None and is_logging_step(trainer, step):
        session.log_metrics(step, _scalars(metrics, STEP_SCALARS))


def on_evaluation_end(trainer: BaseTrainer, step: int, metrics: dict[str, Any]) -> None:
    """Report a validation result and, when asked for, a text sample of the model at this step."""
    session = _sessions.get(trainer)
    if session is None:
        return
    session.log_metrics(step, _scalars(metrics, EVALUATION_SCALARS))
    tokens = trainer.experiment.logging.sample_tokens
    if tokens and trainer.tokenizer is not None:
        try:
            text = sample_text(trainer, tokens)
        except Exception as error:  # a sample is a courtesy: it never stops the metrics or the run
            warnings.warn(f"no text sample at step {step}: {type(error).__name__}: {error}", RuntimeWarning, 2)
            return
        session.log_text(step, "sample", text)


def on_checkpoint_saved(trainer: BaseTrainer) -> None:
    """Deliver what waited for this checkpoint and make it durable."""
    session = _sessions.get(trainer)
    if session is not None:
        session.checkpoint_saved()


def on_train_end(trainer: BaseTrainer, stats: dict[str, Any]) -> None:
    """Close the trackers, handing them the final checkpoint."""
    session = _sessions.pop(trainer, None)
    if session is not None:
        checkpoint = stats.get("checkpoint")
        session.finish(Path(checkpoint) if checkpoint else None)


def _scalars(metrics: dict[str, Any], names: dict[str, str]) -> dict[str, float]:
    return {names[key]: float(value) for key, value in metrics.items() if key in names and value is not None}


def sample_text(trainer: BaseTrainer, tokens: int) -> str:
    """Text the model being trained generates from the run's sample prompt, with the run's sampler and seed.

    Decoding draws from its own seeded generator, so the training run's random state is left as it was.
    """
    experiment = trainer.experiment
    sampler_fn = load_component("sampler", experiment.sampling.name)
    options = experiment.sampling.options

    def sampler(logits: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return sampler_fn(logits, generator=generator, **options)

    model = trainer.raw_model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, text = run_generation(
                model,
                trainer.tokenizer,
                experiment.output.sample_prompt,
                device=trainer.device,
                max_new_tokens=tokens,
                sampler=sampler,
                seed=experiment.seed,
            )
    finally:
        model.train(was_training)
    return text
