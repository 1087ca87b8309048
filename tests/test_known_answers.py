"""`cleangpt known-answers`: the findings' comparison files plan as written, each judgement reads a report with a
known truth the way the paper's claim asks, and the command runs a finding end to end and prints its table."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_runs import TINY

from cleangpt_core.cli.main import cli
from cleangpt_core.errors import ConfigError
from cleangpt_core.experiments.comparison_file import comparison_options
from cleangpt_core.experiments.known_answers import (
    KNOWN_FOLDER,
    Finding,
    KnownAnswer,
    _optima,
    find_findings,
    judge,
    load_finding,
    seeds_to_decide,
)
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.utils import tinyshakespeare_text

PUBLISHED = sorted(KNOWN_FOLDER.glob("*.yaml"))


# -- the published findings' files ----------------------------------------------------------------------------


def test_the_six_published_findings_are_there():
    assert [path.stem for path in PUBLISHED] == [
        "mup_lr_transfer",
        "postnorm_without_warmup",
        "qk_norm_lr_basin",
        "rotary_vs_learned",
        "swiglu_vs_gelu",
        "tied_embeddings",
    ]


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda path: path.stem)
def test_a_published_finding_plans_with_three_seeds_and_a_learning_rate_tuned_per_contender(path, tmp_path):
    finding = load_finding(path)
    plan = build_plan(tmp_path, **comparison_options(path, {}))
    assert plan.tuning is not None and [key.key for key in plan.tuning.keys] == ["optimizer.lr"]
    assert plan.tuning.sampler == "grid" and plan.tuning.trials >= 4
    # a lever is judged over the final runs' seeds; a sweep over the tuning seeds
    seeds = plan.seeds if finding.answer.test == "lever" else plan.tuning.tune_seeds
    assert seeds >= 3
    assert plan.ablation_base == finding.base
    assert set(finding.contenders) == set(plan.labels)


def test_the_swiglu_finding_matches_the_gelu_mlps_parameters_within_a_tenth_of_a_percent(tmp_path):
    from cleangpt_core.experiments.flops import model_parameters

    path = KNOWN_FOLDER / "swiglu_vs_gelu.yaml"
    plan = build_plan(tmp_path, **comparison_options(path, {}))
    configs = {run.label: run.load().model.model_copy(update={"vocab_size": 65}) for run in plan.runs}
    gelu, swiglu = model_parameters(configs["gelu"]), model_parameters(configs["swiglu"])
    assert abs(swiglu - gelu) / gelu < 1e-3


# -- reading a finding ------------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


LEVER = """
known_answer: {finding: f, paper: p, test: lever, lever: b}
contenders: [{name: a, model: Vanilla}, {name: b, model: Vanilla, set: [model.position=rotary]}]
base: a
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [Vanilla, Llama]\n", "has no known_answer section, so it is no finding"),
        (LEVER.replace("lever: b}", "lever: c}"), "names 'c', which is not a contender (a, b)"),
        (LEVER.replace("base: a", ""), "test 'lever' needs the file's base"),
        (LEVER.replace("test: lever, lever: b", "test: lever"), "test 'lever' needs lever"),
        (LEVER.replace("test: lever", "test: vibes"), "test"),
        (LEVER.replace("paper: p, ", ""), "paper"),
    ],
)
def test_a_bad_finding_file_is_one_line_naming_it(tmp_path, text, message):
    path = write(tmp_path / "finding.yaml", text)
    with pytest.raises(ConfigError) as error:
        load_finding(path)
    assert len(str(error.value).splitlines()) == 1 and message in str(error.value)
    assert "finding.yaml" in str(error.value)


def test_findings_are_found_by_name_in_the_folder_or_by_path_and_an_unknown_name_lists_the_folder(tmp_path):
    write(tmp_path / "one.yaml", LEVER)
    elsewhere = write(tmp_path.parent / f"{tmp_path.name}-two.yaml", LEVER)
    assert [f.name for f in find_findings(tmp_path)] == ["one"]
    assert [f.name for f in find_findings(tmp_path, ["one", str(elsewhere)])] == ["one", elsewhere.stem]
    with pytest.raises(ConfigError, match=r"no finding 'three' in .* \(there: one\)"):
        find_findings(tmp_path, ["three"])
    with pytest.raises(ConfigError, match="no finding files in"):
        find_findings(tmp_path / "empty")


