"""`cleangpt train` and `cleangpt evaluate`: a run directory from the command line, resumable, checked early.

On damaged, hostile or finished run directories each fault is one line and a non-zero exit, and nothing of
the run is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from tiny_runs import set_options

from cleangpt_core.checkpoints.run_dir import RunDirectory
from cleangpt_core.cli.main import cli
from cleangpt_core.config import ExperimentConfig, load_experiment_config
from cleangpt_core.config.experiment import AUTO_EVAL_FLOOR
from cleangpt_core.experiments.planning import build_plan
from cleangpt_core.experiments.training_run import run_experiment
from cleangpt_core.tokenizers import CharacterTokenizer, from_pretrained
from cleangpt_core.trainers.metrics import read_metrics
from cleangpt_core.trainers.precision import describe_precision, resolve_precision

CONFIGS = Path(__file__).parents[1] / "configs"


def tiny(run_dir: Path, steps: int = 6) -> list[str]:
    """Overrides shrinking the default recipe to seconds."""
    settings = {
        "model.n_layer": 1,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 32,
        "data.eval_batch_size": 512,
        "trainer.max_steps": steps,
        "schedule.warmup_steps": 1,
        "trainer.eval_interval": 3,
        "trainer.eval_max_batches": 2,
        "trainer.checkpoint_interval": 3,
        "output.sample_tokens": 20,
        "output.dir": run_dir,
    }
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]


def invoke(*arguments: str | Path):
    return CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)


def fails(*arguments: str | Path) -> str:
    """Run a command that must fail, and return its error: exactly one line, exit status 1, no traceback."""
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, str]:
    """A tiny run trained to its max_steps (6), evaluated every 3 steps; tests change only copies of it."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", *tiny(run_dir))
    assert result.exit_code == 0, result.output
    return run_dir, result.output


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run[0], copy)
    return copy


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run and its content (the lock's own files aside)."""
    files = [path for path in sorted(run_dir.rglob("*")) if path.is_file() and not path.name.startswith(".lock")]
    return {str(path.relative_to(run_dir)): path.read_bytes() for path in files}


def test_train_writes_checkpoints_metrics_a_loss_curve_and_a_sample(trained_run):
    run_dir, output = trained_run
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-00000006"
    checkpoint = run_dir / "checkpoints" / "step-00000006"
    for name in ("config.json", "model.safetensors", "trainer_state.json", "trainer_state.safetensors"):
        assert (checkpoint / name).is_file(), name
    assert (checkpoint / "tokenizer").is_dir()
    experiment = json.loads((checkpoint / "experiment.json").read_text())
    tokenizer = from_pretrained(checkpoint / "tokenizer")
    assert experiment["model"]["vocab_size"] == tokenizer.vocab_size  # taken from the character tokenizer
    assert (run_dir / "loss_curve.png").is_file()
    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r] == [6]
    sample = (run_dir / "sample.txt").read_text()
    assert len(sample) >= 20 and sample.strip() in output
    assert "6 steps" in output and "validation loss" in output
    assert f"on cpu in {describe_precision(resolve_precision('auto', torch.device('cpu')))}," in output
    assert experiment["trainer"]["mixed_precision"] == "auto"


def test_a_40_step_fine_tune_runs_on_the_default_recipe_with_no_other_setting(trained_run, tmp_path):
    run_dir = tmp_path / "tuned"
    source = trained_run[0]
    result = invoke("train", "--init-from", source, *set_options("trainer.max_steps=40", f"output.dir={run_dir}"))
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output  # the recipe's warm-up is 5% of the run: 2 of its 40 steps
    saved = json.loads((RunDirectory(run_dir).latest() / "experiment.json").read_text())
    assert saved["schedule"] == ExperimentConfig().model_dump(mode="json")["schedule"]
    final = [line for line in result.output.splitlines() if line.startswith("step 40/40: validation loss")]
    assert len(final) == 1 and "over 32,768 tokens" in final[0]  # sized to the run: 40 x 16 x 32 = 20,480 trained


def test_evaluate_reports_the_runs_validation_loss(tmp_path):
    # evaluate computes in full precision: the run's own validation loss is the same number when it trained so
    run_dir = tmp_path / "run"
    assert invoke("train", *tiny(run_dir), "--set", "trainer.mixed_precision=no").exit_code == 0
    result = invoke("evaluate", str(run_dir), "--json", "--batch-size", "512")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    final_val = [r for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r][-1]
    assert report["loss"] == pytest.approx(final_val["val_loss"], rel=1e-6)
    assert report["tokens"] == AUTO_EVAL_FLOOR  # what the final evaluation scored: a 6-step run's is the floor
    assert report["stderr"] > 0
    every = json.loads(invoke("evaluate", str(run_dir), "--json", "--max-tokens", "all").output)
    assert every["tokens"] == 111_540 - 1  # every validation character but the first is predicted once
    text = invoke("evaluate", str(run_dir), "--batch-size", "512").output
    assert "perplexity" in text and "validation" in text and "(standard error)" in text


