"""`cleangpt compare --tune`: a study per contender in an Optuna storage, shared out among worker processes.

Fast tests check the options (each bad one is one line, nothing written), the grid, TPE's start-up points, the
steps past a range's end and the report's warnings; the slow ones train a tiny model: a 3-point grid picks its
lowest-loss point and retrains it on fresh seeds; two worker processes on one storage train every trial once and
report the very losses one worker does (on the grid, and with TPE, where they must also draw distinct settings);
a worker killed (SIGKILL) mid-trial leaves that trial to another, which continues it from its checkpoint; a
worker paused (SIGSTOP) past its heartbeat's grace stands down when it wakes, its trial kept by the worker that
took it over; a best setting on the grid's end is extended past it.
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
        # issue 35, fault 4: a heartbeat that overflowed the heartbeat thread's wait, one traceback a beat
        (
            ["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "2", "--heartbeat", "1e12"],
            "--heartbeat must be at least 1 second and at most 86,400 (a day), got 1e+12",
        ),
        (["--tune", "optimizer.lr=1e-3:1e-2", "--trials", "2", "--tune-extend", "-1"], "--tune-extend must be between"),
        (["--tune-extend", "2"], "--tune-extend only apply with --tune"),
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


def test_tpe_start_up_points_are_fixed_distinct_and_cover_each_range():
    """Issue 35, fault 1: every worker seeded TPE alike, and its random start-up is not covered by the constant
    liar, so two workers drew the same first setting. The start-up points are now fixed per trial, each in a
    stratum of its own."""
    spec = tuning_spec(["optimizer.lr=1e-4:1e-1:log", "model.n_layer=1:12"], trials=9)
    points = spec.startup_points(1337)
    assert len(points) == spec.startup == 3 and points == spec.startup_points(1337)
    assert points != spec.startup_points(1338)
    strata = sorted(int(3 * math.log(p["optimizer.lr"] / 1e-4) / math.log(1e3)) for p in points)
    assert strata == [0, 1, 2]  # one setting per third of the log range: distinct, and spread over it
    assert all(isinstance(p["model.n_layer"], int) and 1 <= p["model.n_layer"] <= 12 for p in points)


def test_a_step_past_a_range_keeps_its_scale_its_sign_and_whole_numbers():
    lr = parse_tune("optimizer.lr=1e-3:1e-1:log")
    assert lr.step_beyond(1e-1, 1, 3) == pytest.approx(1.0) and lr.step_beyond(1e-3, -1, 3) == pytest.approx(1e-4)
    decay = parse_tune("optimizer.weight_decay=0.0:0.2")
    assert decay.step_beyond(0.2, 1, 3) == pytest.approx(0.3)
    assert decay.step_beyond(0.0, -1, 3) is None  # a range from 0 up stays non-negative
    assert parse_tune("optimizer.weight_decay=0.05:0.2").step_beyond(0.05, -1, 2) == 0.0
    layers = parse_tune("model.n_layer=2:4")
    assert layers.step_beyond(4, 1, 3) == 5 and layers.step_beyond(2, -1, 3) == 1


def trial(slot: str, lr: float, loss: float | None) -> dict:
    return {"slot": slot, "params": {"optimizer.lr": lr}, "loss": loss, "failure": None if loss else "diverged"}


def test_a_best_on_the_end_of_what_was_tried_is_an_edge_and_a_failure_past_it_bounds_it():
    from cleangpt_core.experiments.tuning import edges

    keys = [parse_tune("optimizer.lr=1e-3:1e-2:log")]
    assert edges([trial("trial-000", 1e-3, 4.0), trial("trial-001", 1e-2, 3.5)], keys) == {"optimizer.lr": [1]}
    assert edges([trial("trial-000", 1e-3, 3.4), trial("trial-001", 1e-2, 3.5)], keys) == {"optimizer.lr": [-1]}
    inside = [trial("trial-000", 1e-3, 4.0), trial("trial-001", 3e-3, 3.5), trial("trial-002", 1e-2, 3.6)]
    assert edges(inside, keys) == {}
    bounded = [trial("trial-000", 1e-3, 4.0), trial("trial-001", 1e-2, 3.5), trial("trial-002", 1e-1, None)]
    assert edges(bounded, keys) == {}  # the setting past it diverged: the optimum is not beyond
    assert edges([trial("trial-000", 1e-3, 4.0)], keys) == {"optimizer.lr": [-1, 1]}


def summary_with(contenders: dict, **extra) -> dict:
    keys = [vars(parse_tune("optimizer.lr=1e-3:1e-2:log"))]
    summary = {"sampler": "grid", "trials": 2, "extend": 0, "keys": keys, "contenders": contenders}
    return {"tune_seeds": {label: [1339] for label in contenders}, **summary, **extra}


def contender(trials: list[dict], edge: dict | None = None, extended: int = 0) -> dict:
    best = min((t for t in trials if t["loss"] is not None), key=lambda t: t["loss"])
    return {"best": best, "basin": None, "edges": edge or {}, "extended": extended, "trials": trials}


def test_a_best_on_the_grids_edge_is_a_warning_in_the_report_and_in_the_plot(tmp_path):
    """Issue 30, item 6: the tuner put SASP's best learning rate on the top edge of the grid and no report said."""
    from cleangpt_core.experiments.tuning_report import tuning_figure, tuning_section

    on_edge = contender(
        [trial("trial-000", 1e-3, 4.0), trial("trial-001", 1e-2, 3.5)],
        {"optimizer.lr": {"side": "high", "blocked": None}},
    )
    inside = contender([trial("trial-000", 1e-3, 3.4), trial("trial-001", 3e-3, 3.3), trial("trial-002", 1e-2, 3.5)])
    summary = summary_with({"SASP": on_edge, "Vanilla": inside})
    markdown = "\n".join(tuning_section(summary, tmp_path))
    assert "| SASP | optimizer.lr=0.01 (on the edge) |" in markdown and "| Vanilla | optimizer.lr=0.003 |" in markdown
    assert (
        "- **SASP: the best optimizer.lr=0.01 is the highest value tried**, so the optimum may lie beyond it: a better "
        "setting was not ruled out; `--tune-extend N` steps past it, up to N times, until the best is inside."
    ) in markdown
    assert "Vanilla: the best" not in markdown
    assert "One tuning seed (SASP, Vanilla): each trial's loss is one run, so the basin's width" in markdown
    texts = [text.get_text() for axes in tuning_figure(summary).axes for text in axes.texts]
    assert texts == ["SASP: best on the edge (the highest value tried)"]
    assert (tmp_path / "tuning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    on_edge["edges"]["optimizer.lr"]["blocked"] = "the range optimizer.weight_decay=0:0.1 does not go on below 0"
    assert "; the study cannot go on past it (the range optimizer.weight_decay=0:0.1 does not go on below 0)." in (
        "\n".join(tuning_section(summary, tmp_path))
    )


def test_the_transfer_check_says_whether_the_optimum_moved_and_what_that_means_for_the_larger_rungs():
    from cleangpt_core.experiments.tuning import transfer_check
    from cleangpt_core.experiments.tuning_report import transfer_sentence

    rung_1 = [trial("trial-000", 1e-3, 4.0), trial("trial-001", 3e-3, 3.8), trial("trial-002", 1e-2, 3.9)]
    same = [trial("trial-000", 1e-3, 3.6), trial("trial-001", 3e-3, 3.5), trial("trial-002", 1e-2, 3.55)]
    moved = [trial("trial-000", 1e-3, 3.4), trial("trial-001", 3e-3, 3.5), trial("trial-002", 1e-2, 3.6)]
    held = transfer_check("A/rung-1", rung_1, "A/rung-2", same)
    assert (held["moved"], held["gap"], held["to_best"]) == (False, 0.0, {"optimizer.lr": 3e-3})
    shifted = transfer_check("B/rung-1", rung_1, "B/rung-2", moved)
    assert shifted["moved"] is True and shifted["gap"] == pytest.approx(0.1)
    assert shifted["to_best"] == {"optimizer.lr": 1e-3} and shifted["loss_at_from_best"] == 3.5

    labels = ["A/rung-1", "A/rung-2", "B/rung-1", "B/rung-2"]
    summary = summary_with(
        {label: contender(t) for label, t in zip(labels, [rung_1, same, rung_1, moved], strict=True)},
        sampler="grid",
        trials=3,
        transfer={
            "A": {"tuned": labels[:2], "transferred": ["A/rung-3", "A/rung-4"], "checks": [held]},
            "B": {"tuned": labels[2:], "transferred": ["B/rung-3", "B/rung-4"], "checks": [shifted]},
        },
    )
    words = transfer_sentence(summary)
    assert "A: the best setting is the same at rungs 1 and 2, optimizer.lr=0.003 (at the grid's resolution " in words
    assert "A's rungs 3–4 trained rung 2's best: the transfer is measured up to rung 2 only, and assumed above" in words
    assert "B: the optimum moved between rungs 1 and 2: rung 1's best optimizer.lr=0.003 scores +0.1000 nats" in words
    assert "so B's rungs 3–4, trained at rung 2's best, likely trained off their own optimum" in words
    assert "holds across widths" not in words
    unchecked = {"A": {"tuned": ["A/rung-1"], "transferred": ["A/rung-2", "A/rung-3"], "checks": []}}
    assert transfer_sentence({**summary, "transfer": unchecked}) == (
        "A was tuned at rung 1 only and rungs 2–3 trained its best setting unchecked: whether that setting holds at "
        "larger sizes was not measured in this study (--tune-rungs 2 checks it at rung 2)."
    )


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
    edge = {trials[0]["slot"]: "low", trials[-1]["slot"]: "high"}.get(lowest["slot"])  # the grid's ends
    assert vanilla["edges"] == ({"optimizer.lr": {"side": edge, "blocked": None}} if edge else {})
    row = f"| Vanilla | optimizer.lr={lowest['params']['optimizer.lr']:.4g}{' (on the edge)' if edge else ''} |"
    assert "## Tuning" in markdown and row in markdown
    assert ("`--tune-extend N` steps past it" in markdown) == (edge is not None)
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
    trials = study_trials(out)
    assert sorted(t for t in trials if t[2] == "COMPLETE") == sorted(
        [("tune", f"trial-00{i}", "COMPLETE", False) for i in range(3)]
        + [("final", f"seed-{s}", "COMPLETE", False) for s in (1337, 1338)]
    )
    # any other is a slot both workers enqueued at once: the one claimed second stood down, untrained (above)
    assert all(t[2:] == ("FAIL", False) for t in trials if t[2] != "COMPLETE")
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


def tpe_command(corpus: Path, out: Path) -> list[str]:
    """Two TPE trials (both start-up points) and 2 final runs of 6 steps; heartbeats a minute apart, so a worker
    paused here for seconds keeps its trial."""
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "6", "--out", str(out)]
    arguments += ["--tune", "optimizer.lr=1e-3:1e-2:log", "--trials", "2", "--heartbeat", "60"]
    for override in [*TINY, f"data.dataset={corpus}"]:
        arguments += ["--set", override]
    return arguments


