"""`cleangpt compare --tune`: a study per contender in an Optuna storage, shared out among worker processes.

Fast tests check the options (each bad one is one line, nothing written) and the grid; the slow ones train a
tiny model: a 3-point grid picks its lowest-loss point and retrains it on fresh seeds; two worker processes on
one storage train every trial once and report the very losses one worker does; a worker killed (SIGKILL) mid-
trial leaves that trial to another, which continues it from its checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from tiny_runs import TINY

from cleangpt_core.cli.main import cli
from cleangpt_core.experiments.tuning import yaml_number
from cleangpt_core.experiments.tuning_spec import parse_tune, tuning_spec
from cleangpt_core.utils import tinyshakespeare_text

GRID = ["--tune", "optimizer.lr=1e-3:1e-2:log", "--trials", "3", "--tune-sampler", "grid"]


def test_a_log_grid_is_geometric_and_ends_where_the_range_does():
    key = parse_tune("optimizer.lr=1e-3:1e-1:log")
    assert key.points(3) == [pytest.approx(1e-3), pytest.approx(1e-2), 1e-1]
    assert parse_tune("model.n_layer=2:6").points(3) == [2, 4, 6]
    spec = tuning_spec(["optimizer.lr=1e-3:1e-2", "model.n_layer=1:2"], trials=4, sampler="grid")
    assert spec.grid() == [
        {"optimizer.lr": 1e-3, "model.n_layer": 1},
        {"optimizer.lr": 1e-3, "model.n_layer": 2},
        {"optimizer.lr": 1e-2, "model.n_layer": 1},
        {"optimizer.lr": 1e-2, "model.n_layer": 2},
    ]


def test_a_setting_reads_back_as_the_same_number():
    import yaml

    for value in (1e-05, 0.0031622776601683794, 3, 2.5e20):
        assert yaml.safe_load(yaml_number(value)) == value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tune", "optimizer.lr"], "--tune 'optimizer.lr' must look like KEY=LOW:HIGH or KEY=LOW:HIGH:log"),
        (["--tune", "optimizer.lr=a:b", "--trials", "3"], "LOW and HIGH must be numbers"),
        (["--tune", "optimizer.lr=1e-2:1e-3", "--trials", "3"], "LOW must be below HIGH"),
        (["--tune", "optimizer.lr=0:1:log", "--trials", "3"], "a log range must be positive"),
        (["--tune", "optimizer.lr=1e-3:1e-2"], "--tune needs --trials N"),
        (["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "0"], "--trials must be at least 1, got 0"),
        (["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "3", "--tune-sampler", "cma"], "one of grid, tpe"),
        (
            [
                "--tune",
                "optimizer.lr=1e-3:1e-2",
                "--tune",
                "model.n_layer=1:3",
                "--trials",
                "3",
                "--tune-sampler",
                "grid",
            ],
            "--trials must be 4 or 9 or 16..., got 3",
        ),
        (["--tune", "model.n_layer=1:2", "--trials", "3", "--tune-sampler", "grid"], "would repeat whole numbers"),
        (["--trials", "3"], "--trials only apply with --tune"),
        (
            ["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "2", "--storage", "study.db"],
            "must be an Optuna storage URL",
        ),
        (["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "2", "--heartbeat", "0"], "--heartbeat must be at least 1"),
        (["--tune", "data.batch_size=2:8", "--trials", "2"], "is shared by every run of a comparison"),
        (["--tune", "model.n_head=3:4", "--trials", "2"], "contender 'Vanilla' at the low end: invalid experiment"),
        (["--tune", "optimizer.lrr=1e-3:1e-2", "--trials", "2"], "contender 'Vanilla' at the low end"),
        (["--worker"], "--worker joins a comparison already started"),
        (
            ["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "2", "--storage", "sqlite:////nonexistent/folder/s.db"],
            "--storage 'sqlite:////nonexistent/folder/s.db' cannot be opened",
        ),
    ],
)
def test_every_bad_tuning_option_is_one_line_and_nothing_is_written(options, message, tmp_path):
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "4", "--out", str(out)]
    for override in TINY:
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, [*arguments, *options])
    assert result.exit_code in (1, 2), result.output
    lines = [line for line in result.output.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()


# -- end to end ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "shakespeare.txt"
    path.write_text(tinyshakespeare_text()[:30_000], encoding="utf-8")
    return path


def tuned_command(corpus: Path, out: Path, *extra: str) -> list[str]:
    """One contender (Vanilla) over 2 seeds, its learning rate tuned over a 3-point grid first: 5 runs of 6 steps."""
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "6", *GRID, "--out", str(out)]
    for override in [*TINY, f"data.dataset={corpus}"]:
        arguments += ["--set", override]
    return [*arguments, *extra]


@pytest.fixture(scope="module")
def one_worker(corpus, tmp_path_factory):
    """The tuned comparison trained by one process."""
    out = tmp_path_factory.mktemp("one") / "out"
    result = CliRunner().invoke(cli, tuned_command(corpus, out))
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "report.json").read_text())


def losses(report: dict) -> dict:
    """Every loss a report holds: each trial's (and its runs') and each final run's, exactly."""
    tuning = report["tuning"]["contenders"]
    return {
        "trials": {
            label: [(t["slot"], t["params"], t["loss"], t["runs"]) for t in c["trials"]] for label, c in tuning.items()
        },
        "final": [(run["label"], run["seed"], run["val_loss"], run["val_curve"]) for run in report["runs"]],
    }