def test_resume_continues_a_run_from_its_latest_checkpoint(run_copy):
    run_dir = run_copy
    result = invoke("train", "--resume", str(run_dir), "--set", "trainer.max_steps=9")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output and "9 steps" in result.output
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-00000009"


def test_a_block_size_longer_than_the_data_fails_before_training(tmp_path):
    corpus = tmp_path / "small.txt"
    corpus.write_text("To be, or not to be, that is the question. " * 8)
    run_dir = tmp_path / "run"
    result = invoke("train", *tiny(run_dir), "--set", f"data.dataset={corpus}", "--set", "model.block_size=64")
    assert result.exit_code == 1
    assert "model.block_size=64 is larger than the validation split" in result.output
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.n_embd=31", "n_embd=31 is not divisible by n_head=2"),
        ("trainer.max_step=5", "did you mean 'max_steps'"),
        ("trainer.mixed_precision=fp8", "mixed_precision"),
        ("optimizer.lr=-1", "invalid optimizer 'adamw': lr=-1"),
    ],
)
def test_an_invalid_config_is_one_line_error_before_any_work(tmp_path, override, message):
    result = CliRunner().invoke(cli, ["train", *tiny(tmp_path / "run"), "--set", override])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_resume_and_config_are_exclusive(tmp_path):
    result = CliRunner().invoke(cli, ["train", "--resume", str(tmp_path), "--config", str(CONFIGS / "default.yaml")])
    assert result.exit_code == 2 and "--resume" in result.output


def test_configs_default_yaml_spells_out_the_schema_defaults():
    assert load_experiment_config(CONFIGS / "default.yaml") == ExperimentConfig()
    assert load_experiment_config() == ExperimentConfig()


def test_every_example_config_validates():
    for path in sorted(CONFIGS.glob("*.yaml")):
        config = load_experiment_config(path)
        assert config.model.n_embd % config.model.n_head == 0, path


def test_a_config_file_is_laid_over_the_recipe_and_a_new_trainer_gets_its_own_defaults(tmp_path):
    path = tmp_path / "simple.yaml"
    path.write_text("trainer:\n  name: simple\n  max_steps: 5\nmodel:\n  n_layer: 2\n")
    config = load_experiment_config(path, ["model.dropout=0.1"])
    assert config.trainer.name == "simple" and config.trainer.options["max_steps"] == 5
    assert "lr_schedule" not in config.trainer.options
    assert (config.model.n_layer, config.model.n_embd, config.model.dropout) == (2, 128, 0.1)
    assert not config.vocab_size_given


def test_training_into_an_existing_run_is_refused_unless_overwrite_is_given(tmp_path):
    run_dir = tmp_path / "run"
    assert invoke("train", *tiny(run_dir), "--set", "trainer.max_steps=9").exit_code == 0
    refused = CliRunner().invoke(cli, ["train", *tiny(run_dir)])
    assert refused.exit_code == 1
    assert f"{run_dir} already holds a run; continue it with --resume" in refused.output
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-00000009"  # nothing was touched
    assert invoke("train", *tiny(run_dir), "--overwrite").exit_code == 0
    assert (run_dir / "latest").read_text().strip() == "checkpoints/step-00000006"
    assert not (run_dir / "checkpoints" / "step-00000009").exists()


# -- fault 1: --overwrite deletes nothing until every check has passed --------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["data.dataset=/nonexistent.txt", "model.n_embd=31", f"seed={2**70}"]
    + (["device=cuda"] if not torch.cuda.is_available() else []),
)
def test_overwrite_with_a_failing_check_deletes_nothing(run_copy, bad):
    before = snapshot(run_copy)
    fails("train", *tiny(run_copy), "--set", bad, "--overwrite")
    assert snapshot(run_copy) == before


# -- fault 2: pointers lead only inside their run -----------------------------------------------------------


def test_resume_refuses_a_latest_pointing_into_another_run(run_copy, tmp_path):
    attacker = tmp_path / "attacker"
    attacker.mkdir()
    (attacker / "latest").write_text(f"../{run_copy.name}/checkpoints/step-00000006\n")
    victim_before = snapshot(run_copy)
    error = fails("train", "--resume", attacker, "--set", "trainer.max_steps=12")
    assert "not a checkpoint of this run directory" in error and str(attacker / "latest") in error
    assert snapshot(run_copy) == victim_before


# -- fault 4: a finished run resumes to a report, and its sample ---------------------------------------------


