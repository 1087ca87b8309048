"""`cleangpt compare`: the same data, seed and budget for every run, a report, and resuming an interruption.

With --seeds and --target-loss: the figures are checked against their definitions on results written by
hand, the plan without training, and the command end to end on two tiny models with two seeds each,
including an interruption and its resume.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy import stats

from cleangpt_core.cli.main import cli
from cleangpt_core.errors import CleanGPTError, ConfigError
from cleangpt_core.experiments.comparison_file import comparison_options
from cleangpt_core.experiments.execution import RESULT_FILE, run_comparison
from cleangpt_core.experiments.plan import PLAN_FILE, RUNS_DIR, load_plan, prepare_directory
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.experiments.report import write_report
from cleangpt_core.experiments.summary import curve_band, spread_verdicts, summarize, tokens_to_target
from cleangpt_core.experiments.training_run import run_level_trainer_options
from cleangpt_core.utils import tinyshakespeare_text

CONFIGS = Path(__file__).parents[1] / "configs"
STEPS = 6
TINY = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "data.batch_size=4",
    "schedule.warmup_steps=1",
    "trainer.eval_interval=3",
    "trainer.checkpoint_interval=3",
    "trainer.log_interval=3",
    "trainer.progress_bar=false",
    "output.sample_tokens=0",
    "device=cpu",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 30,000 characters of Tiny Shakespeare: enough for 6 steps and a quick evaluation."""
    path = tmp_path_factory.mktemp("data") / "shakespeare.txt"
    path.write_text(tinyshakespeare_text()[:30_000], encoding="utf-8")
    return path


def tiny(corpus: Path, *extra: str) -> list[str]:
    return [*TINY, f"data.dataset={corpus}", *extra]


def write_config(path: Path, block_size: int, seed: int = 1337) -> Path:
    path.write_text(
        f"seed: {seed}\ndata: {{batch_size: 12}}\n"
        f"model: {{n_layer: 1, n_head: 2, n_embd: 16, block_size: {block_size}}}\n"
    )
    return path


# -- the plan: what is compared, checked before anything trains ------------------------------------------


def test_every_model_gets_the_same_budget_and_its_own_run_directory(corpus, tmp_path):
    plan = build_plan(tmp_path, models=["vanilla", "sasp"], overrides=tiny(corpus), max_steps=STEPS)
    assert [run.label for run in plan.runs] == ["Vanilla", "SASP"]
    assert plan.max_steps == {"Vanilla": STEPS, "SASP": STEPS}
    assert plan.tokens_per_run == STEPS * 4 * 32
    for run in plan.runs:
        config = run.load()
        assert config.model.model_type == run.label
        assert config.output.dir == tmp_path.resolve() / RUNS_DIR / run.label
        assert config.trainer.options["max_steps"] == STEPS


def test_a_token_budget_gives_runs_with_other_batch_shapes_as_many_tokens(corpus, tmp_path):
    configs = [write_config(tmp_path / "short.yaml", 16), write_config(tmp_path / "long.yaml", 64)]
    overrides = [f"data.dataset={corpus}", "schedule.warmup_steps=1"]
    plan = build_plan(tmp_path / "out", config_files=configs, overrides=overrides, max_tokens=12 * 64 * 10)
    assert plan.max_steps == {"short": 40, "long": 10}
    uneven = build_plan(tmp_path / "out", config_files=configs, overrides=overrides, max_tokens=1000)
    assert uneven.max_steps == {"short": 6, "long": 2}  # each run gets at least the budget, in whole steps
    with pytest.raises(ConfigError, match=r"different numbers of tokens \(short: 1,920, long: 7,680\).*--max-tokens"):
        build_plan(tmp_path / "out", config_files=configs, overrides=overrides, max_steps=10)


def test_runs_must_share_seed_and_data(corpus, tmp_path):
    configs = [write_config(tmp_path / "a.yaml", 32, seed=1), write_config(tmp_path / "b.yaml", 32, seed=2)]
    with pytest.raises(ConfigError, match="differ in 'seed'"):
        build_plan(tmp_path / "out", config_files=configs, overrides=[f"data.dataset={corpus}"], max_steps=STEPS)


