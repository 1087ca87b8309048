"""A third-party attention part, from a distribution made here: installed, listed with its distribution and
version, used in both presets with --set, trained a few steps, generated with the cache, and broken on
purpose to show that the contract kit catches it."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.model import load_model
from cleangpt_core.testing.architecture import check_architecture_contract, registered_model_factory

IMPLEMENTATION = '''
import torch
from torch import nn

from cleangpt_core.model import part_options
from {plugin} import WindowOptions


class SlidingWindowAttention(nn.Module):
    """Causal attention over the last `window` tokens."""

    counts_from_the_call = False  # the bug of BrokenWindowAttention below

    def __init__(self, config, layer_index):
        super().__init__()
        self.layer_index = layer_index
        self.n_head = config.n_head
        self.window = part_options(config, WindowOptions).window
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, layout, kv_cache):
        batch, length, width = x.shape
        q, k, v = self.c_attn(x).view(batch, length, 3, self.n_head, -1).permute(2, 0, 3, 1, 4)
        q, k = layout.rotate(q, k)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_index, k, v)
        if self.counts_from_the_call:  # offsets from this call's first token, not from the cached slots
            offsets = torch.arange(length).unsqueeze(1) - torch.arange(k.size(2)).unsqueeze(0)
        else:
            offsets = layout.offsets(k.size(2), x.device)
        y = layout.attend(q, k, v, allow=offsets < self.window)
        return self.c_proj(y.transpose(1, 2).reshape(batch, length, width))


class BrokenWindowAttention(SlidingWindowAttention):
    counts_from_the_call = True
'''

PLUGIN = """
from pydantic import Field, PositiveInt

from cleangpt_core.config import StrictModel
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.1"


class WindowOptions(StrictModel):
    window: PositiveInt = Field(16, description="tokens each token attends to")


@hookimpl
def cleangpt_register_attention():
    return [
        Component(name="window", kind="attention", summary="sliding-window attention",
                  target="{implementation}:SlidingWindowAttention", config_schema=WindowOptions),
        Component(name="broken_window", kind="attention", summary="sliding-window attention, counted wrongly",
                  target="{implementation}:BrokenWindowAttention", config_schema=WindowOptions),
    ]
"""


@pytest.fixture
def window_part(install_plugin, tmp_path):
    implementation = f"cleangpt_window_impl_{tmp_path.name}"
    plugin = install_plugin("cleangpt-window", PLUGIN.replace("{implementation}", implementation), version="0.3.1")
    source = textwrap.dedent(IMPLEMENTATION).replace("{plugin}", plugin)
    (tmp_path / "site-packages" / f"{implementation}.py").write_text(source)
    return implementation


def invoke(*arguments: str):
    result = CliRunner().invoke(cli, list(arguments), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def tiny(run_dir, preset: str) -> list[str]:
    settings = {
        "model.model_type": preset,
        "model.attention": "window",
        "model.window": 4,
        "model.n_layer": 1,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 16,
        "data.eval_batch_size": 256,
        "trainer.max_steps": 4,
        "schedule.warmup_steps": 1,
        "trainer.eval_interval": 4,
        "trainer.eval_max_batches": 1,
        "output.sample_tokens": 10,
        "output.dir": run_dir,
    }
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]


@pytest.mark.slow
def test_a_third_party_attention_part_works_in_both_presets(window_part, tmp_path):
    listing = invoke("list-components", "--kind", "attention")
    line = next(line for line in listing.splitlines() if line.split()[:1] == ["window"])
    assert "cleangpt-window" in line and "0.3.1" in line

    for preset in ("Vanilla", "Llama"):
        run_dir = tmp_path / f"run-{preset}"
        invoke("train", *tiny(run_dir, preset))
        model = load_model(run_dir)
        assert (model.config.model_type, model.config.attention, model.config.window) == (preset, "window", 4)
        assert type(model.transformer.h[0].attn).__name__ == "SlidingWindowAttention"
        generated = invoke("generate", str(run_dir), "--prompt", "ROMEO:", "-n", "20", "--seed", "0")
        assert generated.startswith("ROMEO:") and len(generated) > len("ROMEO:")
        check_architecture_contract(registered_model_factory(preset, attention="window", window=4))


def test_the_contract_kit_catches_a_window_counted_from_the_call(window_part):
    with pytest.raises(AssertionError, match="KV cache"):
        check_architecture_contract(registered_model_factory("Llama", attention="broken_window", window=4))
