"""`cleangpt train` and `cleangpt evaluate`: a run directory from the command line, resumable, checked early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.config import ExperimentConfig, load_experiment_config
from cleangpt_core.tokenizers import from_pretrained
from cleangpt_core.trainers.metrics import read_metrics

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
        "trainer.warmup_steps": 1,
        "trainer.eval_interval": 3,
        "trainer.eval_max_batches": 2,
        "trainer.checkpoint_interval": 3,
        "output.sample_tokens": 20,
        "output.dir": run_dir,
    }
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]


def invoke(*arguments: str):
    return CliRunner().invoke(cli, list(arguments), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = invoke("train", *tiny(run_dir))
    assert result.exit_code == 0, result.output
    return run_dir, result.output


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


def test_evaluate_reports_the_runs_validation_loss(trained_run):
    run_dir, _ = trained_run
    result = invoke("evaluate", str(run_dir), "--json", "--batch-size", "512")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    final_val = [r for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r][-1]
    assert report["loss"] == pytest.approx(final_val["val_loss"], rel=1e-6)
    assert report["tokens"] == 111_540 - 1  # every validation character but the first is predicted once
    text = invoke("evaluate", str(run_dir), "--batch-size", "512").output
    assert "perplexity" in text and "validation" in text


def test_resume_continues_a_run_from_its_latest_checkpoint(trained_run):
    run_dir, _ = trained_run
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
        ("optimizer.lr=-1", "optimizer.lr"),
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
