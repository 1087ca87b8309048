"""`cleangpt ablate`: the base and each lever over seeds, and each lever's verdict with Welch's 95 % interval."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from click.testing import CliRunner
from scipy import stats
from tiny_runs import TINY

from cleangpt_core.cli.main import cli
from cleangpt_core.experiments.ablation import ablation_rows, lever_verdict
from cleangpt_core.experiments.report import write_report
from cleangpt_core.utils import tinyshakespeare_text


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's 95 % interval of mean(a) - mean(b), from its textbook formula."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    delta = statistics.fmean(a) - statistics.fmean(b)
    return delta - half, delta + half


@pytest.mark.parametrize(
    ("lever", "verdict"),
    [
        ([1.80, 1.81, 1.79], "helps"),  # clearly lower than the base
        ([2.00, 2.02, 2.01], "hurts"),
        ([1.89, 1.93, 1.88], "within noise"),  # the gap is smaller than the spread
    ],
)
def test_a_lever_helps_or_hurts_only_when_its_interval_excludes_zero(lever, verdict):
    base = [1.90, 1.91, 1.89]
    row = lever_verdict(lever, base)
    low, high = welch(lever, base)
    assert row["delta"] == pytest.approx(statistics.fmean(lever) - statistics.fmean(base))
    assert (row["low"], row["high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["verdict"] == verdict


def test_the_report_gives_the_ablation_table_after_the_seed_spread(tmp_path):
    results = [
        {
            "label": label,
            "seed": seed,
            "model_type": "Llama",
            "val_loss": loss,
            "train_loss": loss,
            "wall_s": 1.0,
            "tokens_per_step": 64,
            "val_curve": [[4, loss]],
            "parameters": 10,
            "steps": 4,
            "tokens": 256,
        }
        for label, losses in (("base", [1.90, 1.91, 1.89]), ("gelu", [1.80, 1.81, 1.79]), ("tied", [1.9, 1.92, 1.88]))
        for seed, loss in zip((1, 2, 3), losses, strict=True)
    ]
    rows = ablation_rows(results, "base")
    assert [(row["lever"], row["verdict"]) for row in rows] == [("gelu", "helps"), ("tied", "within noise")]
    from cleangpt_core.experiments.ablation import ablation_section

    lines, rows = ablation_section(results, "base")
    paths = write_report(
        tmp_path,
        results,
        {"dataset": "d", "seed": 1, "tokens_per_run": 256},
        None,
        [("ablation", lines, {"base": "base", "levers": rows})],
    )
    markdown = paths["markdown"].read_text()
    assert "| lever | Δ mean val loss vs base | 95 % interval of the difference | verdict |" in markdown
    low, high = welch([1.80, 1.81, 1.79], [1.90, 1.91, 1.89])
    assert f"| gelu | -0.1000 | [{low:+.4f}, {high:+.4f}] | helps |" in markdown
    assert "Welch's t-interval" in markdown
    assert json.loads(paths["json"].read_text())["ablation"]["levers"][0]["verdict"] == "helps"


def test_ablate_needs_two_seeds_and_well_formed_levers_before_anything_is_written(tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    out = tmp_path / "out"
    for arguments, message in [
        (["--lever", "a=model.n_layer=2", "--seeds", "1"], "--seeds must be at least 2 for an ablation"),
        (["--lever", "a"], "--variant 'a' must look like NAME=KEY=VALUE"),
        (["--lever", "a=model.n_head=3"], "contender 'a': invalid experiment config"),
        (["--lever", "recipe=model.n_layer=2"], "two contenders are named 'recipe'"),
    ]:
        result = CliRunner().invoke(cli, ["ablate", str(config), "--max-steps", "2", "--out", str(out), *arguments])
        assert result.exit_code == 1, result.output
        [line] = result.output.strip().splitlines()
        assert message in line
        assert not out.exists()


@pytest.mark.slow
def test_ablate_on_a_tiny_budget_gives_each_lever_its_interval_and_verdict(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(tinyshakespeare_text()[:30_000], encoding="utf-8")
    config = tmp_path / "recipe.yaml"
    config.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    arguments = ["ablate", str(config), "--lever", "deep=model.n_layer=2", "--seeds", "2", "--max-steps", "4"]
    for option in [*TINY, f"data.dataset={corpus}"]:
        arguments += ["--set", option]
    result = CliRunner().invoke(cli, [*arguments, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    runs = {(run["label"], run["seed"]): run["val_loss"] for run in report["runs"]}
    assert set(runs) == {("recipe", 1337), ("recipe", 1338), ("deep", 1337), ("deep", 1338)}
    [row] = report["ablation"]["levers"]
    expected_low, expected_high = welch(
        [runs["deep", 1337], runs["deep", 1338]], [runs["recipe", 1337], runs["recipe", 1338]]
    )
    assert row["lever"] == "deep" and row["seeds"] == 2
    assert (row["low"], row["high"]) == (pytest.approx(expected_low), pytest.approx(expected_high))
    assert row["verdict"] in ("helps", "hurts", "within noise")
    assert "| lever | Δ mean val loss vs recipe |" in (tmp_path / "out" / "report.md").read_text()
    assert "| deep |" in result.output