def test_the_same_model_twice_gets_numbered_labels(corpus, tmp_path):
    plan = build_plan(tmp_path, models=["Vanilla", "Vanilla"], overrides=tiny(corpus), max_steps=STEPS)
    assert [run.label for run in plan.runs] == ["Vanilla", "Vanilla-2"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"models": ["Vanilla"]}, "at least two runs: give two or more --model or --config, or --seeds 2"),
        ({"models": ["Vanilla", "SASP"], "max_steps": 5, "max_tokens": 500}, "not both"),
        ({"models": ["Vanilla", "Transformer"], "max_steps": 5}, "unknown architecture 'Transformer'"),
        ({"models": ["Vanilla", "SASP"], "max_steps": 5, "overrides": ["model.n_head=3"]}, "not divisible"),
        (  # a schedule that only fails once the run's length is known still fails before the first run
            {"models": ["Vanilla", "SASP"], "max_steps": 5, "overrides": ["schedule.warmup_steps=10"]},
            "warmup_steps=10 leaves no room to decay within 5 steps",
        ),
    ],
)
def test_an_impossible_comparison_fails_before_training(options, message, corpus, tmp_path):
    options = {**options, "overrides": [*tiny(corpus), *options.get("overrides", [])]}
    with pytest.raises(CleanGPTError, match=message):
        build_plan(tmp_path, **options)
    assert not (tmp_path / "compare.json").exists()


def test_a_folder_holding_another_comparison_is_not_reused(corpus, tmp_path):
    prepare_directory(tmp_path, build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=6))
    other = build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=7)
    with pytest.raises(ConfigError, match="holds a different comparison"):
        prepare_directory(tmp_path, other)


def test_a_config_file_changed_since_the_start_is_refused_on_resume(corpus, tmp_path):
    config = write_config(tmp_path / "base.yaml", 32)
    out = tmp_path / "out"
    plan = build_plan(out, models=["Vanilla", "SASP"], config_files=[config], overrides=tiny(corpus), max_steps=STEPS)
    prepare_directory(out, plan)
    assert load_plan(out) == plan
    write_config(config, 32, seed=7)
    with pytest.raises(ConfigError, match="changed since the comparison started"):
        load_plan(out)


def test_the_command_rejects_resume_with_other_options(tmp_path):
    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path), "--model", "Vanilla"])
    assert result.exit_code == 2
    assert "give no other options" in result.output


# -- end to end -------------------------------------------------------------------------------------------


def compare_tiny_models(corpus: Path, out: Path, *options: str) -> tuple[Path, str]:
    """`cleangpt compare --model Vanilla --model SASP` of two tiny models into `out`; its folder and output."""
    arguments = ["compare", "--model", "Vanilla", "--model", "SASP", "--max-steps", str(STEPS), "--out", str(out)]
    for override in tiny(corpus):
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, [*arguments, *options])
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def straight_comparison(corpus, tmp_path_factory):
    """Two tiny models compared once, never interrupted."""
    return compare_tiny_models(corpus, tmp_path_factory.mktemp("compare"))


@pytest.mark.slow
def test_compare_reports_every_run_in_json_markdown_and_one_plot(straight_comparison):
    out, output = straight_comparison
    report = json.loads((out / "report.json").read_text())
    assert (report["dataset"].endswith("shakespeare.txt"), report["seed"], report["tokens_per_run"]) == (
        True,
        1337,
        STEPS * 4 * 32,
    )
    runs = {run["label"]: run for run in report["runs"]}
    assert list(runs) == ["Vanilla", "SASP"]
    for label, run in runs.items():
        assert run["model_type"] == label
        assert run["steps"] == STEPS and run["tokens"] == STEPS * 4 * 32
        assert run["parameters"] > 0
        assert run["tokens_per_s"] > 0 and run["wall_s"] > 0
        assert math.isfinite(run["train_loss"]) and math.isfinite(run["val_loss"])
        assert [step for step, _ in run["val_curve"]] == [3, 6]  # at step 6 the final, full evaluation
        assert run["val_curve"][-1][1] == run["val_loss"]
    assert runs["SASP"]["parameters"] < runs["Vanilla"]["parameters"]  # no value or projection matrices

    markdown = (out / "report.md").read_text()
    assert "| run | model | parameters | tokens/s | mean train loss | val loss | wall time |" in markdown
    assert f"| Vanilla | Vanilla | {runs['Vanilla']['parameters']:,} |" in markdown
    assert f"| SASP | SASP | {runs['SASP']['parameters']:,} |" in markdown
    assert "![Validation loss of every run](val_loss.png)" in markdown
    assert "measured while each run trained alone, one after another, not side by side" in markdown
    for run in runs.values():
        assert len(run["load_average"]) == 2
        assert f"{run['label']} {run['load_average'][0]:,.2f} -> " in markdown
    assert (out / "val_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # progress while it ran, and the table at the end
    assert "[1/2] Vanilla: step 3/6: validation loss" in output and "[2/2] SASP: step 6/6: validation loss" in output
    assert "| SASP | SASP |" in output


class InterruptAt:
    """Presses Ctrl-C in the middle of one run (its directory under runs/), after its first checkpoint."""

    def __init__(self, directory: str, step: int, press: Callable[[], None]) -> None:
        self.directory, self.step, self.press = directory, step, press

    def on_step_end(self, trainer, step):
        if Path(trainer.output_dir).as_posix().endswith(f"/{self.directory}") and step == self.step:
            self.press()


@pytest.mark.slow
def test_an_interrupted_comparison_keeps_finished_runs_and_resumes_the_unfinished_one(
    straight_comparison, corpus, tmp_path, ctrl_c
):
    plan = build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS)
    prepare_directory(tmp_path, plan)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(plan, tmp_path, echo=lambda line: None, callbacks=[InterruptAt("SASP", 5, ctrl_c)])
    vanilla_result = tmp_path / RUNS_DIR / "Vanilla" / RESULT_FILE
    assert vanilla_result.is_file()
    assert not (tmp_path / RUNS_DIR / "SASP" / RESULT_FILE).exists()
    finished_at = vanilla_result.stat().st_mtime_ns

    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[1/2] Vanilla: finished earlier, kept" in result.output
    # the step Ctrl-C arrived in wrote a checkpoint of its own, between the every-3-steps ones
    assert "resuming from" in result.output and "SASP/checkpoints/step-00000005" in result.output
    assert vanilla_result.stat().st_mtime_ns == finished_at  # not trained again

    resumed = json.loads((tmp_path / "report.json").read_text())["runs"]
    straight = json.loads((straight_comparison[0] / "report.json").read_text())["runs"]
    for after_interruption, uninterrupted in zip(resumed, straight, strict=True):
        for key in ("label", "parameters", "steps", "tokens", "train_loss", "val_loss", "val_curve"):
            assert after_interruption[key] == uninterrupted[key], key


