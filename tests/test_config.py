"""Config schemas: validation with readable errors, architecture-specific fields, YAML/TOML and overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from cleangpt_core.config import (
    ExperimentConfig,
    GPTConfig,
    ModelConfig,
    apply_overrides,
    load_experiment_config,
    validate_config,
)
from cleangpt_core.config.sampling import CombinedConfig, TopPConfig
from cleangpt_core.errors import ConfigError, UnknownComponentError
from cleangpt_core.experiments.training_run import run_level_trainer_options

ARCHITECTURE_PLUGIN = """
from cleangpt_core.config import ModelConfig
from cleangpt_core.plugin_api import Component, hookimpl
from pydantic import Field

CLEANGPT_PLUGIN_API = "1.0"


class WideConfig(ModelConfig):
    widening: float = Field(2.0, gt=0)
    use_gate: bool = False


@hookimpl
def cleangpt_register_architectures():
    return [Component(name="Wide", kind="architecture", summary="a test architecture",
                      target="torch.nn:Identity", config_schema=WideConfig)]
"""


@pytest.fixture
def wide_architecture(install_plugin) -> None:
    install_plugin("cleangpt-wide", ARCHITECTURE_PLUGIN)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("n_layer", 0, "n_layer=0: Input should be greater than 0"),
        ("vocab_size", -5, "vocab_size=-5"),
        ("block_size", 0, "block_size=0"),
        ("dropout", 1.0, "dropout=1.0: Input should be less than 1"),
        ("dropout", -0.1, "dropout=-0.1"),
        ("n_embd", 100, "n_embd=100 is not divisible by n_head=6"),
    ],
)
def test_model_config_rejects_invalid_values_naming_field_and_value(field, value, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(ModelConfig, {field: value})
    with pytest.raises(ValidationError):
        ModelConfig(**{field: value})


def test_unknown_field_suggests_the_nearest_valid_name():
    with pytest.raises(ValidationError, match=r"unknown field 'n_layers' in ModelConfig; did you mean 'n_layer'\?"):
        ModelConfig(n_layers=4)


def test_gpt_config_accepts_the_architectures_own_fields(wide_architecture):
    config = GPTConfig(model_type="wide", n_layer=2, n_head=2, n_embd=32, widening=3.5)
    assert config.model_type == "Wide"  # normalised to the registered name
    assert config.widening == 3.5
    assert config.use_gate is False  # the architecture's defaults are filled in
    typed = config.for_architecture()
    assert type(typed).__name__ == "WideConfig"
    assert typed.widening == 3.5


def test_gpt_config_validates_the_architectures_fields(wide_architecture):
    with pytest.raises(ValidationError, match="invalid Wide config: widening=-1.0"):
        GPTConfig(model_type="Wide", widening=-1.0)


def test_gpt_config_rejects_a_field_no_schema_knows_with_a_suggestion(wide_architecture):
    with pytest.raises(ValidationError, match=r"unknown field 'widenning' in WideConfig; did you mean 'widening'\?"):
        GPTConfig(model_type="Wide", widenning=2.0)


def test_gpt_config_with_an_unknown_architecture_lists_the_installed_ones(wide_architecture):
    with pytest.raises(UnknownComponentError, match="unknown architecture 'Nope'.*Wide"):
        GPTConfig(model_type="Nope")


def test_sampler_schemas_hold_defaults_and_ranges():
    assert TopPConfig().p == 0.9
    assert CombinedConfig().top_k is None
    with pytest.raises(ValidationError):
        TopPConfig(p=0)


def test_overrides_set_nested_values_parsed_as_yaml_scalars():
    data = apply_overrides(
        {"model": {"n_layer": 2}},
        ["model.n_layer=8", "model.bias=false", "trainer.lr=3.0e-4", "data.dataset=my corpus.txt", "tags=[a, b]"],
    )
    assert data == {
        "model": {"n_layer": 8, "bias": False},
        "trainer": {"lr": 3e-4},
        "data": {"dataset": "my corpus.txt"},
        "tags": ["a", "b"],
    }


@pytest.mark.parametrize("override", ["model.n_layer", "=3", "model.n_layer.deep=1"])
def test_malformed_overrides_are_clear_errors(override):
    with pytest.raises(ConfigError, match="override"):
        apply_overrides({"model": {"n_layer": 2}}, [override])


def test_overrides_never_evaluate_code():
    data = apply_overrides({}, ["seed=__import__('os').getpid()"])
    assert data["seed"] == "__import__('os').getpid()"


def test_experiment_config_loads_yaml_with_overrides(tmp_path, wide_architecture):
    path = tmp_path / "run.yaml"
    path.write_text(
        "seed: 7\nmodel:\n  model_type: Wide\n  n_layer: 2\n  n_head: 2\n  n_embd: 32\n"
        "sampling:\n  name: top_k\n  k: 5\n"
    )
    config = load_experiment_config(path, ["model.widening=4", "sampling.temperature=0.5"])
    assert config.seed == 7
    assert config.model.widening == 4.0
    assert config.sampling.name == "top_k"
    assert config.sampling.options == {"k": 5, "temperature": 0.5}


def test_experiment_config_loads_toml(tmp_path, wide_architecture):
    path = tmp_path / "run.toml"
    path.write_text('seed = 3\n[model]\nmodel_type = "Wide"\nn_embd = 48\nn_head = 4\n[sampling]\nname = "greedy"\n')
    config = load_experiment_config(path)
    assert (config.seed, config.model.n_embd, config.sampling.name) == (3, 48, "greedy")


def test_experiment_config_rejects_unknown_sections_with_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown field 'samplign'.*did you mean 'sampling'\?"):
        load_experiment_config(None, ["samplign.name=greedy"])


def test_component_options_are_validated_against_the_components_schema(wide_architecture):
    with pytest.raises(ConfigError, match=r"invalid sampler 'top_p': p=3.0"):
        load_experiment_config(None, ["model.model_type=Wide", "sampling.name=top_p", "sampling.p=3.0"])
    with pytest.raises(ConfigError, match=r"unknown field 'kk'.*did you mean 'k'\?"):
        load_experiment_config(None, ["model.model_type=Wide", "sampling.name=top_k", "sampling.kk=3"])


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml' is not valid YAML"):
        load_experiment_config(path)


def test_missing_or_unsupported_config_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment_config(tmp_path / "missing.yaml")
    path = tmp_path / "run.ini"
    path.write_text("[data]")
    with pytest.raises(ConfigError, match="use a .yaml, .yml, .toml or .json file"):
        load_experiment_config(path)
    broken = tmp_path / "experiment.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_experiment_config(broken)


def test_experiment_config_round_trips_through_json(wide_architecture):
    config = load_experiment_config(None, ["model.model_type=Wide", "model.widening=1.5", "sampling.name=top_p"])
    restored = ExperimentConfig.model_validate_json(config.model_dump_json())
    assert restored == config


def test_a_run_has_one_seed_and_one_directory_which_the_trainer_is_given(tmp_path):
    """`--set seed=N` gives another run in every respect (initialisation and data order); the trainer section
    holds neither a seed nor a directory of its own."""
    config = load_experiment_config(None, ["seed=5", "output.dir=elsewhere"])
    assert "seed" not in config.trainer.options and "output_dir" not in config.trainer.options
    assert run_level_trainer_options(config) == {"output_dir": Path("elsewhere"), "seed": 5}
    assert "seed" not in config.model_dump(mode="json")["trainer"]


def test_the_trainer_seed_and_directory_of_saved_runs_and_older_configs_are_read_as_the_runs(tmp_path):
    saved = tmp_path / "saved.yaml"  # what experiment.json held: both seeds, equal, and a null directory
    saved.write_text("seed: 3\ntrainer: {name: advanced, seed: 3, output_dir: null}\n")
    assert load_experiment_config(saved, ["seed=8"]).seed == 8
    older = tmp_path / "older.yaml"
    older.write_text("trainer: {seed: 4}\n")
    with pytest.warns(FutureWarning, match="trainer.seed is the run's seed now"):
        assert load_experiment_config(older).seed == 4


@pytest.mark.parametrize(
    ("overrides", "field"),
    [(["seed=5", "trainer.seed=9"], "seed"), (["trainer.output_dir=x"], "output.dir")],
)
def test_a_second_seed_or_directory_is_refused_naming_the_one_to_set(overrides, field):
    with pytest.raises(ConfigError, match=f"is the run's {re.escape(field)}; set {re.escape(field)}"):
        load_experiment_config(None, overrides)
