"""Interrupts keep the work: SIGINT, SIGTERM and SIGUSR1 (SLURM's early warning) finish the step, write a
checkpoint, say how to continue and exit non-zero; a second signal stops at once; a background `compare` whose
SIGINT the shell masked stops on `kill -INT` like any other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from tiny_runs import TINY

from cleangpt_core.checkpoints.run_dir import RunDirectory, step_of
from cleangpt_core.config import load_experiment_config
from cleangpt_core.experiments.training_run import resume_config, run_experiment
from cleangpt_core.trainers.interrupts import StopRequested, deferred_stop, stop_on_signals

COMMAND = [sys.executable, "-m", "cleangpt_core"]
LONG = [*TINY, "trainer.max_steps=100000", "trainer.checkpoint_interval=100000", "trainer.eval_interval=100000"]


def start(arguments: list[str], **options) -> subprocess.Popen:
    """A real `cleangpt` process whose lines arrive as it writes them."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*COMMAND, *arguments], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, **options
    )


def wait_for_line(process: subprocess.Popen, text: str) -> list[str]:
    """The lines of stdout up to the first holding `text` (the process must still be running then)."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    pytest.fail(f"the process ended before writing {text!r}: {''.join(lines)}{process.stderr.read()}")


def set_options(*overrides: str) -> list[str]:
    return [part for override in overrides for part in ("--set", override)]


@pytest.mark.slow
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_stop_signal_writes_a_checkpoint_says_how_to_continue_and_exits_non_zero(tmp_path, sent):
    run_dir = tmp_path / "run"
    process = start(["train", *set_options(*LONG, f"output.dir={run_dir}")])
    try:
        wait_for_line(process, "step 4/")
        process.send_signal(sent)
        _, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + sent  # the shell's convention for a process ended by a signal
    checkpoint = RunDirectory(run_dir).latest()
    assert checkpoint is not None and step_of(checkpoint) >= 4  # the step it was in, not the last interval's
    assert f"{sent.name}: stopped at step {step_of(checkpoint):,}, checkpoint {checkpoint}" in errors
    assert f"continue with: cleangpt train --resume {run_dir}" in errors
    assert "Traceback" not in errors


class SignalAt:
    """Sends this process `signals` at the end of step `step` (as a user or scheduler would, mid-run)."""

    def __init__(self, step: int, *signals: signal.Signals) -> None:
        self.step, self.signals = step, signals

    def on_step_end(self, step: int) -> None:
        if step == self.step:
            for sent in self.signals:
                os.kill(os.getpid(), sent)


def tiny_config(run_dir: Path, steps: int = 8):
    return load_experiment_config(
        None, [*TINY, f"trainer.max_steps={steps}", "data.eval_batch_size=512", f"output.dir={run_dir}"]
    )


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(RunDirectory(run_dir).latest() / "model.safetensors"))


def test_a_stopped_run_resumes_to_the_weights_of_one_never_stopped(tmp_path):
    quiet = {"echo": lambda line: None}
    run_experiment(tiny_config(tmp_path / "straight"), **quiet)
    stopped = tmp_path / "stopped"
    with stop_on_signals(), pytest.raises(StopRequested) as raised:
        run_experiment(tiny_config(stopped), callbacks=[SignalAt(5, signal.SIGTERM)], **quiet)
    assert (raised.value.step, raised.value.signum) == (5, signal.SIGTERM)
    assert raised.value.checkpoint == RunDirectory(stopped).checkpoint(5)  # between the every-2-steps checkpoints
    config, checkpoint = resume_config(stopped)
    run_experiment(config, resume_from=checkpoint, **quiet)
    straight, resumed = weights(tmp_path / "straight"), weights(stopped)
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)


def test_a_second_signal_stops_at_once_keeping_the_last_checkpoint(tmp_path):
    with stop_on_signals(), pytest.raises(StopRequested) as raised:
        run_experiment(
            tiny_config(tmp_path / "run"), callbacks=[SignalAt(5, signal.SIGINT, signal.SIGINT)], echo=lambda _: None
        )
    # raised by the second signal inside step 5's events, before its checkpoint: the last one is step 4's
    assert raised.value.checkpoint == RunDirectory(tmp_path / "run").checkpoint(4) and raised.value.step == 4
    assert not RunDirectory(tmp_path / "run").checkpoint(5).exists()


def test_signals_are_deferred_inside_a_loop_and_raise_outside_it():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        with deferred_stop() as stop:
            os.kill(os.getpid(), signal.SIGUSR1)
            assert stop.signum == signal.SIGUSR1  # recorded for the loop, which stops at its next step boundary
        with pytest.raises(StopRequested) as raised:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
        assert raised.value.exit_status == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # put back


@pytest.mark.slow
def test_kill_int_stops_a_background_compare_whose_shell_masked_sigint(tmp_path, wait_for):
    out = tmp_path / "compare"
    first = RunDirectory(out / "runs" / "Vanilla" / "seed-1337")
    masked = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)}  # what `cmd &` does in sh
    process = start(["compare", "--model", "Vanilla", "--seeds", "2", "--out", str(out), *set_options(*LONG)], **masked)
    try:
        wait_for(process, lambda: logged_steps(first.metrics) >= 2, "the first run's fourth step")
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGINT
    assert f"continue with: cleangpt compare --resume {out}" in errors
    checkpoint = first.latest()
    assert checkpoint is not None and step_of(checkpoint) >= 4


def logged_steps(metrics: Path) -> int:
    """Lines in a run's metrics.jsonl (one every log_interval = 2 steps)."""
    return len(metrics.read_text().splitlines()) if metrics.is_file() else 0