@pytest.mark.slow
def test_a_three_point_grid_picks_its_lowest_loss_and_retrains_it_on_fresh_seeds(one_worker):
    out, report = one_worker
    vanilla = report["tuning"]["contenders"]["Vanilla"]
    trials = vanilla["trials"]
    assert [t["params"]["optimizer.lr"] for t in trials] == [pytest.approx(1e-3), pytest.approx(10**-2.5), 1e-2]
    assert all(math.isfinite(t["loss"]) for t in trials)
    lowest = min(trials, key=lambda t: t["loss"])
    assert vanilla["best"]["slot"] == lowest["slot"]
    assert report["tuning"]["tune_seeds"] == {"Vanilla": [1339]}  # after the final runs' seeds 1337, 1338
    assert all(run["seed"] == 1339 for t in trials for run in t["runs"])
    for run in report["runs"]:
        assert run["seed"] in (1337, 1338)
        saved = json.loads(Path(run["checkpoint"], "experiment.json").read_text())
        assert saved["optimizer"]["lr"] == lowest["params"]["optimizer.lr"]
    for trial in trials:  # each trial is an ordinary run directory
        assert (out / "tuning" / "Vanilla" / trial["slot"] / "seed-1339" / "result.json").is_file()
    markdown = (out / "report.md").read_text()
    assert "## Tuning" in markdown and f"| Vanilla | optimizer.lr={lowest['params']['optimizer.lr']:.4g} |" in markdown
    assert (out / "tuning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    basin = vanilla["basin"]["optimizer.lr"]
    near = [t["params"]["optimizer.lr"] for t in trials if t["loss"] <= lowest["loss"] + 0.01]
    assert basin == [min(near), max(near)]


def start(arguments: list[str], log: Path) -> subprocess.Popen:
    """`cleangpt` in its own process, its output into `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "cleangpt_core", *arguments[0:]],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def trained_into(*logs: Path) -> list[str]:
    """Every run directory a process began training into (fresh or resumed), once per beginning."""
    text = "".join(log.read_text() for log in logs)
    return re.findall(r"trainer on .*?, into (\S+?)(?:,|$)", text, flags=re.M)


def wait_for(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def study_trials(out: Path) -> list[tuple[str, str, str, bool]]:
    """(study, slot, state, failed with a reason) of every trial in the comparison's SQLite storage."""
    import optuna

    storage = f"sqlite:///{out / 'study.db'}"
    rows = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.get_trials():
            kind = summary.study_name.rsplit(":", 1)[1]
            rows.append((kind, trial.user_attrs["slot"], trial.state.name, "failure" in trial.user_attrs))
    return rows


@pytest.mark.slow
def test_two_workers_train_every_trial_once_and_report_what_one_worker_does(one_worker, corpus, tmp_path):
    out = tmp_path / "out"
    first = start(tuned_command(corpus, out)[0:], tmp_path / "first.log")
    wait_for(lambda: (out / "compare.json").is_file() and (out / "study.db").is_file())
    second = start(["compare", "--resume", str(out), "--worker"], tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()

    directories = trained_into(tmp_path / "first.log", tmp_path / "second.log")
    assert len(directories) == len(set(directories)) == 5  # 3 trials and 2 final runs, each trained once
    assert trained_into(tmp_path / "second.log")  # the worker did share the work
    assert sorted(study_trials(out)) == sorted(
        [("tune", f"trial-00{i}", "COMPLETE", False) for i in range(3)]
        + [("final", f"seed-{s}", "COMPLETE", False) for s in (1337, 1338)]
    )
    assert "the report is the other process's" in (tmp_path / "second.log").read_text()
    assert losses(json.loads((out / "report.json").read_text())) == losses(one_worker[1])  # bitwise equal


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_it_to_another_which_continues_it(one_worker, corpus, tmp_path):
    out = tmp_path / "out"
    killed = start(tuned_command(corpus, out, "--heartbeat", "1"), tmp_path / "killed.log")
    checkpoint = out / "tuning" / "Vanilla" / "trial-001" / "seed-1339" / "checkpoints" / "step-00000002"
    wait_for(checkpoint.is_dir)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (checkpoint.parent.parent / "result.json").exists()  # killed mid-trial

    second = start(["compare", "--resume", str(out)], tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    log = (tmp_path / "second.log").read_text()
    assert f"into {checkpoint.parent.parent}, resuming from {checkpoint}" in log  # continued, not started over

    trials = study_trials(out)
    assert trials.count(("tune", "trial-001", "FAIL", False)) == 1  # the killed worker's: failed as stale, uncounted
    for slot in ("trial-000", "trial-001", "trial-002"):
        assert trials.count(("tune", slot, "COMPLETE", False)) == 1
    for seed in (1337, 1338):
        assert trials.count(("final", f"seed-{seed}", "COMPLETE", False)) == 1
    directories = trained_into(tmp_path / "killed.log", tmp_path / "second.log")
    began = {directory: directories.count(directory) for directory in directories}
    assert len(began) == 5 and began.pop(str(checkpoint.parent.parent)) == 2  # only the killed trial began twice
    assert set(began.values()) == {1}
    assert losses(json.loads((out / "report.json").read_text())) == losses(one_worker[1])


@pytest.mark.slow
def test_a_diverging_trial_is_a_failed_trial_with_its_reason_and_the_comparison_goes_on(corpus, tmp_path):
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "4", "--out", str(out)]
    arguments += ["--tune", "optimizer.lr=1e-2:1e6:log", "--trials", "2", "--tune-sampler", "grid"]
    for override in [*TINY, f"data.dataset={corpus}"]:
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    vanilla = json.loads((out / "report.json").read_text())["tuning"]["contenders"]["Vanilla"]
    sane, diverged = vanilla["trials"]
    assert diverged["loss"] is None and "the training loss became nan" in diverged["failure"]
    assert vanilla["best"]["slot"] == sane["slot"] == "trial-000"
    assert ("tune", "trial-001", "FAIL", True) in study_trials(out)
    assert "- Vanilla trial-001 (optimizer.lr=1e+06): the training loss became nan" in (out / "report.md").read_text()

    again = CliRunner().invoke(cli, ["compare", "--resume", str(out)])  # finished: the report again, no training
    assert again.exit_code == 0, again.output
    assert "training" not in again.output and "| Vanilla | Vanilla |" in again.output


def test_each_lever_of_an_ablation_gets_its_own_trials_at_its_own_setting(tmp_path):
    from cleangpt_core.experiments.planning import build_plan
    from cleangpt_core.experiments.tuning import trial_runs

    config = tmp_path / "recipe.yaml"
    config.write_text("model: {n_layer: 1, n_head: 2, n_embd: 16, block_size: 16}\n")
    plan = build_plan(
        tmp_path / "out",
        config_files=[config],
        overrides=["schedule.warmup_steps=1"],
        variants=["deep=model.n_layer=2"],
        seeds=2,
        max_steps=4,
        tuning=tuning_spec(["optimizer.lr=1e-3:1e-2:log"], trials=3, sampler="grid", tune_seeds=2),
        ablation_base="recipe",
    )
    assert plan.labels == ["recipe", "deep"] and plan.ablation_base == "recipe"
    [first, second] = trial_runs(plan, tmp_path / "out", "deep", "trial-001", {"optimizer.lr": 0.003})
    assert (first.seed, second.seed) == (1339, 1340)  # after the final runs' 1337 and 1338
    config = second.load()
    assert (config.model.n_layer, config.optimizer.options["lr"], config.seed) == (2, 0.003, 1340)
    assert config.output.dir == (tmp_path / "out").resolve() / "tuning" / "deep" / "trial-001" / "seed-1340"
