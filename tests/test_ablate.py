"""`cleangpt ablate`: the base and each lever over seeds, each lever's interval (Welch's or paired) and its verdict
with the levers one family (Holm), and outlying seeds named."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from click.testing import CliRunner
from scipy import stats
from tiny_runs import TINY

from cleangpt_core.cli.main import cli
from cleangpt_core.experiments.ablation import ablation_rows, ablation_section
from cleangpt_core.experiments.report import write_report
from cleangpt_core.experiments.verdicts import PAIRED, WELCH, holm
from cleangpt_core.utils import tinyshakespeare_text


def welch(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's 95 % interval of mean(a) - mean(b), from its textbook formula."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    delta = statistics.fmean(a) - statistics.fmean(b)
    return delta - half, delta + half


def results_of(losses: dict[str, list[float]], parameters: dict[str, int] | None = None) -> list[dict]:
    """Runs of each label over seeds 1, 2, ... (`parameters`: each label's count; the same shapes by default)."""
    return [
        {
            "label": label,
            "seed": seed,
            "model_type": "Llama",
            "val_loss": loss,
            "train_loss": loss,
            "wall_s": 1.0,
            "tokens_per_step": 64,
            "val_curve": [[4, loss]],
            "parameters": (parameters or {}).get(label, 10),
            "all_parameters": (parameters or {}).get(label, 10),
            "steps": 4,
            "tokens": 256,
        }
        for label, values in losses.items()
        for seed, loss in enumerate(values, start=1)
    ]


@pytest.mark.parametrize(
    ("lever", "verdict"),
    [
        ([1.80, 1.81, 1.79], "helps"),  # clearly lower than the base
        ([2.00, 2.02, 2.01], "hurts"),
        ([1.89, 1.93, 1.88], "within noise"),  # the gap is smaller than the spread
    ],
)
def test_a_lever_that_changes_the_shapes_gets_welchs_interval_and_a_verdict_only_where_it_excludes_zero(lever, verdict):
    base = [1.90, 1.91, 1.89]
    [row] = ablation_rows(results_of({"base": base, "lever": lever}, {"lever": 12}), "base")
    low, high = welch(lever, base)
    assert row["delta"] == pytest.approx(statistics.fmean(lever) - statistics.fmean(base))
    assert (row["low"], row["high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["method"] == WELCH and row["p_holm"] == pytest.approx(row["p"])  # a family of one
    assert row["verdict"] == verdict


def test_a_lever_that_keeps_the_shapes_is_paired_over_its_seeds_from_three_seeds_on():
    base, lever = [1.90, 1.95, 1.85], [1.910, 1.962, 1.861]  # each seed moves both: the pairs move together
    [row] = ablation_rows(results_of({"base": base, "lever": lever}), "base")
    differences = [a - b for a, b in zip(lever, base, strict=True)]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(differences) / math.sqrt(3)
    assert row["method"] == PAIRED
    assert (row["low"], row["high"]) == (
        pytest.approx(statistics.fmean(differences) - half),
        pytest.approx(statistics.fmean(differences) + half),
    )
    assert row["verdict"] == "hurts"  # Welch's interval, blind to the pairing, would straddle zero
    assert welch(lever, base)[0] < 0
    [two_seeds] = ablation_rows(results_of({"base": base[:2], "lever": lever[:2]}), "base")
    assert two_seeds["method"] == WELCH  # one degree of freedom would make a paired interval useless


def test_the_levers_are_one_family_under_holms_correction():
    assert holm([0.01, 0.04, None, 0.03]) == [pytest.approx(0.03), pytest.approx(0.06), None, pytest.approx(0.06)]
    assert holm([0.04, 0.001]) == [pytest.approx(0.04), pytest.approx(0.002)]
    base = [1.90, 1.91, 1.89]
    alone = ablation_rows(results_of({"base": base, "a": [1.93, 1.95, 1.92]}, {"a": 11}), "base")
    crowd = ablation_rows(
        results_of({"base": base, "a": [1.93, 1.95, 1.92], **{f"n{i}": base for i in range(6)}}, {"a": 11}), "base"
    )
    assert alone[0]["verdict"] == "hurts" and alone[0]["p_holm"] == pytest.approx(alone[0]["p"])
    assert crowd[0]["p"] == pytest.approx(alone[0]["p"]) and crowd[0]["p_holm"] > 0.05  # 7 levers: Holm × 7
    assert crowd[0]["verdict"] == "within noise"


def test_an_outlying_seed_is_named_with_the_verdict_without_it():
    base = [1.90, 1.91, 1.89, 1.905, 1.895]
    lever = [1.93, 1.94, 1.92, 1.935, 2.30]  # +0.03 at four seeds, +0.4 at seed 5
    [row] = ablation_rows(results_of({"base": base, "lever": lever}), "base")
    assert row["outlying_seeds"] == [5]
    without = row["without_outliers"]["5"]
    assert without["delta"] == pytest.approx(0.03) and without["verdict"] == "hurts"
    assert row["verdict"] == "within noise" and row["resting_on"] == [5]  # the outlier hides a clear effect
    assert ablation_rows(results_of({"base": base[:3], "lever": lever[:3]}), "base")[0]["outlying_seeds"] is None


def test_the_report_gives_the_ablation_table_after_the_seed_spread(tmp_path):
    results = results_of(
        {"base": [1.90, 1.91, 1.89], "gelu": [1.80, 1.81, 1.79], "tied": [1.9, 1.92, 1.88]}, {"gelu": 11, "tied": 12}
    )
    rows = ablation_rows(results, "base")
    assert [(row["lever"], row["verdict"]) for row in rows] == [("gelu", "helps"), ("tied", "within noise")]
    lines, rows = ablation_section(results, "base")
    paths = write_report(
        tmp_path,
        results,
        {"dataset": "d", "seed": 1, "tokens_per_run": 256},
        None,
        [("ablation", lines, {"base": "base", "levers": rows})],
    )
    markdown = paths["markdown"].read_text()
    assert (
        "| lever | Δ mean val loss vs base | 95 % interval of the difference | method | p (Holm) | verdict |"
        in markdown
    )
    low, high = welch([1.80, 1.81, 1.79], [1.90, 1.91, 1.89])
    assert f"| gelu | -0.1000 | [{low:+.4f}, {high:+.4f}] | Welch | {rows[0]['p_holm']:.3g} | helps |" in markdown
    assert "Welch's t-interval" in markdown and "Holm's step-down correction" in markdown
    assert "The 2 levers are one family" in markdown
    report = json.loads(paths["json"].read_text())
    assert report["ablation"]["levers"][0]["verdict"] == "helps"
    assert report["verdicts"][0]["verdict"] in ("better", "within noise")


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
