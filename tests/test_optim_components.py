"""Optimizers and learning-rate schedules as components: chosen and checked by config, listed, resumable from
runs saved before they were components, and open to a third party's optimizer."""

from __future__ import annotations

import json
import textwrap
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from cleangpt_core.checkpoints.run_dir import EXPERIMENT_FILE, RunDirectory
from cleangpt_core.cli.main import cli
from cleangpt_core.config import load_experiment_config
from cleangpt_core.errors import ConfigError
from cleangpt_core.model import get_model
from cleangpt_core.registry import get_component
from cleangpt_core.testing.trainer import build_tiny_trainer, tiny_model
from cleangpt_core.trainers import get_optimizer, get_schedule
from cleangpt_core.trainers.metrics import read_metrics

CONFIGS = Path(__file__).parents[1] / "configs"


def tiny(run_dir: Path, steps: int = 4, **extra: object) -> list[str]:
    """Overrides shrinking the default recipe to seconds."""
    settings = {
        "model.n_layer": 1,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 32,
        "data.eval_batch_size": 512,
        "trainer.max_steps": steps,
        "schedule.warmup_steps": 1,
        "trainer.eval_max_batches": 1,
        "trainer.checkpoint_interval": 2,
        "output.sample_tokens": 0,
        "output.dir": run_dir,
        **extra,
    }
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]