def test_the_report_says_how_throughput_was_measured_and_under_what_load(tmp_path):
    results = [
        {
            "label": label,
            "model_type": label,
            "parameters": 10,
            "tokens_per_s": speed,
            "train_loss": 2.0,
            "val_loss": loss,
            "wall_s": 3.0,
            "tokens_per_step": 128,
            "val_curve": [[6, loss]],
            "load_average": load,
        }
        for label, speed, loss, load in (("Vanilla", 900.0, 1.9, [0.5, 3.2]), ("SASP", 1000.0, 2.0, [3.1, 3.0]))
    ]
    paths = write_report(tmp_path, results, {"dataset": "tinyshakespeare", "seed": 1, "tokens_per_run": 768})
    markdown = paths["markdown"].read_text()
    assert "tokens/s counts training steps only and was measured while each run trained alone" in markdown
    assert "(1-minute load average before -> after each run: Vanilla 0.50 -> 3.20; SASP 3.10 -> 3.00)" in markdown
    assert "benchmarks/bench_train_step.py" in markdown


def run_result(label: str, seed: int, curve: list[tuple[int, float]], per_step: int = 100) -> dict:
    """A run's result as `train_run` saves it, with only what the summary reads."""
    return {
        "label": label,
        "seed": seed,
        "model_type": "Vanilla",
        "parameters": 1000,
        "all_parameters": 1200,
        "steps": curve[-1][0],
        "tokens": curve[-1][0] * per_step,
        "tokens_per_step": per_step,
        "train_loss": curve[-1][1] + 0.1,
        "val_loss": curve[-1][1],
        "tokens_per_s": 500.0,
        "wall_s": 2.0,
        "load_average": [0.5, 0.6],
        "eval_interval": curve[0][0],
        "eval_max_batches": None,
        "val_curve": [list(point) for point in curve],
    }


# -- the figures, on results written by hand -----------------------------------------------------------


def test_tokens_to_target_is_the_first_evaluation_at_or_below_it_without_interpolation():
    run = run_result("a", 1, [(10, 2.5), (20, 1.9), (30, 1.95), (40, 1.8)])
    assert tokens_to_target(run, 1.9) == {"step": 20, "tokens": 2000}  # at the target counts as reaching it
    assert tokens_to_target(run, 2.0) == {"step": 20, "tokens": 2000}  # not 1,600 interpolated from 2.5 -> 1.9
    assert tokens_to_target(run, 1.85) == {"step": 40, "tokens": 4000}  # the later rise does not count
    assert tokens_to_target(run, 1.7) is None


