"""Earlier releases' module paths and names keep importing, each with a warning naming what to use now."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch

from cleangpt_core.config import VanillaConfig
from cleangpt_core.model import Decoder, begin_forward, get_model

TINY = {"vocab_size": 40, "block_size": 16, "n_layer": 2, "n_head": 2, "n_embd": 16}


def test_builtins_resolves_to_core_plugins_as_the_same_module():
    with pytest.warns(DeprecationWarning, match="use cleangpt_core.core_plugins.samplers"):
        old = importlib.import_module("cleangpt_core.builtins.samplers")
    new = importlib.import_module("cleangpt_core.core_plugins.samplers")
    assert old is new
    assert new.__spec__.name == "cleangpt_core.core_plugins.samplers"  # its own spec, not the alias's


def test_plugin_api_1_0_vanilla_classes_build_the_vanilla_preset():
    with pytest.warns(DeprecationWarning, match="model_Vanilla.VanillaTransformerModel"):
        from cleangpt_core.model.model_Vanilla import VanillaTransformerModel
    with pytest.warns(DeprecationWarning, match="model_Vanilla.Block"):
        from cleangpt_core.model.model_Vanilla import Block
    config = VanillaConfig(**TINY)
    torch.manual_seed(0)
    old = VanillaTransformerModel(config)
    torch.manual_seed(0)
    new = get_model("Vanilla", config=config)
    ids = torch.randint(0, 40, (2, 8))
    assert isinstance(old, Decoder)
    torch.testing.assert_close(old(ids)["logits"], new(ids)["logits"], rtol=0, atol=0)
    block = Block(config, 0)
    parts = [type(module).__name__ for module in (block.ln_1, block.attn, block.mlp)]
    assert parts == ["LayerNorm", "CausalSelfAttention", "MLP"]


def test_old_names_left_their_modules_but_still_answer():
    import cleangpt_core.model as model
    import cleangpt_core.model.decoder as decoder
    import cleangpt_core.model.kv_cache as kv_cache

    with pytest.warns(DeprecationWarning, match="use cleangpt_core.model.Decoder"):
        assert decoder.LearnedPositionDecoder is Decoder
    with pytest.warns(DeprecationWarning, match="use cleangpt_core.model.Decoder"):
        assert model.LearnedPositionDecoder is Decoder
    with pytest.warns(DeprecationWarning, match="begin_forward"):
        positions_and_layout = kv_cache.positions_and_layout
    ids = torch.zeros(2, 5, dtype=torch.long)
    positions, _ = positions_and_layout(ids, None, None)
    torch.testing.assert_close(positions, begin_forward(ids, None, None).positions)
    with pytest.raises(AttributeError, match="no attribute 'nothing_such'"):
        _ = decoder.nothing_such


@pytest.mark.slow  # imports every module of the package in a fresh interpreter
def test_the_core_itself_imports_no_old_name():
    # every module of the package, imported with old names' warnings as errors
    code = (
        "import pkgutil, importlib, warnings, cleangpt_core\n"
        "warnings.simplefilter('error', DeprecationWarning)\n"
        "for info in pkgutil.walk_packages(cleangpt_core.__path__, 'cleangpt_core.'):\n"
        "    if not info.name.startswith(('cleangpt_core.scaffold.templates', 'cleangpt_core.__main__')):\n"
        "        importlib.import_module(info.name)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