# -- judging reports with a known truth ---------------------------------------------------------------------------


def finding(answer: dict, base: str | None = "base", contenders: tuple[str, ...] = ("base", "lever")) -> Finding:
    return Finding("made-up", Path("made-up.yaml"), KnownAnswer(finding="f", paper="p", **answer), base, contenders)


def lever_report(verdict: str, lever_losses: list[float], base_losses: list[float]) -> dict:
    runs = [{"label": "lever", "val_loss": v} for v in lever_losses] + [
        {"label": "base", "val_loss": v} for v in base_losses
    ]
    row = {"lever": "lever", "seeds": 3, "delta": -0.01, "low": -0.03, "high": 0.01, "verdict": verdict}
    return {"runs": runs, "ablation": {"base": "base", "levers": [row]}}


@pytest.mark.parametrize(
    ("verdict", "expect", "outcome"),
    [("helps", "helps", "agrees"), ("hurts", "helps", "disagrees"), ("hurts", "hurts", "agrees")],
)
def test_a_lever_finding_reads_the_ablation_verdict(verdict, expect, outcome):
    answer = finding({"test": "lever", "lever": "lever", "expect": expect})
    judgement = judge(answer, lever_report(verdict, [1.0] * 3, [1.1] * 3))
    assert judgement.outcome == outcome
    assert judgement.verdict.startswith(f"{verdict}: Δ loss -0.0100 [-0.0300, +0.0100], 3 seeds")


def test_an_undecided_lever_says_how_many_seeds_would_decide_it():
    report = lever_report("within noise", [1.00, 1.02, 1.04], [1.03, 1.05, 1.07])
    judgement = judge(finding({"test": "lever", "lever": "lever"}), report)
    assert judgement.outcome == "undecided"
    assert f"about {seeds_to_decide([1.00, 1.02, 1.04], [1.03, 1.05, 1.07])} seeds per side" in judgement.note


def test_a_lever_whose_every_run_diverged_hurts():
    report = {
        "runs": [{"label": "base", "val_loss": 1.0}],
        "ablation": {"base": "base", "levers": []},
        "tuning": {"contenders": {"lever": {"trials": [{"loss": None, "failure": "training diverged at step 3"}]}}},
    }
    judgement = judge(finding({"test": "lever", "lever": "lever", "expect": "hurts"}), report)
    assert judgement.outcome == "agrees" and "training diverged at step 3" in judgement.verdict


def test_seeds_to_decide_grows_as_the_difference_shrinks_against_the_spread():
    spread = [0.0, 0.1, 0.2]
    few = seeds_to_decide([x + 0.2 for x in spread], spread)
    many = seeds_to_decide([x + 0.05 for x in spread], spread)
    assert few is not None and many is not None and 3 <= few < many
    assert seeds_to_decide(spread, spread) is None  # no difference: no number of seeds decides it


def tuning_report(tmp_path: Path, curves: dict[str, list[list[float | None]]], rates: list[float]) -> dict:
    """A report whose tuning trials have, per contender and tuning seed, these losses at these rates (None: the
    trial failed), and one finished run whose checkpoint says the vocabulary is 65."""
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir(exist_ok=True)
    (checkpoint / "config.json").write_text(json.dumps({"vocab_size": 65}))
    contenders, seeds = {}, {}
    for label, per_seed in curves.items():
        seeds[label] = list(range(len(per_seed)))
        trials = []
        for index, rate in enumerate(rates):
            losses = [row[index] for row in per_seed]
            failed = any(loss is None for loss in losses)
            trials.append({
                "params": {"optimizer.lr": rate},
                "loss": None if failed else sum(losses) / len(losses),
                "failure": "training diverged" if failed else None,
                "runs": [] if failed else [{"seed": s, "val_loss": v} for s, v in enumerate(losses)],
            })  # fmt: skip
        contenders[label] = {"trials": trials}
    tuning = {"keys": [{"key": "optimizer.lr"}], "tune_seeds": seeds, "contenders": contenders}
    return {"runs": [{"label": "base", "val_loss": 2.0, "checkpoint": str(checkpoint)}], "tuning": tuning}


RATES = [1e-3 * 2**k for k in range(6)]


