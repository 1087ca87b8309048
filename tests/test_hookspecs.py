"""The hookspec module is the plugin authors' reference: every hook is documented and tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from cleangpt_core import hookspecs

TESTS = Path(__file__).parent
HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("cleangpt_"))


def test_there_are_hooks_for_the_four_kinds_and_commands():
    assert {
        "cleangpt_register_tokenizers",
        "cleangpt_register_architectures",
        "cleangpt_register_trainers",
        "cleangpt_register_samplers",
        "cleangpt_register_commands",
    } <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Called" in doc, f"{hook}'s docstring must say when it is called"
    assert "Returns" in doc or "Return" in doc, f"{hook}'s docstring must say what it returns"
    for parameter in inspect.signature(getattr(hookspecs, hook)).parameters:
        assert f"``{parameter}``" in doc or f"`{parameter}`" in doc, f"{hook} must document parameter {parameter!r}"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    test_files = [path for path in TESTS.rglob("test_*.py") if path.name != Path(__file__).name]
    assert any(hook in path.read_text(encoding="utf-8") for path in test_files), f"no test mentions {hook}"
