"""`distribution:name` picks an architecture everywhere a name does: configs, `get_model`, saved checkpoints.

The name a config records is the shortest one that picks the same component: the plain name where it is
unambiguous, else the qualified one, so the choice survives validation, saving and loading.
"""

from __future__ import annotations

import pytest

from cleangpt_core.config import GPTConfig
from cleangpt_core.config.experiment import load_experiment_config
from cleangpt_core.errors import DuplicateComponentError
from cleangpt_core.model import get_model, load_model, save_model

ARCHITECTURE_PLUGIN = """
from cleangpt_core.config import ModelConfig
from cleangpt_core.plugin_api import Component, hookimpl
from pydantic import Field

CLEANGPT_PLUGIN_API = "1.0"


class Options(ModelConfig):
    flavour: str = Field("{distribution}", description="which distribution built it")


def build(config):
    from cleangpt_core.config import VanillaConfig
    from cleangpt_core.model.model_Vanilla import VanillaTransformerModel

    model = VanillaTransformerModel(VanillaConfig(**config.model_dump(exclude={"flavour"})))
    model.built_by = "{distribution}"
    return model


@hookimpl
def cleangpt_register_architectures():
    return [Component(name="{name}", kind="architecture", summary="a Vanilla from a plugin",
                      target=__name__ + ":build", config_schema=Options)]
"""

SMALL = {"vocab_size": 11, "n_layer": 1, "n_head": 2, "n_embd": 8, "block_size": 8}


def architecture_plugin(distribution: str, name: str) -> str:
    return ARCHITECTURE_PLUGIN.replace("{distribution}", distribution).replace("{name}", name)


@pytest.fixture
def two_ropes(install_plugin):
    """Two distributions registering the same architecture name, so only a qualified name picks one."""
    install_plugin("cleangpt-rope", architecture_plugin("cleangpt-rope", "RoPEGPT"))
    install_plugin("cleangpt-rope-fork", architecture_plugin("cleangpt-rope-fork", "RoPEGPT"))


def test_the_plain_name_of_a_duplicate_is_the_error_that_suggests_the_qualified_one(two_ropes):
    with pytest.raises(DuplicateComponentError, match="pick one with 'cleangpt-rope:RoPEGPT'"):
        GPTConfig(model_type="RoPEGPT", **SMALL)


def test_a_qualified_architecture_name_validates_and_is_kept(two_ropes):
    config = GPTConfig(model_type="cleangpt-rope:RoPEGPT", **SMALL)
    assert config.model_type == "cleangpt-rope:RoPEGPT"
    assert config.flavour == "cleangpt-rope"
    assert type(config.for_architecture()).__module__.startswith("cleangpt_test_plugin_")


def test_a_qualified_architecture_name_works_as_a_set_override(two_ropes):
    experiment = load_experiment_config(overrides=["model.model_type=cleangpt-rope-fork:RoPEGPT"])
    assert experiment.model.model_type == "cleangpt-rope-fork:RoPEGPT"
    assert GPTConfig.model_validate(experiment.model.model_dump()).flavour == "cleangpt-rope-fork"


def test_get_model_builds_the_architecture_the_qualified_name_picks(two_ropes):
    assert get_model("cleangpt-rope-fork:RoPEGPT", **SMALL).built_by == "cleangpt-rope-fork"
    config = GPTConfig(model_type="cleangpt-rope:RoPEGPT", **SMALL)
    assert get_model(config.model_type, config=config).built_by == "cleangpt-rope"


def test_a_plugin_shadowing_a_built_in_is_built_by_its_qualified_name(install_plugin, tmp_path):
    install_plugin("cleangpt-clash", architecture_plugin("cleangpt-clash", "Vanilla"))
    assert not hasattr(get_model("Vanilla", **SMALL), "built_by")  # the built-in wins the plain name
    model = get_model("cleangpt-clash:Vanilla", **SMALL)
    assert model.built_by == "cleangpt-clash"
    assert model.config.model_type == "cleangpt-clash:Vanilla"
    save_model(model, tmp_path / "model")
    assert load_model(tmp_path / "model").built_by == "cleangpt-clash"


def test_an_unambiguous_name_is_recorded_as_the_registered_name(install_plugin):
    install_plugin("cleangpt-rope", architecture_plugin("cleangpt-rope", "RoPEGPT"))
    assert GPTConfig(model_type="cleangpt-rope:ropegpt", **SMALL).model_type == "RoPEGPT"
    assert GPTConfig(model_type="ropegpt", **SMALL).model_type == "RoPEGPT"
