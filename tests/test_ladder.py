"""`cleangpt compare --ladder`: every contender at every rung, budgets per rung, bad ladders refused in one line
before anything is written, the report's fits on results with a known answer, and a killed ladder resumed."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.experiments.execution import RESULT_FILE, run_comparison
from cleangpt_core.experiments.flops import model_parameters
from cleangpt_core.experiments.ladder_report import LADDER_PNG, ladder_section, ladder_summary, rung_rows
from cleangpt_core.experiments.plan import PLAN_FILE, RUNS_DIR, load_plan, prepare_directory, tokens_per_step
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.experiments.scaling_fit import PowerLaw
from cleangpt_core.utils import tinyshakespeare_text

TINY = [
    "model.n_layer=1",
    "model.block_size=16",
    "data.batch_size=2",
    "data.eval_tokens=300",
    "schedule.warmup_steps=1",
    "trainer.eval_interval=1000",
    "trainer.checkpoint_interval=2",
    "trainer.log_interval=2",
    "trainer.progress_bar=false",
    "output.sample_tokens=0",
    "device=cpu",
]
WIDTHS = ["--ladder", "model.n_embd=8,16,24", "--ladder", "model.n_head=2,2,4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "shakespeare.txt"
    path.write_text(tinyshakespeare_text()[:20_000], encoding="utf-8")
    return path


def tiny(corpus: Path) -> list[str]:
    return [*TINY, f"data.dataset={corpus}"]


# -- the plan ---------------------------------------------------------------------------------------------------


def test_every_contender_trains_at_every_rung_with_the_zipped_settings(corpus, tmp_path):
    plan = build_plan(
        tmp_path,
        models=["Vanilla", "Llama"],
        overrides=tiny(corpus),
        ladder=["model.n_embd=8,16,24", "model.n_head=2,2,4"],
        tokens_per_param=2,
        seeds=2,
    )
    assert plan.labels == [f"{m}/rung-{i}" for m in ("Vanilla", "Llama") for i in (1, 2, 3)]
    assert [run.directory for run in plan.runs[:2]] == ["Vanilla/rung-1/seed-1337", "Vanilla/rung-1/seed-1338"]
    for label in plan.labels:
        config = next(run for run in plan.runs if run.label == label).load()
        rung = int(label[-1]) - 1
        assert (config.model.n_embd, config.model.n_head) == ((8, 16, 24)[rung], (2, 2, 4)[rung])
        # R·N tokens, in whole steps of the batch: ceil(2·N / (2·16))
        assert plan.max_steps[label] == math.ceil(2 * model_parameters(config.model) / tokens_per_step(config))
    assert plan.max_steps["Vanilla/rung-3"] > plan.max_steps["Vanilla/rung-1"]
    assert plan.ladder.contenders == ("Vanilla", "Llama")


def test_max_tokens_gives_every_rung_the_same_budget(corpus, tmp_path):
    plan = build_plan(
        tmp_path, models=["Vanilla"], overrides=tiny(corpus), ladder=["model.n_embd=8,16,24"], max_tokens=100
    )
    assert set(plan.max_steps.values()) == {4}  # ceil(100 / 32)
    assert plan.ladder.tokens_per_param is None


def test_a_ladder_plan_is_saved_and_loaded_whole(corpus, tmp_path):
    plan = build_plan(tmp_path, models=["Vanilla"], overrides=tiny(corpus), ladder=["model.n_layer=1,2,3"])
    prepare_directory(tmp_path, plan)
    assert load_plan(tmp_path) == plan
    assert json.loads((tmp_path / PLAN_FILE).read_text())["ladder"]["values"] == [["1", "2", "3"]]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ["--ladder", "model.n_embd=8,18,24", "--ladder", "model.n_head=2,4,4"],
            "Error: contender 'Vanilla/rung-2': "
            "invalid experiment config: model: invalid Vanilla config: n_embd=18 is not divisible by n_head=4",
        ),
        (
            ["--ladder", "optimizer.lr=1,2,3"],
            "Error: --ladder 'optimizer.lr=1,2,3': 'optimizer.lr' is not a model "
            "field; a ladder varies the model's size (e.g. model.n_embd, model.n_layer, model.n_head); compare "
            "architectures with --model",
        ),
        (
            ["--ladder", "model.n_emb=8,16,24"],
            "Error: contender 'Vanilla/rung-1': invalid experiment config: model: "
            "invalid Vanilla config: unknown field 'n_emb' in VanillaConfig with these parts; did you mean 'n_embd'?",
        ),
        (
            ["--ladder", "model.n_embd=8,16,24", "--ladder", "model.n_head=2,4"],
            "Error: every --ladder needs one "
            "value per rung, but they have different lengths (model.n_embd 3, model.n_head 2)",
        ),
        (
            ["--ladder", "model.n_embd=8,16"],
            "Error: a ladder needs at least 3 rungs (its power-law fit has three "
            "parameters), got 2: give --ladder model.n_embd=V1,V2,V3,...",
        ),
        (
            ["--ladder", "model.n_embd=8,16,24", "--tokens-per-param", "5", "--max-tokens", "100"],
            "Error: give --tokens-per-param (a budget per rung) or --max-tokens (one for every rung), not both",
        ),
        (
            ["--ladder", "model.n_embd=8,16,24", "--max-steps", "5"],
            "Error: a ladder's rungs train different numbers of steps: give --tokens-per-param or --max-tokens",
        ),
        (
            ["--tokens-per-param", "5"],
            "Error: --tokens-per-param sets a ladder's budgets: give it with --ladder model.KEY=V1,V2,...",
        ),
        (
            ["--ladder", "model.n_embd=8,16,24", "--tokens-per-param", "0"],
            "Error: --tokens-per-param must be a positive number, got 0.0",
        ),
        (
            ["--ladder", "model.n_embd=8,,24"],
            "Error: --ladder 'model.n_embd=8,,24' must look like model.KEY=V1,V2,... (e.g. model.n_embd=64,128,256)",
        ),
        # issue 35, fault 6: rungs that repeat a model, or do not change its size
        (
            ["--ladder", "model.n_embd=8,8,8"],
            "Error: --ladder: rungs 1 and 2 are the same model (n_embd=8); each rung needs a size of its own",
        ),
        (
            ["--ladder", "model.dropout=0.0,0.1,0.2"],
            "Error: --ladder: rungs 1 (dropout=0.0) and 2 (dropout=0.1) give Vanilla the same size (N = 198,528 "
            "non-embedding parameters); a ladder varies the model's size: compare settings that keep it with --variant",
        ),
        (
            ["--ladder", "model.n_embd=16,8,24", "--ladder", "model.n_head=2,2,2"],
            "Error: --ladder: rungs 1 (n_embd=16, n_head=2) and 2 (n_embd=8, n_head=2) shrink Vanilla (N = 3,312, "
            "then 888); list the rungs from the smallest model up (a tuned ladder tunes at the smallest)",
        ),
        # issue 35, fault 5: a size bound, and sizes torch cannot describe, in one line before anything is written
        (
            ["--ladder", "model.n_embd=8,16,1048576", "--ladder", "model.n_head=2,2,2"],
            "Error: contender 'Vanilla/rung-3' (n_embd=1048576, n_head=2) would have 1.32e+13 non-embedding "
            "parameters, more than the 1e+12 a ladder's rung may have; choose smaller rungs",
        ),
        (
            ["--ladder", "model.n_embd=8,16,4294967296", "--ladder", "model.n_head=2,2,2"],
            "Error: contender 'Vanilla/rung-3' (n_embd=4294967296, n_head=2): the model is too large to describe "
            "(Storage size calculation overflowed with sizes=[12884901888, 4294967296])",
        ),
        (
            ["--ladder", "model.n_embd=8,16,24", "--tune", "optimizer.lr=1e-3:1e-2", "--trials=2", "--tune-rungs=4"],
            "Error: --tune-rungs 4: the ladder has 3 rungs",
        ),
        (
            ["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "2", "--tune-rungs", "2"],
            "Error: --tune-rungs 2: it applies to a ladder (--ladder)",
        ),
    ],
)
def test_a_bad_ladder_is_one_line_before_anything_is_written(options, message, corpus, tmp_path):
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--out", str(out), *options]
    for override in tiny(corpus):
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [message]
    assert not out.exists()


def test_a_ladder_of_any_depth_is_planned_without_building_its_models(corpus, tmp_path, monkeypatch):
    """Issue 35, fault 5: `--ladder model.n_layer=1,2,100000` built the 100,000-block model (on the meta device:
    minutes, and 2 GB) to count its parameters before printing anything. N is counted by formula now."""
    from cleangpt_core.model import factory

    built = []
    build = factory.get_model

    def counting(name, *args, **kwargs):
        built.append(kwargs["config"].n_layer)
        assert kwargs["config"].n_layer <= 3, f"a model of {kwargs['config'].n_layer} blocks was built to plan"
        return build(name, *args, **kwargs)

    monkeypatch.setattr(factory, "get_model", counting)
    deep = ["model.n_layer=1,2,100000", "model.n_embd=8,8,8", "model.n_head=2,2,2"]
    plan = build_plan(tmp_path, models=["Vanilla"], overrides=tiny(corpus), ladder=deep)
    assert built and max(built) <= 3
    one, two = (model_parameters(run.load().model) for run in plan.runs[:2])
    # every block adds the same parameters; R·N tokens in whole steps of 2 x 16 tokens
    assert plan.max_steps["Vanilla/rung-3"] == math.ceil(20 * (one + 99_999 * (two - one)) / 32)


def test_parameters_are_counted_by_formula_as_the_built_model_counts_them():
    from cleangpt_core.config.experiment import load_experiment_config
    from cleangpt_core.experiments.flops import model_parameters, non_embedding_parameters
    from cleangpt_core.model.factory import get_model

    for model_type in ("Vanilla", "Llama", "SASP"):
        config = load_experiment_config(None, [f"model.model_type={model_type}", "model.n_layer=5", "model.n_embd=16"])
        assert model_parameters(config.model) == non_embedding_parameters(get_model(model_type, config=config.model))


# -- the report on results with a known answer ------------------------------------------------------------------


def known_results(plan, laws: dict[str, PowerLaw], wobble: float = 1e-4) -> list[dict]:
    """Every run's loss on its contender's law at its rung's compute, the first seed `wobble` above it and the
    second below (the rung means are the law's, the seed spread wobble·√2)."""
    flops = {f"{row['contender']}/rung-{row['rung']}": row["flops"] for row in rung_rows(plan, [])}
    return [
        {
            "label": run.label,
            "seed": run.seed,
            "val_loss": float(laws[run.label.split("/")[0]].loss(flops[run.label])) + wobble * (1 - 2 * (run.seed % 2)),
        }
        for run in plan.runs
    ]


def test_the_report_recovers_a_known_law_forecast_and_compute_multiplier(corpus, tmp_path):
    plan = build_plan(
        tmp_path,
        models=["Vanilla", "Llama"],
        overrides=tiny(corpus),
        ladder=["model.n_embd=8,16,24,32", "model.n_head=2,2,2,2"],
        seeds=2,
    )
    flops = {f"{row['contender']}/rung-{row['rung']}": row["flops"] for row in rung_rows(plan, [])}
    law, k = PowerLaw(floor=1.5, scale=40.0, alpha=0.15), 3.0
    # Llama's losses are Vanilla's law at k times the compute: Llama is worth k× the compute
    results = known_results(plan, {"Vanilla": law, "Llama": PowerLaw(law.floor, law.scale * k**-law.alpha, law.alpha)})
    summary = ladder_summary(plan, results, resamples=50)
    vanilla, llama = summary["contenders"]["Vanilla"], summary["contenders"]["Llama"]
    assert vanilla["fit"]["alpha"] == pytest.approx(0.15, rel=0.02)
    assert vanilla["fit"]["E"] == pytest.approx(1.5, rel=0.01)
    assert abs(vanilla["forecast"]["error"]) < 1e-3 and vanilla["forecast"]["within"]
    assert summary["multiplier_at_flops"] == flops["Vanilla/rung-4"]
    assert llama["multiplier"]["value"] == pytest.approx(k, rel=0.02) and llama["multiplier"]["withheld"] is None
    assert llama["multiplier"]["low"] < k < llama["multiplier"]["high"]
    assert vanilla["multiplier"] is None
    rows = {(row["contender"], row["rung"]): row for row in summary["rungs"]}
    assert rows["Llama", 3]["seeds"] == [1337, 1338]
    assert rows["Llama", 3]["val_loss_std"] == pytest.approx(2e-4 / math.sqrt(2))
    assert [gap["verdict"] for gap in llama["gaps"]] == ["lower"] * 4 and llama["reversal"] is None

    lines = ladder_section(summary, tmp_path, None)
    text = "\n".join(lines)
    assert "| Vanilla | 1 | n_embd=8, n_head=2 | " in text
    assert any(line.startswith("| Llama | ") and f"| {llama['multiplier']['value']:.3g}× [" in line for line in lines)
    assert "C = 6·N·D + 6·n_layer·n_ctx·d_attn·D" in text
    assert "Interval: 95 %, parametric bootstrap-t" in text and "in the calibration harness" in text
    assert "| contender | rung | at FLOPs | loss − Vanilla's | 95 % interval | p (Holm) | verdict |" in text
    assert (tmp_path / LADDER_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_withheld_multiplier_says_why_and_gives_the_gap_and_a_reversal_with_size(corpus, tmp_path):
    plan = build_plan(
        tmp_path,
        models=["Vanilla", "Llama"],
        overrides=tiny(corpus),
        ladder=["model.n_embd=8,16,24", "model.n_head=2,2,2"],
        seeds=2,
    )
    # Llama starts lower and falls slower: below Vanilla at the smallest rung, above it at the largest
    laws = {"Vanilla": PowerLaw(1.0, 200.0, 0.3), "Llama": PowerLaw(1.0, 3.8, 0.1)}
    summary = ladder_summary(plan, known_results(plan, laws, wobble=1e-3), resamples=50, outlook=False)
    llama = summary["contenders"]["Llama"]
    assert llama["multiplier"]["value"] is None and llama["multiplier"]["rule"] == "exact"
    gaps = llama["gaps"]
    assert [gap["verdict"] for gap in gaps] == ["lower", "higher", "higher"]
    assert llama["reversal"].startswith("The order reverses with size: Llama's loss is below Vanilla's at rung 1 (")
    text = "\n".join(ladder_section(summary, tmp_path, None))
    assert (
        "- Llama's multiplier is withheld. Why: Vanilla has 3 rungs of distinct compute for a law of 3 parameters"
        in text
    )
    assert (
        f"at {gaps[-1]['compute']:.3e} FLOPs, the largest compute both measured, the gap is {gaps[-1]['gap']:+.4f} ["
        in text
    )
    assert llama["reversal"] in text
    assert "| Llama | withheld (below) |" not in text and "| withheld (below) |" in text


# -- end to end: a killed ladder resumes to the same report --------------------------------------------------------


def ladder_command(corpus: Path, out: Path) -> list[str]:
    arguments = ["compare", "--model", "Vanilla", "--model", "SASP", *WIDTHS, "--tokens-per-param", "0.1"]
    for override in tiny(corpus):
        arguments += ["--set", override]
    return [*arguments, "--out", str(out)]


@pytest.fixture(scope="module")
def straight_ladder(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("ladder")
    result = CliRunner().invoke(cli, ladder_command(corpus, out))
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_a_ladder_reports_its_fits_in_json_markdown_and_a_plot(straight_ladder):
    report = json.loads((straight_ladder / "report.json").read_text())
    ladder = report["ladder"]
    assert [(row["contender"], row["rung"]) for row in ladder["rungs"]] == [
        (m, i) for m in ("Vanilla", "SASP") for i in (1, 2, 3)
    ]
    for row in ladder["rungs"]:
        run = next(r for r in report["runs"] if r["label"] == f"{row['contender']}/rung-{row['rung']}")
        assert row["tokens"] == run["tokens"]  # D is what the run trained on
        assert row["val_losses"] == [run["val_loss"]]
    assert set(ladder["contenders"]) == {"Vanilla", "SASP"}
    multiplier = ladder["contenders"]["SASP"]["multiplier"]
    assert multiplier["value"] is None and multiplier["low"] is None and multiplier["rule"] == "exact"
    markdown = (straight_ladder / "report.md").read_text()
    assert "## Ladder" in markdown and f"![Loss against compute, with the fits]({LADDER_PNG})" in markdown
    assert "- SASP's multiplier is withheld. Why: Vanilla has 3 rungs of distinct compute" in markdown
    assert (straight_ladder / LADDER_PNG).is_file()


class InterruptAt:
    """Presses Ctrl-C at one step of one run (its directory under runs/)."""

    def __init__(self, directory: str, step: int, press: Callable[[], None]) -> None:
        self.directory, self.step, self.press = directory, step, press

    def on_step_end(self, trainer, step):
        if Path(trainer.output_dir).as_posix().endswith(f"/{self.directory}") and step == self.step:
            self.press()


@pytest.mark.slow
def test_a_killed_ladder_resumes_to_the_report_of_one_never_killed(straight_ladder, corpus, tmp_path, ctrl_c):
    out = tmp_path / "ladder"
    plan = build_plan(
        out,
        models=["Vanilla", "SASP"],
        overrides=tiny(corpus),
        ladder=[WIDTHS[1], WIDTHS[3]],
        tokens_per_param=0.1,
    )
    assert plan.max_steps["SASP/rung-2"] >= 3  # the interruption falls after its first checkpoint
    prepare_directory(out, plan)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(plan, out, echo=lambda line: None, callbacks=[InterruptAt("SASP/rung-2", 3, ctrl_c)])
    assert (out / RUNS_DIR / "SASP" / "rung-1" / RESULT_FILE).is_file()
    assert not (out / RUNS_DIR / "SASP" / "rung-2" / RESULT_FILE).exists()

    result = CliRunner().invoke(cli, ["compare", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    assert "[4/6] SASP/rung-1: finished earlier, kept" in result.output
    resumed = json.loads((out / "report.json").read_text())["ladder"]
    straight = json.loads((straight_ladder / "report.json").read_text())["ladder"]
    assert resumed == straight


@pytest.mark.slow
def test_a_tuned_ladder_tunes_its_two_smallest_rungs_and_says_whether_the_best_setting_moved(corpus, tmp_path):
    out = tmp_path / "tuned"
    arguments = ["compare", "--model", "Vanilla", "--ladder", "model.n_embd=8,16,24", "--tokens-per-param", "0.1"]
    arguments += ["--tune", "optimizer.lr=1e-3:1e-2:log", "--trials", "2", "--tune-sampler", "grid", "--out", str(out)]
    for override in tiny(corpus):
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert load_plan(out).tuning.rungs == 2  # the check costs little beside the rest: made by default
    assert sorted(path.name for path in (out / "tuning" / "Vanilla").iterdir()) == ["rung-1", "rung-2"]
    report = json.loads((out / "report.json").read_text())
    tuning = report["tuning"]
    assert list(tuning["contenders"]) == ["Vanilla/rung-1", "Vanilla/rung-2"]
    best = {label: c["best"]["params"]["optimizer.lr"] for label, c in tuning["contenders"].items()}
    for rung, trained_at in ((1, "Vanilla/rung-1"), (2, "Vanilla/rung-2"), (3, "Vanilla/rung-2")):
        for saved in (out / RUNS_DIR / "Vanilla" / f"rung-{rung}" / "checkpoints").glob("*/experiment.json"):
            assert json.loads(saved.read_text())["optimizer"]["lr"] == best[trained_at]
    transfer = tuning["transfer"]["Vanilla"]
    assert transfer["tuned"] == ["Vanilla/rung-1", "Vanilla/rung-2"] and transfer["transferred"] == ["Vanilla/rung-3"]
    [check] = transfer["checks"]
    rung_2 = {t["params"]["optimizer.lr"]: t["loss"] for t in tuning["contenders"]["Vanilla/rung-2"]["trials"]}
    assert check["loss_at_from_best"] == rung_2[best["Vanilla/rung-1"]]  # the grid scored rung 1's best at rung 2
    assert check["gap"] == rung_2[best["Vanilla/rung-1"]] - min(rung_2.values())
    assert check["moved"] == (check["gap"] > 0.01)
    markdown = (out / "report.md").read_text()
    assert "Transfer between the tuned rungs: Vanilla: " in markdown
    assert "Vanilla's rung 3 trained rung 2's best" in markdown


def test_a_comparison_file_writes_a_ladder_down(corpus, tmp_path):
    written = tmp_path / "ladder.yaml"
    written.write_text(
        "models: [Vanilla]\nladder:\n  - model.n_embd=8,16,24\n  - model.n_head=2,2,4\ntokens_per_param: 2\n"
        f"set: {json.dumps(tiny(corpus))}\n"
    )
    from cleangpt_core.experiments.comparison_file import comparison_options

    from_file = build_plan(tmp_path, **comparison_options(written, {}))
    options = dict(models=["Vanilla"], overrides=tiny(corpus), tokens_per_param=2)
    assert from_file == build_plan(tmp_path, ladder=["model.n_embd=8,16,24", "model.n_head=2,2,4"], **options)


def test_the_ladder_plot_labels_its_axes_with_plain_numbers():
    """Issue 36: the loss axis read "2.8×10⁰" (matplotlib's log labels within one decade)."""
    from cleangpt_core.experiments.ladder_report import ladder_figure

    rows = [
        {"contender": "a", "flops": flops, "val_losses": [loss, loss + 0.01]}
        for flops, loss in ((1e12, 3.1), (4e12, 2.8), (1.6e13, 2.5))
    ]
    figure = ladder_figure({"rungs": rows, "contenders": {"a": {"fit": {"E": 1.0, "A": 60.0, "alpha": 0.1}}}})
    figure.canvas.draw()
    axes = figure.axes[0]
    labels = [label.get_text() for axis in (axes.xaxis, axes.yaxis) for label in axis.get_ticklabels(which="both")]
    shown = [label for label in labels if label]
    assert shown and not [label for label in shown if "times" in label or "×" in label or "^" in label]
    assert "3" in shown or "2.5" in shown or "2" in shown  # a loss as the number it is