def test_a_contender_is_the_mean_and_sample_spread_of_its_seeds_and_counts_the_seeds_reaching_the_target():
    runs = [
        run_result("a", 1, [(10, 2.4), (20, 2.0)]),
        run_result("a", 2, [(10, 2.2), (20, 1.8)]),
        run_result("a", 3, [(10, 2.1), (20, 1.7)]),
        run_result("b", 1, [(5, 3.0), (10, 2.9)], per_step=200),
    ]
    a, b = summarize(runs, target=2.15)
    assert a["seeds"] == [1, 2, 3] and b["seeds"] == [1]
    assert a["val_loss_mean"] == pytest.approx(1.8333333)
    assert a["val_loss_std"] == pytest.approx(statistics.stdev([2.0, 1.8, 1.7]))  # n - 1 in the denominator
    assert (a["val_loss_min"], a["val_loss_max"]) == (1.7, 2.0)
    assert a["target"]["reached"] == 3 and a["target"]["runs"] == 3
    assert a["target"]["per_seed"] == [
        {"step": 20, "tokens": 2000},
        {"step": 20, "tokens": 2000},
        {"step": 10, "tokens": 1000},
    ]
    assert a["target"]["tokens_mean"] == pytest.approx(5000 / 3)
    assert a["target"]["steps_mean"] == pytest.approx(50 / 3)
    assert b["val_loss_std"] is None  # one seed has no spread
    assert b["target"]["reached"] == 0 and b["target"]["tokens_mean"] is None
    assert a["val_curve_band"] == [
        [1000, pytest.approx(2.2333333), 2.1, 2.4],
        [2000, pytest.approx(1.8333333), 1.7, 2.0],
    ]


def test_the_band_covers_only_evaluations_every_seed_made():
    runs = [run_result("a", 1, [(10, 2.0), (20, 1.8), (30, 1.7)]), run_result("a", 2, [(10, 2.2), (30, 1.9)])]
    assert curve_band(runs) == [[1000, pytest.approx(2.1), 2.0, 2.2], [3000, pytest.approx(1.8), 1.7, 1.9]]


def test_a_gap_below_the_larger_standard_deviation_is_within_the_seed_spread():
    summaries = summarize(
        [
            run_result("close", 1, [(10, 1.90)]),
            run_result("close", 2, [(10, 2.10)]),  # mean 2.00, std 0.141
            run_result("best", 1, [(10, 1.89)]),
            run_result("best", 2, [(10, 1.91)]),  # mean 1.90, std 0.014
            run_result("far", 1, [(10, 2.50)]),
            run_result("far", 2, [(10, 2.52)]),  # mean 2.51, std 0.014
            run_result("alone", 1, [(10, 1.0)]),  # one seed: no spread, no verdict
        ]
    )
    verdicts = {(v["better"], v["worse"]): v for v in spread_verdicts(summaries)}
    assert set(verdicts) == {("best", "close"), ("best", "far"), ("close", "far")}
    assert verdicts[("best", "close")]["within_spread"] is True
    assert verdicts[("best", "close")]["gap"] == pytest.approx(0.1)
    assert verdicts[("best", "close")]["spread"] == pytest.approx(statistics.stdev([1.9, 2.1]))
    assert verdicts[("best", "far")]["within_spread"] is False
    assert verdicts[("close", "far")]["within_spread"] is False


