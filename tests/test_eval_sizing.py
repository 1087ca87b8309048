"""Evaluation sized to the run: 'auto' scores as many validation tokens as the run trains on, within a floor and
a cap; an explicit number or 'all' is kept; every evaluation states its standard error."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from tiny_runs import TINY

from cleangpt_core.config import load_experiment_config
from cleangpt_core.config.experiment import AUTO_EVAL_CAP, AUTO_EVAL_FLOOR
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.experiments.training_run import evaluation_tokens, run_experiment
from cleangpt_core.trainers.evaluation import evaluate_model


def config(*overrides: str):
    return load_experiment_config(None, list(overrides))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["trainer.max_steps=40"], 40 * 16 * 64),  # a 40-step fine-tune: as many as its 40,960 training tokens
        (["trainer.max_steps=40", "data.batch_size=4"], AUTO_EVAL_FLOOR),  # 10,240: the floor
        (["trainer.max_steps=100"], 100 * 16 * 64),  # as many as it trains on
        ([], AUTO_EVAL_CAP),  # the main job: 2,048,000 tokens, capped
        (["trainer.max_steps=100", "data.eval_tokens=1000"], 1000),  # set: kept
        (["trainer.max_steps=100", "data.eval_tokens=all"], "all"),
    ],
)
def test_auto_evaluates_as_many_tokens_as_the_run_trains_on_within_bounds(overrides, expected):
    assert evaluation_tokens(config(*overrides)) == expected


def test_a_run_without_a_step_budget_evaluates_the_cap():
    assert evaluation_tokens(config("trainer.max_steps=null")) == AUTO_EVAL_CAP


class BatchMean(torch.nn.Module):
    """A stand-in model whose loss on a batch is the mean of its input ids (known in advance)."""

    def forward(self, input_ids, labels=None, attention_mask=None):
        return {"loss": input_ids.float().mean()}


def test_the_standard_error_is_that_of_the_batch_means():
    values = [1.0, 2.0, 4.0, 7.0]
    batches = [{"input_ids": torch.full((2, 5), value)} for value in values]  # 2 x 4 targets each
    result = evaluate_model(BatchMean(), batches, torch.device("cpu"))
    assert result["loss"] == pytest.approx(statistics.fmean(values))
    assert result["stderr"] == pytest.approx(statistics.stdev(values) / math.sqrt(len(values)))
    assert evaluate_model(BatchMean(), batches[:1], torch.device("cpu"))["stderr"] is None  # no spread in one


def test_a_tiny_runs_final_evaluation_scores_the_floor_and_states_its_standard_error(tmp_path):
    overrides = [*TINY, "trainer.max_steps=4", "data.eval_batch_size=512", f"output.dir={tmp_path}"]
    lines: list[str] = []
    stats = run_experiment(load_experiment_config(None, overrides), echo=lines.append)
    assert stats["val_tokens"] == AUTO_EVAL_FLOOR  # 4 steps of 64 tokens: far fewer, and far below the split's
    assert 0 < stats["val_stderr"] < 0.05
    assert f"step 4/4: validation loss {stats['val_loss']:.4f} ± {stats['val_stderr']:.4f} over 32,768 tokens" in lines


def test_the_runs_of_a_comparison_are_scored_on_the_same_tokens_as_the_largest_would_alone(tmp_path):
    rungs = ["model.n_embd=16,32,48", "model.n_head=2,2,2"]
    plan = build_plan(tmp_path, models=["Vanilla"], ladder=rungs, tokens_per_param=2)
    trained = [plan.max_steps[label] * 16 * 64 for label in plan.labels]
    assert min(trained) < AUTO_EVAL_FLOOR and max(trained) < AUTO_EVAL_CAP  # alone, each would score its own
    assert {run.load().data.eval_tokens for run in plan.runs} == {max(trained)}
    explicit = build_plan(tmp_path / "explicit", models=["Vanilla"], ladder=rungs, tokens_per_param=2,
                          overrides=["data.eval_tokens=all"])  # fmt: skip
    assert {run.load().data.eval_tokens for run in explicit.runs} == {"all"}
