"""Shared fixtures: installing throwaway third-party plugin distributions for the length of one test."""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cleangpt_core.registry import reset_registry

_counter = itertools.count()

PluginFactory = Callable[..., str]


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Rebuild the plugin registry before and after the test, so installed test plugins do not leak."""
    reset_registry()
    yield
    reset_registry()


@pytest.fixture
def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None) -> Iterator[PluginFactory]:
    """Install a real distribution (a dist-info with an entry point, on sys.path) holding a plugin module.

    Returns a function ``install(distribution, source, version="1.0.0", entry_point=None) -> module name``;
    `source` is the plugin module's code. The module name is unique per call, so tests never share modules.
    """
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def install(distribution: str, source: str, version: str = "1.0.0", entry_point: str | None = None) -> str:
        module = f"cleangpt_test_plugin_{next(_counter)}"
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        dist_info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
        (dist_info / "entry_points.txt").write_text(f"[cleangpt]\n{entry_point or module} = {module}\n")
        created.append(module)
        reset_registry()
        return module

    yield install
    for module in created:
        sys.modules.pop(module, None)