def test_lr_sensitivity_agrees_when_the_lever_flattens_the_basin_and_caps_diverged_rates(tmp_path):
    sharp = [[2.0 + 0.01 * s, 1.8, 1.7, 1.9, 3.5, None] for s in range(3)]  # diverges at the highest rate
    flat = [[1.9 + 0.01 * s, 1.75, 1.7, 1.72, 1.8, 1.9] for s in range(3)]
    report = tuning_report(tmp_path, {"base": sharp, "lever": flat}, RATES)
    judgement = judge(finding({"test": "lr_sensitivity", "lever": "lever"}), report)
    assert judgement.outcome == "agrees"
    # base's sensitivity per seed: mean(capped losses) - best, the diverged rate counted as ln 65 (mean over seeds)
    expected = sum([2.01, 1.8, 1.7, 1.9, 3.5, math.log(65)]) / 6 - 1.7
    assert judgement.verdict.startswith("lr sensitivity ") and f"vs {expected:.3f}" in judgement.verdict


def parabola_curve(best_log2: float, seed: int) -> list[float]:
    return [1.5 + 0.05 * (math.log2(rate) - best_log2) ** 2 + 0.001 * seed for rate in RATES]


def test_the_best_rate_is_the_vertex_of_a_parabola_through_the_best_grid_point_and_its_neighbours(tmp_path):
    report = tuning_report(tmp_path, {"a": [parabola_curve(math.log2(3e-3), 0)]}, RATES)
    optima, on_edge = _optima(report["tuning"], "a", cap=10.0)
    [optimum] = optima.values()
    assert optimum == pytest.approx(math.log2(3e-3)) and not on_edge


def transfer_report(
    tmp_path: Path, standard_slope: float, mup_slope: float, edge: bool = False
) -> tuple[Finding, dict]:
    """Each parametrization's best log2 rate moves by its slope (x 1, 1.05, 1.1 over the 3 seeds) per doubling
    of width from width 64's, which differs a little per seed."""
    curves = {"w64": [parabola_curve(-7.0 + 0.1 * s, s) for s in range(3)]}
    for doubling, width in enumerate((128, 256), start=1):
        for name, slope in (("s", standard_slope), ("m", mup_slope)):
            curves[f"{name}{width}"] = [
                parabola_curve(-7.0 + 0.1 * s + slope * (1 + 0.05 * s) * doubling, s) for s in range(3)
            ]
    if edge:
        curves["s256"] = [parabola_curve(-20.0, s) for s in range(3)]
    transfer = {"standard": {64: "w64", 128: "s128", 256: "s256"}, "mup": {64: "w64", 128: "m128", 256: "m256"}}
    answer = finding({"test": "lr_transfer", "transfer": transfer}, None, tuple(curves))
    return answer, tuning_report(tmp_path, curves, RATES)


def test_lr_transfer_agrees_when_standards_best_rate_moves_with_width_and_mups_does_not(tmp_path):
    judgement = judge(*transfer_report(tmp_path, standard_slope=-1.0, mup_slope=0.05))
    assert judgement.outcome == "agrees", judgement
    assert "standard -1.05" in judgement.verdict and "muP +0.05" in judgement.verdict


def test_lr_transfer_disagrees_when_mups_best_rate_moves_more(tmp_path):
    assert judge(*transfer_report(tmp_path, standard_slope=-0.05, mup_slope=0.5)).outcome == "disagrees"


def test_lr_transfer_with_a_best_rate_on_the_grids_edge_is_undecided_and_says_where(tmp_path):
    judgement = judge(*transfer_report(tmp_path, standard_slope=-1.0, mup_slope=0.0, edge=True))
    assert judgement.outcome == "undecided" and "grid's edge for s256" in judgement.note


# -- the comparison file and the command ----------------------------------------------------------------------


def test_a_comparison_file_tunes_and_names_a_base_and_the_command_lines_tune_replaces_its_ranges(tmp_path):
    path = write(tmp_path / "c.yaml", LEVER + "tune: [optimizer.lr=1e-3:1e-2:log]\ntrials: 2\ntune_sampler: grid\n")
    plan = build_plan(tmp_path / "a", **comparison_options(path, {}))
    assert plan.ablation_base == "a" and plan.tuning.keys[0].text == "optimizer.lr=0.001:0.01:log"
    options = comparison_options(path, {"tune": ("optimizer.lr=1e-4:1e-3:log",)}, given=["tune"])
    assert build_plan(tmp_path / "b", **options).tuning.keys[0].text == "optimizer.lr=0.0001:0.001:log"


