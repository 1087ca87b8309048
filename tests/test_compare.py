"""`cleangpt compare`: the same data, seed and budget for every run, a report, and resuming an interruption."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.compare import (
    RESULT_FILE,
    RUNS_DIR,
    build_plan,
    load_plan,
    prepare_directory,
    run_comparison,
)
from cleangpt_core.compare_report import write_report
from cleangpt_core.errors import CleanGPTError, ConfigError
from cleangpt_core.utils import tinyshakespeare_text

STEPS = 6
TINY = [
    "model.n_layer=2",
    "model.n_head=2",
    "model.n_embd=32",
    "model.block_size=32",
    "data.batch_size=4",
    "trainer.warmup_steps=1",
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
    overrides = [f"data.dataset={corpus}", "trainer.warmup_steps=1"]
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
        ({"models": ["Vanilla"]}, "at least two runs"),
        ({"models": ["Vanilla", "SASP"], "max_steps": 5, "max_tokens": 500}, "not both"),
        ({"models": ["Vanilla", "Transformer"], "max_steps": 5}, "unknown architecture 'Transformer'"),
        ({"models": ["Vanilla", "SASP"], "max_steps": 5, "overrides": ["model.n_head=3"]}, "not divisible"),
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


@pytest.fixture(scope="module")
def straight_comparison(corpus, tmp_path_factory):
    """`cleangpt compare --model Vanilla --model SASP` of two tiny models, run once, never interrupted."""
    out = tmp_path_factory.mktemp("compare")
    arguments = ["compare", "--model", "Vanilla", "--model", "SASP", "--max-steps", str(STEPS), "--out", str(out)]
    for override in tiny(corpus):
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    return out, result.output


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
    assert "[1/2] Vanilla: step 3/6" in output and "[2/2] SASP: step 6, validation loss" in output
    assert "| SASP | SASP |" in output


class InterruptAt:
    """Presses Ctrl-C in the middle of one run, after its first checkpoint."""

    def __init__(self, label: str, step: int, press: Callable[[], None]) -> None:
        self.label, self.step, self.press = label, step, press

    def on_step_end(self, trainer, step):
        if Path(trainer.output_dir).name == self.label and step == self.step:
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
    assert "resuming from" in result.output and "step-00000003" in result.output  # SASP's last checkpoint
    assert vanilla_result.stat().st_mtime_ns == finished_at  # not trained again

    resumed = json.loads((tmp_path / "report.json").read_text())["runs"]
    straight = json.loads((straight_comparison[0] / "report.json").read_text())["runs"]
    for after_interruption, uninterrupted in zip(resumed, straight, strict=True):
        for key in ("label", "parameters", "steps", "tokens", "train_loss", "val_loss", "val_curve"):
            assert after_interruption[key] == uninterrupted[key], key


def test_the_report_says_how_throughput_was_measured_and_under_what_load(tmp_path):
    results = [
        {"label": label, "model_type": label, "parameters": 10, "tokens_per_s": speed, "train_loss": 2.0,
         "val_loss": loss, "wall_s": 3.0, "tokens_per_step": 128, "val_curve": [[6, loss]], "load_average": load}
        for label, speed, loss, load in (("Vanilla", 900.0, 1.9, [0.5, 3.2]), ("SASP", 1000.0, 2.0, [3.1, 3.0]))
    ]
    paths = write_report(tmp_path, results, {"dataset": "tinyshakespeare", "seed": 1, "tokens_per_run": 768})
    markdown = paths["markdown"].read_text()
    assert "tokens/s counts training steps only and was measured while each run trained alone" in markdown
    assert "(1-minute load average before -> after each run: Vanilla 0.50 -> 3.20; SASP 3.10 -> 3.00)" in markdown
    assert "benchmarks/bench_train_step.py" in markdown