def test_the_report_gives_mean_spread_tokens_to_target_and_the_spread_statement(tmp_path):
    runs = [
        run_result("base", 1, [(10, 2.4), (20, 2.0)]),
        run_result("base", 2, [(10, 2.3), (20, 2.2)]),
        run_result("new", 1, [(10, 2.0), (20, 1.6)]),
        run_result("new", 2, [(10, 1.9), (20, 1.62)]),
    ]
    paths = write_report(tmp_path, runs, {"dataset": "tinyshakespeare", "seed": 1, "tokens_per_run": 2000}, 2.1)
    markdown = paths["markdown"].read_text()
    assert "Every contender trained with 2 seeds (1, 2;" in markdown
    assert (
        "| contender | model | parameters | all parameters | tokens per run | seeds | val loss (mean ± std) "
        "| val loss min – max "
        "| tokens to ≤ 2.1 (mean) | steps to ≤ 2.1 (mean) | seeds reaching it |" in markdown
    )
    assert (
        "| base | Vanilla | 1,000 | 1,200 | 2,000 | 2 | 2.1000 ± 0.1414 | 2.0000 – 2.2000 | 2,000 | 20.0 | 1/2 |"
        in markdown
    )
    assert (
        "| new | Vanilla | 1,000 | 1,200 | 2,000 | 2 | **1.6100 ± 0.0141** | 1.6000 – 1.6200 | 1,000 | 10.0 | 2/2 |"
        in markdown
    )
    assert "first evaluation whose validation loss was at or below the target, not interpolated" in markdown
    assert "base every 1,000 tokens; new every 1,000 tokens" in markdown
    # two seeds a side: Welch's interval (scipy's ttest_ind, equal_var=False), within noise
    welch = stats.ttest_ind([2.0, 2.2], [1.6, 1.62], equal_var=False)
    low, high = welch.confidence_interval(0.95)
    assert (
        f"- new vs base: new's mean validation loss is lower by 0.4900 [{low:.4f}, {high:.4f}] (Welch, Holm's p "
        f"{welch.pvalue:.3g}): within noise, these seeds do not tell the two apart." in markdown
    )
    assert "| base | 2 | Vanilla | 1,000 | 500 | 2.3000 | 2.2000 | not reached | 2.0 s |" in markdown  # every run
    report = json.loads(paths["json"].read_text())
    assert report["target_loss"] == 2.1
    assert [c["label"] for c in report["contenders"]] == ["base", "new"]
    assert report["spread"] == [
        {
            "better": "new",
            "worse": "base",
            "gap": pytest.approx(0.49),
            "spread": pytest.approx(0.1414, abs=1e-4),
            "within_spread": False,
        }
    ]
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_seed_keeps_the_one_row_per_run_report_and_adds_the_target_column(tmp_path):
    runs = [run_result("a", 1, [(10, 2.4), (20, 2.0)]), run_result("b", 1, [(10, 2.3), (20, 2.2)])]
    paths = write_report(tmp_path, runs, {"dataset": "tinyshakespeare", "seed": 1, "tokens_per_run": 2000}, 2.3)
    markdown = paths["markdown"].read_text()
    assert (
        "| run | model | parameters | tokens/s | mean train loss | val loss | tokens to ≤ 2.3 | wall time |" in markdown
    )
    assert "| a | Vanilla | 1,000 | 500 | 2.1000 | **2.0000** | 2,000 (step 20) | 2.0 s |" in markdown
    assert "| b | Vanilla | 1,000 | 500 | 2.3000 | 2.2000 | 1,000 (step 10) | 2.0 s |" in markdown
    assert "seed spread" not in markdown and "## Every run" not in markdown


# -- the plan ------------------------------------------------------------------------------------------------


def test_every_contender_gets_a_run_per_seed_that_seeds_initialisation_and_data_order(corpus, tmp_path):
    plan = build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS, seeds=3)
    assert plan.labels == ["Vanilla", "SASP"] and plan.seeds == 3
    assert [(run.label, run.seed, run.directory) for run in plan.runs] == [
        (label, seed, f"{label}/seed-{seed}") for label in ("Vanilla", "SASP") for seed in (1337, 1338, 1339)
    ]
    assert plan.max_steps == {"Vanilla": STEPS, "SASP": STEPS}
    for run in plan.runs:
        config = run.load()
        assert config.seed == run.seed and run_level_trainer_options(config)["seed"] == run.seed
        assert config.output.dir == tmp_path.resolve() / RUNS_DIR / run.directory
    from_seven = build_plan(
        tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS, seed=7, seeds=2
    )
    assert [run.seed for run in from_seven.runs] == [7, 8, 7, 8]


def test_eval_tokens_gives_runs_with_other_batch_shapes_the_same_evaluation_cadence_in_tokens(corpus, tmp_path):
    overrides = [f"data.dataset={corpus}", "model.n_layer=1", "model.n_embd=16", "model.n_head=2"]
    configs = [CONFIGS / "shakespeare_char.yaml", CONFIGS / "default.yaml"]  # batch 12 x 64 and 16 x 64
    plan = build_plan(tmp_path, config_files=configs, overrides=overrides, max_tokens=1_536_000, eval_tokens=25_000)
    assert plan.labels == ["shakespeare_char", "default"]  # the config files' stems
    assert plan.max_steps == {"shakespeare_char": 2000, "default": 1500}  # nanoGPT's 2000 x 768 tokens for both
    intervals = {run.label: run.load().trainer.options["eval_interval"] for run in plan.runs}
    assert intervals == {"shakespeare_char": 33, "default": 25}  # 25,344 and 25,600 tokens: whole steps, rounded up
    with pytest.raises(ConfigError, match="--eval-tokens or --set trainer.eval_interval"):
        build_plan(
            tmp_path,
            config_files=configs,
            overrides=[*overrides, "trainer.eval_interval=5"],
            max_steps=9,
            eval_tokens=1000,
        )


