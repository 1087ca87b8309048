"""Hostile or damaged config files and overrides: one line naming the input, in bounded time and memory
(issue 25, faults 6 and 9)."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.config.experiment import apply_overrides, read_config_file
from cleangpt_core.errors import ConfigError


def alias_bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level a list of `width` aliases of the level before (width**levels values)."""
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(9))
    assert path.stat().st_size < 1024
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb.yaml.*expands to more than 100,000 values through its aliases"):
        read_config_file(path)
    assert time.perf_counter() - start < 2
    result = CliRunner().invoke(cli, ["train", "--config", str(path)])
    assert result.exit_code == 1 and "through its aliases" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_aliases_that_expand_to_little_still_work(tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text("base: &base {n_layer: 2, n_head: 2}\nmodel: *base\n")
    assert read_config_file(path)["model"] == {"n_layer": 2, "n_head": 2}


def test_an_alias_bomb_in_an_override_is_refused():
    levels = ['&a0 "lol"'] + [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    with pytest.raises(ConfigError, match="override 'model.x=.*through its aliases"):
        apply_overrides({}, [f"model.x=[{', '.join(levels)}]"])


def test_a_deeply_nested_override_is_one_line():
    result = CliRunner().invoke(cli, ["train", "--set", "model.x=" + "[" * 100_000 + "]" * 100_000])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "unexpected" not in result.output
    assert "nests too deeply" in result.output


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_a_config_file_that_is_not_utf8_is_named(tmp_path, suffix):
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes("seed = 1 # caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.* is not UTF-8 text \(byte 0xe9 at offset 14\)"):
        read_config_file(path)
    compare = CliRunner().invoke(cli, ["compare", "--comparison", str(path), "--out", str(tmp_path / "cmp")])
    assert compare.exit_code == 1 and "is not UTF-8 text" in compare.output
    assert len(compare.output.strip().splitlines()) == 1