def pause(process: subprocess.Popen, database: Path) -> None:
    """SIGSTOP `process` at a moment it holds no lock on the SQLite storage (mid-heartbeat, it would block every
    other worker): taking the database's exclusive lock succeeds only then."""
    import sqlite3

    while True:
        process.send_signal(signal.SIGSTOP)
        connection = sqlite3.connect(database, timeout=0.5)
        try:
            connection.execute("BEGIN EXCLUSIVE")
            connection.rollback()
            return
        except sqlite3.OperationalError:
            process.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        finally:
            connection.close()


@pytest.mark.slow
def test_two_tpe_workers_draw_distinct_settings_and_report_what_one_worker_does(corpus, tmp_path):
    """Issue 35, fault 1: a main and a `--worker` both trained lr = 0.0018282 (every worker seeded TPE alike) and
    the report said "2 trials completed"."""
    alone = tmp_path / "alone"
    result = CliRunner().invoke(cli, tpe_command(corpus, alone))
    assert result.exit_code == 0, result.output

    out = tmp_path / "out"
    first = start(tpe_command(corpus, out), tmp_path / "first.log")
    wait_for((out / "tuning" / "Vanilla" / "trial-000").is_dir)  # the main has claimed the first trial
    pause(first, out / "study.db")  # so the worker, joining now, claims the second while the first is running
    try:
        second = start(["compare", "--resume", str(out), "--worker"], tmp_path / "second.log")
        wait_for((out / "tuning" / "Vanilla" / "trial-001").is_dir)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()
    assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()

    assert "[Vanilla trial-001] tuning" in (tmp_path / "second.log").read_text()
    report = json.loads((out / "report.json").read_text())
    settings = [t["params"]["optimizer.lr"] for t in report["tuning"]["contenders"]["Vanilla"]["trials"]]
    assert len(settings) == len(set(settings)) == 2  # distinct
    assert losses(report) == losses(json.loads((alone / "report.json").read_text()))  # one worker's, bitwise