def test_contenders_may_differ_in_how_data_is_fed_but_not_in_the_text_or_its_split(corpus, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("data: {val_fraction: 0.2}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"differ in 'data.val_fraction'.*only how the data is fed may differ"):
        build_plan(
            tmp_path,
            config_files=[CONFIGS / "default.yaml", other],
            overrides=[f"data.dataset={corpus}"],
            max_tokens=1000,
        )


def test_a_plan_written_before_seeds_loads_as_one_seed_and_resumes_with_the_same_command(corpus, tmp_path):
    plan = build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS)
    version_1 = {
        "version": 1,
        "tokens_per_run": plan.tokens_per_run,
        "runs": [
            {
                "label": run.label,
                "config_file": run.config_file,
                "overrides": list(run.overrides),
                "max_steps": plan.max_steps[run.label],
                "config": plan.configs[run.directory],
            }
            for run in plan.runs
        ],
    }
    (tmp_path / PLAN_FILE).write_text(json.dumps(version_1), encoding="utf-8")
    assert load_plan(tmp_path) == plan
    assert prepare_directory(tmp_path, plan) is True  # the same comparison: resumed, not refused
    assert json.loads((tmp_path / PLAN_FILE).read_text())["version"] == 4


def test_a_plan_of_an_unknown_version_is_refused_in_one_line(tmp_path):
    (tmp_path / PLAN_FILE).write_text(json.dumps({"version": 99, "runs": []}), encoding="utf-8")
    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {tmp_path / PLAN_FILE} has format version 99; this cleanGPT reads versions 1, 2, 3, 4: start the "
        "comparison again with another --out"
    ]


def test_a_new_target_is_the_same_comparison_and_is_recorded(corpus, tmp_path):
    plan = build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS, seeds=2)
    assert prepare_directory(tmp_path, plan) is False
    retargeted = build_plan(
        tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS, seeds=2, target_loss=3.5
    )
    assert prepare_directory(tmp_path, retargeted) is True
    assert load_plan(tmp_path).target_loss == 3.5
    three_seeds = build_plan(tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS, seeds=3)
    with pytest.raises(ConfigError, match="holds a different comparison"):
        prepare_directory(tmp_path, three_seeds)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--seeds", "0"], "--seeds must be at least 1 (runs per contender), got 0"),
        (["--target-loss", "-1"], "--target-loss must be a positive validation loss, got -1.0"),
        (["--target-loss", "nan"], "--target-loss must be a positive validation loss, got nan"),
        (["--eval-tokens", "0"], "--eval-tokens must be at least 1, got 0"),
    ],
)
def test_the_command_rejects_a_bad_value_in_one_line_before_writing_anything(option, message, tmp_path):
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--model", "SASP", "--max-steps", "2", "--out", str(out), *option]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {message}"]
    assert not out.exists()


def test_resume_takes_a_new_target_but_no_other_option(tmp_path):
    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path), "--seeds", "2", "--max-steps", "3"])
    assert result.exit_code == 2
    assert "give no other options but --target-loss (got --max-steps, --seeds)" in result.output
    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path), "--target-loss", "0"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["Error: --target-loss must be a positive validation loss, got 0.0"]


# -- end to end ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded_comparison(corpus, tmp_path_factory):
    """The two tiny models compared with two seeds each and a target every run reaches, never interrupted."""
    return compare_tiny_models(corpus, tmp_path_factory.mktemp("seeded"), "--seeds", "2", "--target-loss", "100")


@pytest.mark.slow
def test_one_model_over_two_seeds_reports_its_own_spread(corpus, tmp_path):
    """A single contender is a comparison of its seeds: how far apart two runs of one recipe land."""
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", str(STEPS), "--out", str(tmp_path)]
    for override in tiny(corpus):
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [(run["label"], run["seed"]) for run in report["runs"]] == [("Vanilla", 1337), ("Vanilla", 1338)]
    (contender,) = report["contenders"]
    losses = [run["val_loss"] for run in report["runs"]]
    assert contender["val_loss_std"] == pytest.approx(statistics.stdev(losses)) and contender["val_loss_std"] > 0
    assert (tmp_path / "report.md").is_file() and (tmp_path / "val_loss.png").is_file()


