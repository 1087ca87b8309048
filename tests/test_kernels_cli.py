"""``cleangpt kernels``: shows the cache per host, measures a model's shapes afresh, clears the cache."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.kernels import forget_choices
from cleangpt_core.kernels.cache import read_cache, store_choice
from cleangpt_core.kernels.choices import KERNELS_ENV
from cleangpt_core.kernels.host import host_key


@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv(KERNELS_ENV, "auto")
    monkeypatch.setenv("CLEANGPT_KERNELS_CACHE", str(tmp_path / "kernels.json"))
    forget_choices()
    yield tmp_path / "kernels.json"
    forget_choices()


def test_it_shows_each_hosts_choices_this_host_first(cache):
    store_choice("another CPU | isa=avx2", "linear|float32|grad|512|128|384", {"kernel": "plain", "ms": {"plain": 1.5}})
    store_choice(host_key(), "gelu|float32|grad|65536", {"kernel": "sigmoid", "ms": {"plain": 0.9, "sigmoid": 0.4}})
    result = CliRunner().invoke(cli, ["kernels"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"kernel cache: {cache}"
    assert lines[2] == f"{host_key()}   <- this host"
    assert lines[3].split() == ["gelu|float32|grad|65536", "sigmoid", "(plain", "0.9,", "sigmoid", "0.4)"]
    assert "another CPU | isa=avx2" in result.output


def test_clear_deletes_the_cache(cache):
    store_choice(host_key(), "gelu|float32|grad|65536", {"kernel": "sigmoid", "ms": {}})
    result = CliRunner().invoke(cli, ["kernels", "--clear"])
    assert result.exit_code == 0 and result.output == f"deleted {cache}\n"
    assert not cache.exists()
    assert CliRunner().invoke(cli, ["kernels", "--clear"]).output == f"no kernel cache at {cache}\n"


def test_time_measures_every_shape_of_a_training_step_and_an_evaluation(cache):
    store_choice(host_key(), "gelu|float32|grad|16384", {"kernel": "sigmoid", "ms": {"plain": 99.0}})
    result = CliRunner().invoke(
        cli, ["kernels", "--time", "--vocab-size", "97", "--n-layer", "1", "--n-embd", "32", "--block-size", "16",
              "--batch-size", "8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    measured = int(result.output.split("measured ")[1].split()[0])
    assert measured >= 3  # GELU and attention, with and without gradients; the head's loss is too small
    entry = read_cache().get(host_key(), {}).get("gelu|float32|grad|16384")
    noise = "timed as noise" in result.output and "gelu|float32|grad|16384" in result.output
    assert noise or entry["ms"].get("plain") != 99.0  # measured again (or left alone, and said so, on a busy machine)


def test_time_refuses_when_the_kernels_are_fixed(cache, monkeypatch):
    monkeypatch.setenv(KERNELS_ENV, "plain")
    result = CliRunner().invoke(cli, ["kernels", "--time"])
    assert result.exit_code == 2 and "$CLEANGPT_KERNELS fixes the kernels" in result.output


def test_a_bad_kernels_setting_is_one_line_and_a_non_zero_exit(cache, monkeypatch):
    monkeypatch.setenv(KERNELS_ENV, "linear=fast")
    result = CliRunner().invoke(cli, ["kernels", "--time"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: $CLEANGPT_KERNELS='linear=fast'") and "Traceback" not in result.output