def test_resuming_a_finished_run_trains_nothing_and_still_writes_the_sample(run_copy):
    (run_copy / "sample.txt").unlink()
    history = read_metrics(run_copy / "metrics.jsonl")
    result = invoke("train", "--resume", run_copy)
    assert result.exit_code == 0, result.output
    assert "nothing left to train" in result.output and "validation loss" in result.output
    assert (run_copy / "sample.txt").read_text().strip()
    assert read_metrics(run_copy / "metrics.jsonl") == history  # nothing recorded twice


def test_a_run_saved_with_the_old_default_resumes_in_full_precision(run_copy):
    # before "auto", experiment.json recorded the default as mixed_precision=false and the state recorded nothing
    for checkpoint in (run_copy / "checkpoints").iterdir():
        experiment = json.loads((checkpoint / "experiment.json").read_text())
        experiment["trainer"]["mixed_precision"] = False
        (checkpoint / "experiment.json").write_text(json.dumps(experiment))
        payload = json.loads((checkpoint / "trainer_state.json").read_text())
        del payload["state"]["mixed_precision"]
        (checkpoint / "trainer_state.json").write_text(json.dumps(payload))
    result = invoke("train", "--resume", run_copy, "--set", "trainer.max_steps=7", "--set", "output.sample_tokens=0")
    assert result.exit_code == 0, result.output
    assert "on cpu in full precision," in result.output
    latest = RunDirectory(run_copy).latest()
    assert json.loads((latest / "experiment.json").read_text())["trainer"]["mixed_precision"] is False
    assert json.loads((latest / "trainer_state.json").read_text())["state"]["mixed_precision"] == "no"


# -- fault 5: one trainer per run directory ------------------------------------------------------------------


HOLD_LOCK = "import sys, time\nfrom cleangpt_core.checkpoints.run_dir import RunDirectory\n"
HOLD_LOCK += "with RunDirectory(sys.argv[1]).lock():\n"
HOLD_LOCK += "    print('held', flush=True)\n    time.sleep(120)\n"


def test_a_second_trainer_into_a_run_in_use_gets_one_line_naming_the_holder(run_copy):
    before = snapshot(run_copy)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        error = fails("train", "--resume", run_copy, "--set", "trainer.max_steps=9")
        assert f"{run_copy} is in use by process {holder.pid} on {socket.gethostname()}" in error
    finally:
        holder.kill()
        holder.wait()
    assert snapshot(run_copy) == before