@pytest.mark.slow
def test_compare_with_two_seeds_reports_mean_spread_and_tokens_to_target(seeded_comparison):
    out, output = seeded_comparison
    report = json.loads((out / "report.json").read_text())
    runs = report["runs"]
    assert [(run["label"], run["seed"]) for run in runs] == [
        ("Vanilla", 1337),
        ("Vanilla", 1338),
        ("SASP", 1337),
        ("SASP", 1338),
    ]
    for run in runs:
        assert (out / RUNS_DIR / run["label"] / f"seed-{run['seed']}" / RESULT_FILE).is_file()
        saved = json.loads(Path(run["checkpoint"], "experiment.json").read_text())
        assert saved["seed"] == run["seed"] and "seed" not in saved["trainer"]  # the one seed
        assert [step for step, _ in run["val_curve"]] == [3, 6]
    vanilla = [run for run in runs if run["label"] == "Vanilla"]
    assert vanilla[0]["val_loss"] != vanilla[1]["val_loss"]  # another seed, another run
    assert vanilla[0]["all_parameters"] - vanilla[0]["parameters"] == 32 * 32  # the learned position embeddings
    contenders = {c["label"]: c for c in report["contenders"]}
    losses = [run["val_loss"] for run in vanilla]
    assert contenders["Vanilla"]["val_loss_mean"] == pytest.approx(statistics.fmean(losses))
    assert contenders["Vanilla"]["val_loss_std"] == pytest.approx(statistics.stdev(losses))
    # every loss is below 100: each run reaches it at its first evaluation, after 3 steps of 4 x 32 tokens
    assert contenders["SASP"]["target"] | {"per_seed": None} == {
        "loss": 100.0,
        "reached": 2,
        "runs": 2,
        "per_seed": None,
        "tokens_mean": 384.0,
        "steps_mean": 3.0,
    }
    [verdict] = report["spread"]
    markdown = (out / "report.md").read_text()
    assert f"{contenders['Vanilla']['val_loss_mean']:.4f} ± {contenders['Vanilla']['val_loss_std']:.4f}" in markdown
    scored = sorted({run["val_tokens"] for run in runs})
    assert f"final validation losses (the final evaluation scored {scored[0]:,}" in markdown  # not "every token"
    assert "| tokens to ≤ 100 (mean) | steps to ≤ 100 (mean) | seeds reaching it |" in markdown
    [judged] = report["verdicts"]  # the calibrated verdict the report prints; "spread" stays for old readers
    assert (judged["better"], judged["worse"]) == (verdict["better"], verdict["worse"])
    assert judged["gap"] == pytest.approx(verdict["gap"]) and judged["verdict"] in ("better", "within noise")
    better, worse = judged["better"], judged["worse"]
    assert f"- {better} vs {worse}: {better}'s mean validation loss is lower by" in markdown
    assert "[4/4] SASP seed 1338: step 6/6" in output and "2 seeds each" in output


