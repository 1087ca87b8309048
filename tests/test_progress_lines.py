"""One progress line format for train, compare, ablate and ladders, each evaluation printed once; and the base a
--config makes of itself beside --variant options, named as a contender."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_runs import TINY, set_options

from cleangpt_core.cli.main import cli
from cleangpt_core.utils import tinyshakespeare_text

STEP_LINE = re.compile(r"^step (\d+)/(\d+): loss \d+\.\d{4}, lr \S+, [\d,]+ tokens/s, [\d,]+ s$")
EVALUATION_LINE = re.compile(r"^step (\d+)/(\d+): validation loss \d+\.\d{4} ± \d+\.\d{4} over [\d,]+ tokens$")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """30,000 characters: a validation split of 3,000, which the tiny runs score in 47 batches."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(tinyshakespeare_text()[:30_000], encoding="utf-8")
    return path


def run(*arguments: str | Path) -> str:
    """What a command writes to stdout (a bar, on stderr, would share the lines of a mixed capture)."""
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def steps_of(pattern: re.Pattern[str], output: str) -> list[int]:
    """The steps of the lines matching `pattern`, in order."""
    return [int(match.group(1)) for line in output.splitlines() if (match := pattern.match(line))]


def test_a_piped_train_writes_step_lines_and_one_line_per_evaluation(tmp_path, corpus):
    overrides = [*TINY, "trainer.max_steps=6", f"data.dataset={corpus}", f"output.dir={tmp_path}"]
    output = run("train", *set_options(*overrides))
    assert steps_of(STEP_LINE, output) == [2, 4, 6]  # every log_interval
    assert steps_of(EVALUATION_LINE, output) == [2, 4, 6]  # every eval_interval, the final one at 6, once each
    assert "validation loss" not in output.splitlines()[-1]  # the done line does not repeat the final evaluation


def test_with_a_bar_the_evaluations_are_still_printed_once(tmp_path, corpus):
    overrides = [*TINY, "trainer.progress_bar=true", "trainer.max_steps=6", f"data.dataset={corpus}"]
    output = run("train", *set_options(*overrides, f"output.dir={tmp_path}"))
    assert steps_of(STEP_LINE, output) == []  # the bar shows the steps
    assert steps_of(EVALUATION_LINE, output) == [2, 4, 6]


@pytest.mark.slow
def test_a_newcomers_ablation_log_prints_each_evaluation_once_in_the_train_format(tmp_path, corpus):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    output = run(
        "ablate", recipe, "--lever", "deep=model.n_layer=2", "--seeds", "2", "--max-steps", "4",
        *set_options(*TINY, f"data.dataset={corpus}"), "--out", tmp_path / "out",
    )  # fmt: skip
    lines = output.splitlines()
    assert lines[0].startswith("comparing recipe (the base), deep on ")
    runs = ["recipe seed 1337", "recipe seed 1338", "deep seed 1337", "deep seed 1338"]
    evaluations = Counter()
    for position, title in enumerate(runs, start=1):
        prefix = f"[{position}/4] {title}: "
        mine = [line.removeprefix(prefix) for line in lines if line.startswith(prefix)]
        assert [line for line in mine if EVALUATION_LINE.match(line)] == [
            line for line in mine if "validation loss" in line
        ], "an evaluation line in another format"
        evaluations.update((title, step) for step in steps_of(EVALUATION_LINE, "\n".join(mine)))
    assert evaluations == Counter({(title, step): 1 for title in runs for step in (2, 4)})
    assert not any(re.search(r"step \d+/\d+, loss", line) for line in lines)  # the second format is gone


def test_a_config_given_with_variants_is_a_contender_named_as_the_base(tmp_path, corpus):
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    output = run(
        "compare", "--config", tiny, "--variant", "a=model.n_embd=32", "--variant", "b=model.n_layer=2",
        "--max-steps", "2", *set_options(*TINY, f"data.dataset={corpus}"), "--out", tmp_path / "out",
    )  # fmt: skip
    assert output.splitlines()[0].startswith("comparing tiny (the base), a, b on ")
    assert "[1/3] tiny: " in output and "[3/3] b: " in output
    help_text = run("compare", "--help")
    assert "A --config given with variants is a contender too" in " ".join(help_text.split())