@pytest.mark.slow
def test_three_concurrent_trainers_into_one_directory_leave_one_training(run_copy):
    command = [sys.executable, "-m", "cleangpt_core", "train", "--resume", str(run_copy)]
    command += ["--set", "trainer.max_steps=100000", "--set", "trainer.checkpoint_interval=100000"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    processes += [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    processes += [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    try:
        deadline = time.monotonic() + 240
        while sum(process.poll() is not None for process in processes) < 2:
            assert time.monotonic() < deadline, "two of the three trainers should have been refused"
            time.sleep(0.2)
        refused = [process for process in processes if process.poll() is not None]
        (winner,) = [process for process in processes if process.poll() is None]
        for process in refused:
            output = process.stdout.read()
            assert process.returncode == 1, output
            assert f"is in use by process {winner.pid} on {socket.gethostname()}" in output
            assert len(output.strip().splitlines()) == 1, output
    finally:
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait()
    records = read_metrics(run_copy / "metrics.jsonl")  # every line whole: one writer
    assert [r["step"] for r in records] == sorted(r["step"] for r in records)


# -- fault 6: resume applies what it may change and refuses the rest -----------------------------------------


def test_resume_refuses_changes_it_could_not_apply_naming_them(run_copy):
    before = snapshot(run_copy)
    error = fails("train", "--resume", run_copy, "--set", "optimizer.lr=1e9", "--set", "model.n_layer=2")
    assert "cannot change on resume: model.n_layer (1 -> 2), optimizer.lr (0.002 -> 1000000000.0)" in error
    assert snapshot(run_copy) == before


def test_resume_applies_a_new_step_budget_and_records_it(run_copy):
    result = invoke("train", "--resume", run_copy, "--set", "trainer.max_steps=7", "--set", "output.sample_tokens=0")
    assert result.exit_code == 0, result.output
    checkpoint = RunDirectory(run_copy).latest()
    assert checkpoint.name == "step-00000007"
    recorded = json.loads((checkpoint / "experiment.json").read_text())
    assert recorded["trainer"]["max_steps"] == 7 and recorded["optimizer"]["lr"] == 0.002


# -- fault 9: leftovers of a kill are cleaned up -------------------------------------------------------------


def test_partial_checkpoints_left_by_a_kill_are_removed_when_the_run_resumes(run_copy):
    partial = run_copy / "checkpoints" / ".partial-step-00000009-4242-beef"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    result = invoke("train", "--resume", run_copy, "--set", "trainer.max_steps=7", "--set", "output.sample_tokens=0")
    assert result.exit_code == 0, result.output
    assert not partial.exists()


# -- fault 10: damaged run files and bad inputs are one line naming them -------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


@pytest.mark.parametrize(
    "damaged", ["model.safetensors", "experiment.json", "trainer_state.json", "trainer_state.safetensors"]
)
def test_a_truncated_checkpoint_file_is_one_line_naming_it(run_copy, damaged):
    path = run_copy / "checkpoints" / "step-00000006" / damaged
    _truncate(path)
    error = fails("train", "--resume", run_copy, "--set", "trainer.max_steps=9")
    assert str(path) in error and "unexpected" not in error


def test_a_truncated_model_file_is_one_line_naming_it_in_evaluate(run_copy):
    path = run_copy / "checkpoints" / "step-00000006" / "model.safetensors"
    _truncate(path)
    error = fails("evaluate", run_copy)
    assert str(path) in error


def test_a_damaged_best_pointer_is_one_line_naming_it(run_copy):
    (run_copy / "best").write_text("{not json")
    error = fails("train", "--resume", run_copy, "--set", "trainer.max_steps=9")
    assert f"{run_copy / 'best'} is damaged" in error


@pytest.mark.parametrize("seed", [2**70, -1])
def test_a_seed_out_of_range_is_one_line_before_any_work(tmp_path, seed):
    error = fails("train", *tiny(tmp_path / "run"), "--set", f"seed={seed}")
    assert "seed" in error
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["evaluate", "RUN"], ["train", "--resume", "RUN"], ["generate", "RUN", "-p", "a"]])
def test_a_tokenizer_with_more_ids_than_the_model_is_one_line(run_copy, command):
    tokenizer_dir = run_copy / "checkpoints" / "step-00000006" / "tokenizer"
    shutil.rmtree(tokenizer_dir)
    CharacterTokenizer().fit("".join(map(chr, range(32, 400)))).save_pretrained(str(tokenizer_dir))
    error = fails(*(run_copy if part == "RUN" else part for part in command))
    assert f"the tokenizer in {str(tokenizer_dir)!r} has 370 ids but the model's vocabulary has 67" in error


def test_an_output_dir_that_is_a_file_is_one_line_naming_it(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    error = fails("train", *tiny(path))
    assert f"output.dir={str(path)!r}" in error and "is a file" in error


# -- fault 14: names, rows and modes -------------------------------------------------------------------------


def test_the_final_step_has_one_validation_row(trained_run):
    run_dir, _ = trained_run
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]
    assert steps == [3, 6]


def test_the_console_names_the_last_steps_loss_as_such(trained_run):
    _, output = trained_run
    assert "last step's train loss" in output


def test_run_files_honour_the_umask(trained_run):
    run_dir, _ = trained_run
    modes = {str(p.relative_to(run_dir)): p.stat().st_mode & 0o777 for p in run_dir.rglob("*") if p.is_file()}
    expected = 0o666 & ~_umask()
    assert {name: mode for name, mode in modes.items() if mode != expected} == {}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -- one configuration everywhere ----------------------------------------------------------------------------


def test_one_yaml_file_gives_one_experiment_through_train_compare_and_the_api(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(
        "model:\n  n_layer: 1\n  n_head: 2\n  n_embd: 32\n  block_size: 32\n"
        "trainer:\n  max_steps: 2\n  eval_max_batches: 1\nschedule:\n  warmup_steps: 1\n"
        "data:\n  eval_batch_size: 4096\noutput:\n  sample_tokens: 0\n"
    )

    def recorded(run_dir: Path) -> dict:
        data = json.loads((RunDirectory(run_dir).latest() / "experiment.json").read_text())
        data["output"].pop("dir")
        return data

    assert invoke("train", "--config", path, "--set", f"output.dir={tmp_path / 'cli'}").exit_code == 0
    run_experiment(load_experiment_config(path, [f"output.dir={tmp_path / 'api'}"]), echo=lambda _: None)
    assert recorded(tmp_path / "cli") == recorded(tmp_path / "api")

    plan = build_plan(tmp_path / "compare", models=["Vanilla", "Vanilla"], config_files=[path])
    planned = plan.configs["Vanilla"]
    planned["output"].pop("dir")
    api = json.loads(load_experiment_config(path).model_dump_json())
    api["output"].pop("dir")
    assert planned == api
    cli_run = recorded(tmp_path / "cli")
    cli_run["model"]["vocab_size"] = planned["model"]["vocab_size"]  # training takes the tokenizer's
    assert cli_run == planned