@pytest.mark.slow
def test_a_new_target_on_resume_rewrites_the_report_without_training(seeded_comparison, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(seeded_comparison[0], out)
    runs = json.loads((out / "report.json").read_text())["runs"]
    vanilla = sorted((run for run in runs if run["label"] == "Vanilla"), key=lowest_loss)
    assert lowest_loss(vanilla[0]) < lowest_loss(vanilla[1])
    # between the two seeds' lowest losses: one seed reaches it, the other never does
    target = (lowest_loss(vanilla[0]) + lowest_loss(vanilla[1])) / 2
    result = CliRunner().invoke(cli, ["compare", "--resume", str(out), "--target-loss", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.count("finished earlier, kept") == 4
    contender = {c["label"]: c for c in json.loads((out / "report.json").read_text())["contenders"]}["Vanilla"]
    hit = tokens_to_target(vanilla[0], target)
    assert hit is not None and tokens_to_target(vanilla[1], target) is None
    assert (contender["target"]["reached"], contender["target"]["tokens_mean"]) == (1, hit["tokens"])
    assert "not reached" in (out / "report.md").read_text()
    assert load_plan(out).target_loss == target


def lowest_loss(run: dict) -> float:
    return min(loss for _, loss in run["val_curve"])


@pytest.mark.slow
def test_an_interrupted_seeded_comparison_keeps_finished_runs_and_resumes_the_unfinished_one(
    seeded_comparison, corpus, tmp_path, ctrl_c
):
    plan = build_plan(
        tmp_path, models=["Vanilla", "SASP"], overrides=tiny(corpus), max_steps=STEPS, seeds=2, target_loss=100
    )
    prepare_directory(tmp_path, plan)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(plan, tmp_path, echo=lambda line: None, callbacks=[InterruptAt("Vanilla/seed-1338", 5, ctrl_c)])
    first = tmp_path / RUNS_DIR / "Vanilla" / "seed-1337" / RESULT_FILE
    assert first.is_file() and not (tmp_path / RUNS_DIR / "Vanilla" / "seed-1338" / RESULT_FILE).exists()
    finished_at = first.stat().st_mtime_ns

    result = CliRunner().invoke(cli, ["compare", "--resume", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "[1/4] Vanilla seed 1337: finished earlier, kept" in result.output
    assert "resuming from" in result.output and "seed-1338/checkpoints/step-00000005" in result.output
    assert first.stat().st_mtime_ns == finished_at  # not trained again

    resumed = json.loads((tmp_path / "report.json").read_text())
    straight = json.loads((seeded_comparison[0] / "report.json").read_text())
    for after_interruption, uninterrupted in zip(resumed["runs"], straight["runs"], strict=True):
        for key in ("label", "seed", "parameters", "steps", "tokens", "train_loss", "val_loss", "val_curve"):
            assert after_interruption[key] == uninterrupted[key], key
    figures = ("val_loss_mean", "val_loss_std", "target", "val_curve_band")
    assert [{key: c[key] for key in figures} for c in resumed["contenders"]] == [
        {key: c[key] for key in figures} for c in straight["contenders"]
    ]


def write_comparison(folder: Path, text: str) -> Path:
    """A comparison file beside copies of the nanoGPT and default recipes, which it names relative to itself."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("shakespeare_char.yaml", "default.yaml"):
        shutil.copy(CONFIGS / name, folder / name)
    path = folder / "comparison.yaml"
    path.write_text(text, encoding="utf-8")
    return path


RECORD = """\
configs: [shakespeare_char.yaml, default.yaml]
max_tokens: 3000
eval_tokens: 1536
seeds: 2
target_loss: 100
set: [model.n_layer=1, model.n_head=2, model.n_embd=16, model.block_size=32]
"""


def test_a_comparison_file_gives_the_options_and_the_command_line_adds_or_replaces(corpus, tmp_path, monkeypatch):
    path = write_comparison(tmp_path / "record", RECORD)
    monkeypatch.chdir(tmp_path)  # its configs are found beside it, not in the working directory
    overrides = (f"data.dataset={corpus}", "schedule.warmup_steps=1")  # the file's budget is a few steps
    command_line = {"overrides": overrides, "seeds": 3, "target_loss": None}
    options = comparison_options(Path("record/comparison.yaml"), command_line, given=["overrides", "seeds"])
    assert options["config_files"] == [Path("record/shakespeare_char.yaml"), Path("record/default.yaml")]
    assert options["overrides"][-2:] == list(overrides)  # after the file's
    assert (options["seeds"], options["target_loss"], options["eval_tokens"]) == (3, 100.0, 1536)
    plan = build_plan(tmp_path / "out", **options)
    assert plan.labels == ["shakespeare_char", "default"] and plan.seeds == 3 and plan.target_loss == 100
    assert plan.runs[0].config_file == str(path.parent.resolve() / "shakespeare_char.yaml")


def test_a_comparison_file_with_an_unknown_option_is_one_line_naming_it(tmp_path):
    path = write_comparison(tmp_path, "configs: [default.yaml]\ntarget-loss: 1.9\n")
    result = CliRunner().invoke(cli, ["compare", "--comparison", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert f"comparison file {str(path)!r}" in line and "did you mean 'target_loss'?" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_nanogpt_and_default_recipes_compare_on_one_token_budget(corpus, tmp_path):
    """The record's contenders train 12 x 64 and 16 x 64 tokens a step; --max-tokens evens them out."""
    path = write_comparison(tmp_path / "record", RECORD.replace("seeds: 2", "seeds: 1"))
    arguments = ["compare", "--comparison", str(path), "--out", str(tmp_path / "out")]
    for override in [
        f"data.dataset={corpus}",
        "trainer.eval_max_batches=null",
        "schedule.warmup_steps=1",
        "trainer.progress_bar=false",
        "output.sample_tokens=0",
        "device=cpu",
    ]:
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    runs = {run["label"]: run for run in json.loads((tmp_path / "out" / "report.json").read_text())["runs"]}
    assert {label: (run["steps"], run["tokens"]) for label, run in runs.items()} == {
        "shakespeare_char": (8, 3072),  # 3,000 tokens rounded up to whole steps of 12 x 32
        "default": (6, 3072),  # and of 16 x 32
    }
    assert {label: [step for step, _ in run["val_curve"]] for label, run in runs.items()} == {
        "shakespeare_char": [4, 8],  # every 1,536 tokens
        "default": [3, 6],
    }
    assert "| shakespeare_char | Vanilla + bias=false |" in (tmp_path / "out" / "report.md").read_text()