def invoke(*arguments: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def fails(*arguments: str | Path) -> str:
    result = CliRunner().invoke(cli, [str(argument) for argument in arguments])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.output


def test_the_builtin_optimizers_and_schedules_are_listed_by_kind():
    optimizers = invoke("list-components", "--kind", "optimizer")
    schedules = invoke("list-components", "--kind", "schedule")
    for name in ("adamw", "sgd", "muon"):
        assert any(line.split()[:1] == [name] for line in optimizers.splitlines()), optimizers
    for name in ("constant", "cosine", "wsd", "linear"):
        assert any(line.split()[:1] == [name] for line in schedules.splitlines()), schedules
    everything = invoke("list-components")
    assert "muon" in everything and "wsd" in everything


def test_the_config_chooses_the_optimizer_and_schedule_with_their_own_defaults():
    config = load_experiment_config(overrides=["optimizer.name=muon", "schedule.name=wsd"])
    assert config.optimizer.name == "muon" and config.optimizer.options["adamw_lr"] == 3e-3
    assert "betas" not in config.optimizer.options  # AdamW's options of the default do not leak into Muon's
    assert config.schedule.name == "wsd" and config.schedule.options["decay_fraction"] == 0.2


def test_an_unknown_optimizer_is_refused_with_the_nearest_name(tmp_path):
    assert "did you mean 'muon'" in fails("train", *tiny(tmp_path / "run"), "--set", "optimizer.name=muom")
    assert "did you mean 'wsd'" in fails("train", *tiny(tmp_path / "run"), "--set", "schedule.name=wsdd")
    assert not (tmp_path / "run").exists()


def test_a_bad_option_is_one_line_naming_it(tmp_path):
    output = fails("train", *tiny(tmp_path / "run"), "--set", "optimizer.name=muon", "--set", "optimizer.momentum=2")
    assert "invalid optimizer 'muon'" in output and "momentum=2" in output
    output = fails("train", *tiny(tmp_path / "run"), "--set", "schedule.name=wsd", "--set", "schedule.decay_step=3")
    assert "unknown field 'decay_step'" in output
    assert not (tmp_path / "run").exists()


def test_an_old_config_file_reads_the_trainers_schedule_fields_as_the_schedule(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("trainer:\n  lr_schedule: cosine\n  warmup_steps: 5\n  lr_decay_steps: 50\n  min_lr_ratio: 0.2\n")
    with pytest.warns(FutureWarning, match=r"trainer.lr_decay_steps.* moved to the schedule: section"):
        config = load_experiment_config(path)
    assert config.schedule.name == "cosine"
    assert config.schedule.options == {"warmup_steps": 5, "decay_steps": 50, "min_lr_ratio": 0.2}
    assert not {"lr_schedule", "warmup_steps"} & set(config.trainer.options)


def test_an_old_constant_schedule_stays_constant_without_warmup():
    with pytest.warns(FutureWarning):
        config = load_experiment_config(overrides=["trainer.lr_schedule=constant", "trainer.warmup_steps=7"])
    assert config.schedule.name == "constant" and config.schedule.options == {"warmup_steps": 0}


def test_schedule_fields_in_both_places_are_refused():
    with pytest.raises(ConfigError, match="trainer.warmup_steps has moved to the schedule: section"):
        load_experiment_config(overrides=["trainer.warmup_steps=3", "schedule.warmup_steps=4"])


def test_get_trainer_says_where_the_schedule_options_went():
    with pytest.raises(ConfigError, match="lr_scheduler=get_schedule"):
        build_tiny_trainer("advanced", warmup_steps=3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trainer", "old_fields", "schedule"),
    [
        (
            "advanced",
            {"lr_schedule": "cosine", "warmup_steps": 1, "lr_decay_steps": None, "min_lr_ratio": 0.1},
            {"name": "cosine", "warmup_steps": 1, "decay_steps": None, "min_lr_ratio": 0.1},
        ),
        ("simple", {}, {"name": "constant", "warmup_steps": 0}),
    ],
)
def test_a_run_saved_before_schedules_were_components_resumes(tmp_path, trainer, old_fields, schedule):
    run_dir = tmp_path / "run"
    invoke("train", *tiny(run_dir, steps=2), "--set", f"trainer.name={trainer}")
    saved = RunDirectory(run_dir).latest() / EXPERIMENT_FILE
    data = json.loads(saved.read_text())
    del data["schedule"]
    data["trainer"].update(old_fields)  # the experiment.json this run would have had before
    saved.write_text(json.dumps(data))

    with pytest.warns(FutureWarning) if old_fields else nullcontext():
        invoke("train", "--resume", run_dir, "--set", "trainer.max_steps=4")
    resumed = json.loads((RunDirectory(run_dir).latest() / EXPERIMENT_FILE).read_text())
    assert resumed["trainer"]["max_steps"] == 4 and resumed["schedule"] == schedule
    steps = [row["step"] for row in read_metrics(run_dir / "metrics.jsonl") if "loss" in row]
    assert steps[-1] == 4


def test_a_plugin_written_for_api_1_1_still_loads(install_plugin):
    install_plugin(
        "cleangpt-old-part",
        """
        from cleangpt_core.plugin_api import Component, hookimpl

        CLEANGPT_PLUGIN_API = "1.1"


        @hookimpl
        def cleangpt_register_norms():
            return [Component(name="old_norm", kind="norm", summary="from 1.1", target="torch.nn:Identity")]
        """,
    )
    assert get_component("norm", "old_norm").distribution == "cleangpt-old-part"


OPTIMIZER_IMPLEMENTATION = '''
import torch


class SignSGD(torch.optim.Optimizer):
    """Each parameter moves by lr against the sign of its gradient."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.add_(parameter.grad.sign(), alpha=-group["lr"])


def build(roles, *, lr):
    return SignSGD(roles.matrices + roles.embeddings + roles.head + roles.gains, lr=lr)
'''

OPTIMIZER_PLUGIN = """
from pydantic import Field

from cleangpt_core.config import StrictModel
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.2"


class SignSGDOptions(StrictModel):
    lr: float = Field(1e-3, gt=0.0, description="step size")


@hookimpl
def cleangpt_register_optimizers():
    return [Component(name="signsgd", kind="optimizer", summary="sign of the gradient",
                      target="{implementation}:build", config_schema=SignSGDOptions)]
"""


@pytest.fixture
def sign_sgd(install_plugin, tmp_path):
    implementation = f"cleangpt_signsgd_impl_{tmp_path.name}"
    install_plugin("cleangpt-signsgd", OPTIMIZER_PLUGIN.replace("{implementation}", implementation), version="0.2.0")
    (tmp_path / "site-packages" / f"{implementation}.py").write_text(textwrap.dedent(OPTIMIZER_IMPLEMENTATION))
    return implementation


def test_a_third_party_optimizer_is_built_from_the_models_roles(sign_sgd):
    model = tiny_model()
    optimizer = get_optimizer("signsgd", model, lr=0.01)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model(torch.randint(0, 17, (2, 16)), labels=torch.randint(0, 17, (2, 16)))["loss"].backward()
    optimizer.step()
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter, before[name] - 0.01 * parameter.grad.sign()), name


@pytest.mark.slow
def test_a_third_party_optimizer_is_listed_and_trains(sign_sgd, tmp_path):
    listing = invoke("list-components", "--kind", "optimizer")
    line = next(line for line in listing.splitlines() if line.split()[:1] == ["signsgd"])
    assert "cleangpt-signsgd" in line and "0.2.0" in line
    run_dir = tmp_path / "run"
    invoke("train", *tiny(run_dir, **{"optimizer.name": "signsgd", "optimizer.lr": 2e-3}))
    saved = json.loads((RunDirectory(run_dir).latest() / EXPERIMENT_FILE).read_text())
    assert saved["optimizer"] == {"name": "signsgd", "lr": 2e-3}
    rows = [row for row in read_metrics(run_dir / "metrics.jsonl") if "loss" in row]
    assert rows[-1]["step"] == 4 and all(torch.isfinite(torch.tensor(row["loss"])) for row in rows)


def test_a_schedule_is_built_over_the_runs_length():
    trainer = build_tiny_trainer("simple", max_steps=10, optimizer="muon", lr_scheduler=get_schedule("wsd"))
    rates = []
    for _ in range(10):
        rates.append([group["lr"] for group in trainer.optimizer.param_groups])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    muon_lr, adamw_lr = 0.02, 3e-3
    assert rates[8][0] == pytest.approx(muon_lr) and rates[8][-1] == pytest.approx(adamw_lr)
    assert rates[9][0] == pytest.approx(muon_lr / 2) and rates[9][-1] == pytest.approx(adamw_lr / 2)


def test_the_speedrun_recipe_is_config_only_and_within_the_parameter_budget():
    config = load_experiment_config(CONFIGS / "speedrun_char.yaml")
    model = get_model(config.model.model_type, config=config.model.model_copy(update={"vocab_size": 65}))
    assert sum(p.numel() for p in model.parameters()) <= 820_000
    assert (config.optimizer.name, config.schedule.name, config.data.val_fraction) == ("muon", "wsd", 0.1)
    assert (config.model.position, config.model.norm, config.model.feedforward) == ("rotary", "rmsnorm", "relu2")
    assert config.model.qk_norm and config.model.zero_init_projections and not config.model.tie_embeddings
    # every lever of the model is a switch (the optimizer and schedule are sections a config replaces)
    plain = load_experiment_config(
        CONFIGS / "speedrun_char.yaml",
        ["model.qk_norm=false", "model.zero_init_projections=false", "model.feedforward=swiglu"],
    )
    assert (plain.model.qk_norm, plain.model.zero_init_projections, plain.model.feedforward) == (False, False, "swiglu")