@pytest.mark.slow
def test_a_worker_paused_past_its_grace_stands_down_and_nothing_trains_twice(corpus, tmp_path):
    """Issue 35, fault 2: heartbeat 1 s, one trial, a main and a `--worker`; the main paused 20 s: the worker
    failed the trial as stale, retried it, and exited 1 on the main's locked run directory; the main finished
    training and exited 1 on "Trial#0 has already finished". No report."""
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "60", "--out", str(out)]
    arguments += ["--tune", "optimizer.lr=1e-3:1e-2:log", "--trials", "1", "--heartbeat", "1"]
    for override in [*TINY, f"data.dataset={corpus}"]:
        arguments += ["--set", override]
    main = start(arguments, tmp_path / "main.log")
    run = out / "tuning" / "Vanilla" / "trial-000" / "seed-1339"
    wait_for((run / "checkpoints" / "step-00000002").is_dir)  # training, far from its 60 steps
    pause(main, out / "study.db")
    try:
        worker = start(["compare", "--resume", str(out), "--worker"], tmp_path / "worker.log")
        # the main's trial failed as stale and retried by the worker, which finds the run directory held
        wait_for(lambda: f"waiting: run directory {run} is in use" in (tmp_path / "worker.log").read_text())
        assert not (run / "result.json").exists()
    finally:
        main.send_signal(signal.SIGCONT)
    assert worker.wait(timeout=600) == 0, (tmp_path / "worker.log").read_text()
    assert main.wait(timeout=600) == 0, (tmp_path / "main.log").read_text()

    assert "another worker took this trial over" in (tmp_path / "main.log").read_text()
    directories = trained_into(tmp_path / "main.log", tmp_path / "worker.log")
    assert len(directories) == len(set(directories)) == 3  # the trial and the 2 final runs, each trained once
    assert trained_into(tmp_path / "main.log")[0] == str(run)
    trials = study_trials(out)
    assert trials.count(("tune", "trial-000", "FAIL", False)) == 1  # the main's, failed as stale: uncounted
    assert trials.count(("tune", "trial-000", "COMPLETE", False)) == 1  # the worker's retry, with the main's result
    report = json.loads((out / "report.json").read_text())
    [kept] = report["tuning"]["contenders"]["Vanilla"]["trials"]
    assert kept["runs"] == [{"seed": 1339, "val_loss": json.loads((run / "result.json").read_text())["val_loss"]}]
    assert "the report is the other process's" in (tmp_path / "worker.log").read_text()