@pytest.mark.slow
def test_known_answers_runs_a_finding_end_to_end_and_prints_its_table(tmp_path):
    corpus = write(tmp_path / "text.txt", tinyshakespeare_text()[:20_000])
    overrides = [*TINY, f"data.dataset={corpus}", "data.eval_tokens=256"]
    text = LEVER + f"set: {json.dumps(overrides)}\nmax_steps: 4\nseeds: 2\n"
    text += "tune: [optimizer.lr=1e-3:1e-2:log]\ntrials: 2\ntune_sampler: grid\n"
    (tmp_path / "known").mkdir()
    write(tmp_path / "known" / "tiny.yaml", text)
    # a finding that cannot run is a row of its own, and the others still run
    write(tmp_path / "known" / "broken.yaml", text.replace("finding: f,", "finding: g,").replace("n_layer", "n_layr"))
    arguments = ["known-answers", "--folder", str(tmp_path / "known"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == "Error: 1 finding(s) did not run: broken (the reasons are above)"
    broken = next(line for line in result.output.splitlines() if line.startswith("| g | p |"))
    assert "did not run: " in broken and "n_layr" in broken and "| not run |" in broken
    row = next(line for line in result.output.splitlines() if line.startswith("| f | p |"))
    command = f"cleangpt compare --comparison {tmp_path / 'known' / 'tiny.yaml'} --out {tmp_path / 'out' / 'tiny'}"
    assert f"`{command}`" in row and "2 seeds" in row
    assert any(outcome in row for outcome in ("| agrees |", "| disagrees |", "| undecided"))
    assert (tmp_path / "out" / "known_answers.md").read_text().count("| f | p |") == 1
    record = json.loads((tmp_path / "out" / "tiny" / "known_answer.json").read_text())
    # started again, the finished comparison is judged again without training, and its wall time kept
    again = CliRunner().invoke(cli, [*arguments[:1], "tiny", *arguments[1:]])
    assert again.exit_code == 0 and "] tuning " in result.output and "] tuning " not in again.output
    assert json.loads((tmp_path / "out" / "tiny" / "known_answer.json").read_text())["wall_s"] >= record["wall_s"]


def test_known_answers_list_shows_each_findings_command_and_trains_nothing(tmp_path):
    write(tmp_path / "one.yaml", LEVER)
    result = CliRunner().invoke(cli, ["known-answers", "--folder", str(tmp_path), "--list", "--out", "o"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [
        "one: f (p)",
        f"  cleangpt compare --comparison {tmp_path / 'one.yaml'} --out {Path('o') / 'one'}",
    ]


def test_an_unknown_finding_is_one_line_on_the_command_line(tmp_path):
    result = CliRunner().invoke(cli, ["known-answers", "nonesuch", "--folder", str(tmp_path)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "no finding 'nonesuch'" in result.output


def test_the_table_keeps_a_bar_inside_a_cell_from_splitting_its_row():
    from cleangpt_core.experiments.known_answers import Judgement, Row, table

    answer = finding({"test": "lever", "lever": "lever"})
    text = table([Row(answer, "cleangpt compare --set 'a=b|c'", Judgement("did not run: x | y", "not run"), 3.0)])
    row = text.splitlines()[-1]
    assert row.count(" | ") == 5 and "x \\| y" in row and "a=b\\|c" in row


def test_a_finding_names_contenders_as_the_comparison_labels_them(tmp_path):
    """Models under one config are labelled by model (its canonical name), configs alone by their stems."""
    write(tmp_path / "small.yaml", "model: {n_layer: 1}\n")
    text = "known_answer: {finding: f, paper: p, test: lever, lever: Llama}\nmodels: [llama, Vanilla]\n"
    finding = load_finding(write(tmp_path / "f.yaml", text + "configs: [small.yaml]\nbase: Vanilla\n"))
    assert finding.contenders == ("Llama", "Vanilla")
    write(tmp_path / "big.yaml", "model: {n_layer: 2}\n")
    text = "known_answer: {finding: f, paper: p, test: lever, lever: big}\nconfigs: [small.yaml, big.yaml]\n"
    assert load_finding(write(tmp_path / "g.yaml", text + "base: small\n")).contenders == ("small", "big")