@pytest.mark.slow
def test_a_best_on_the_grids_edge_is_extended_past_it_until_it_lies_inside(corpus, tmp_path):
    """Issue 30, item 6: `--tune-extend N` steps past the end where the best lies, until it is inside."""
    out = tmp_path / "out"
    arguments = ["compare", "--model", "Vanilla", "--seeds", "2", "--max-steps", "6", "--out", str(out)]
    arguments += ["--tune", "optimizer.lr=1e-6:1e-2:log", "--trials", "2", "--tune-sampler", "grid"]
    for override in [*TINY, f"data.dataset={corpus}"]:
        arguments += ["--set", override]
    result = CliRunner().invoke(cli, [*arguments, "--tune-extend", "3"])
    assert result.exit_code == 0, result.output
    vanilla = json.loads((out / "report.json").read_text())["tuning"]["contenders"]["Vanilla"]
    tried = [(t["slot"], t["params"]["optimizer.lr"]) for t in vanilla["trials"]]
    # 1e-6 learns nothing in 6 steps, 1e-2 does: the best on the top end, so one step of the grid past it (x 1e4)
    assert tried == [("trial-000", 1e-6), ("trial-001", 1e-2), ("trial-002", pytest.approx(100.0))]
    assert vanilla["best"]["slot"] == "trial-001" and vanilla["extended"] == 1
    assert vanilla["edges"] == {}  # inside now: 100 trained worse (or diverged)
    assert "A best setting on the edge" not in (out / "report.md").read_text()


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
