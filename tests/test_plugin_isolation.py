"""A plugin's faults stay its own, whatever it raises: it is reported and dropped, and everything else works.

`except Exception` does not see `SystemExit` (a plugin calling `sys.exit()`), `GeneratorExit`,
`KeyboardInterrupt` raised by code, or a plugin's own `BaseException` subclass; none of them may take down
the CLI or a training run. A real Ctrl-C from the user still stops both.
"""

from __future__ import annotations

import json
import signal
import threading

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.isolation import plugin_code
from cleangpt_core.registry import get_component, get_registry
from cleangpt_core.testing.trainer import build_tiny_trainer

HEADER = """
from cleangpt_core.plugin_api import Component, hookimpl

CLEANGPT_PLUGIN_API = "1.0"


class PluginAbort(BaseException):
    pass
"""

RAISES = {
    "sys.exit()": "import sys; sys.exit(3)",
    "SystemExit": "raise SystemExit('bye')",
    "GeneratorExit": "raise GeneratorExit",
    "KeyboardInterrupt raised by code": "raise KeyboardInterrupt",
    "a BaseException subclass": "raise PluginAbort('own control flow')",
}


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="cleangpt")


def failures_of(distribution: str) -> list:
    return [f for f in get_registry().failures if f.distribution == distribution]


@pytest.mark.parametrize("statement", RAISES.values(), ids=RAISES.keys())
def test_a_plugin_raising_at_import_is_reported_and_the_cli_keeps_working(install_plugin, statement):
    install_plugin("cleangpt-quitter", HEADER + statement)
    for args in (["--help"], ["--version"], ["list-components"]):
        result = run(*args)
        assert result.exit_code == 0, f"{args}: {result.output}"
    assert "cleangpt-quitter" in run("--version").output
    assert "plugins that failed to load" in run("list-components").output
    [failure] = failures_of("cleangpt-quitter")
    assert failure.error.startswith("failed to import: ")


@pytest.mark.parametrize("statement", RAISES.values(), ids=RAISES.keys())
def test_a_registration_hook_raising_anything_is_reported_and_skipped(install_plugin, statement):
    source = HEADER + f"\n@hookimpl\ndef cleangpt_register_samplers():\n    {statement}\n"
    install_plugin("cleangpt-quitter", source)
    result = run("list-components", "--kind", "sampler")
    assert result.exit_code == 0, result.output
    assert "cleangpt_register_samplers raised" in failures_of("cleangpt-quitter")[0].error
    assert get_component("sampler", "greedy").distribution == "cleangpt-core"


@pytest.mark.parametrize("statement", RAISES.values(), ids=RAISES.keys())
def test_a_training_event_hook_raising_anything_is_dropped_and_training_goes_on(install_plugin, statement):
    source = HEADER + f"\n@hookimpl\ndef cleangpt_on_step_end(step):\n    {statement}\n"
    install_plugin("cleangpt-quitter", source)
    trainer = build_tiny_trainer("simple", max_steps=3)
    with pytest.warns(RuntimeWarning, match="plugin cleangpt-quitter.*receives no further events"):
        stats = trainer.train()
    assert stats["steps"] == 3
    [failure] = trainer.events.failures
    assert "'step_end' training event" in failure


class Quitter:
    def __init__(self, error: BaseException):
        self.error = error
        self.calls = 0

    def on_step_end(self, step):
        self.calls += 1
        raise self.error


@pytest.mark.parametrize("error", [SystemExit(1), GeneratorExit(), KeyboardInterrupt()], ids=repr)
def test_a_callback_raising_a_base_exception_is_dropped_and_training_goes_on(error):
    quitter = Quitter(error)
    trainer = build_tiny_trainer("simple", max_steps=3, callbacks=[quitter])
    with pytest.warns(RuntimeWarning, match=f"Quitter.on_step_end raised {type(error).__name__}"):
        stats = trainer.train()
    assert stats["steps"] == 3 and quitter.calls == 1


class PressCtrlC:
    """Stands in for the user: Ctrl-C is pressed while a hook runs."""

    def __init__(self, press):
        self.press = press

    def on_step_end(self, step):
        self.press()


def test_a_real_ctrl_c_during_a_hook_still_stops_training(ctrl_c):
    trainer = build_tiny_trainer("simple", max_steps=5, callbacks=[PressCtrlC(ctrl_c)])
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert trainer.progress.step == 1
    assert trainer.events.failures == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the hook's handler was put back


def test_a_schema_that_is_not_a_pydantic_model_drops_that_component_only(install_plugin):
    source = (
        HEADER
        + """
class NotPydantic:
    x: int = 1


@hookimpl
def cleangpt_register_samplers():
    return [
        Component(name="odd", kind="sampler", summary="s", target="json:dumps", config_schema=NotPydantic),
        Component(name="fine", kind="sampler", summary="s", target="json:dumps"),
    ]
"""
    )
    install_plugin("cleangpt-odd", source)
    result = run("list-components", "--json")
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    names = {c["name"] for c in listing["components"]}
    assert "fine" in names and "odd" not in names and "greedy" in names
    [failure] = [f for f in listing["failures"] if f["distribution"] == "cleangpt-odd"]
    assert "sampler 'odd' has config_schema=<class" in failure["error"]
    assert "not a pydantic model class" in failure["error"]


def sampler_with_schema(name: str, prelude: str, field: str) -> str:
    """A plugin whose sampler `name` has a schema with one field of an arbitrary type defined in `prelude`."""
    return (
        HEADER
        + prelude
        + f"""
from pydantic import BaseModel, ConfigDict


class Options(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)
    {field}


@hookimpl
def cleangpt_register_samplers():
    return [Component(name="{name}", kind="sampler", summary="s", target="json:dumps", config_schema=Options)]
"""
    )


def test_a_schema_without_a_json_schema_still_lists_everything(install_plugin):
    source = sampler_with_schema("opaque", "\nclass Opaque:\n    pass\n", "thing: Opaque | None = None")
    install_plugin("cleangpt-opaque", source)
    result = run("list-components", "--json")
    assert result.exit_code == 0, result.output
    [opaque] = [c for c in json.loads(result.output)["components"] if c["name"] == "opaque"]
    assert opaque["config_schema"] is None
    assert "PydanticInvalidForJsonSchema" in opaque["config_schema_error"]
    assert opaque["defaults"] == {"thing": None}


UNREPRESENTABLE = """
class Unrepresentable:
    def __repr__(self):
        raise RuntimeError("no repr for you")

    __str__ = __repr__
"""


def test_an_object_whose_repr_raises_in_a_hook_answer_is_reported_and_commands_work(install_plugin):
    hook = "\n@hookimpl\ndef cleangpt_register_samplers():\n    return [Unrepresentable()]\n"
    source = HEADER + UNREPRESENTABLE + hook
    install_plugin("cleangpt-unrepr", source)
    for args in (["--help"], ["--version"], ["list-components"], ["show-config", "top_p"]):
        result = run(*args)
        assert result.exit_code == 0, f"{args}: {result.output}"
    [failure] = failures_of("cleangpt-unrepr")
    assert "returned <Unrepresentable object whose __repr__ raised RuntimeError>" in failure.error


def test_an_exception_whose_str_raises_is_still_reported(install_plugin):
    source = (
        HEADER
        + """
class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")


@hookimpl
def cleangpt_register_samplers():
    raise Unprintable()
"""
    )
    install_plugin("cleangpt-unprintable", source)
    assert run("list-components").exit_code == 0
    [failure] = failures_of("cleangpt-unprintable")
    assert "raised Unprintable: (its message could not be shown" in failure.error


def test_a_default_whose_repr_raises_is_shown_as_such(install_plugin):
    source = sampler_with_schema("unrepr", UNREPRESENTABLE, "thing: Unrepresentable = Unrepresentable()")
    install_plugin("cleangpt-unrepr", source)
    result = run("show-config", "unrepr")
    assert result.exit_code == 0, result.output
    assert "<Unrepresentable object whose __repr__ raised RuntimeError>" in result.output
    assert run("list-components", "--json").exit_code == 0


def test_a_plugin_command_whose_module_exits_at_import_is_one_clear_error(install_plugin, tmp_path):
    source = (
        HEADER + "\nfrom cleangpt_core.plugin_api import CommandSpec\n\n@hookimpl\ndef cleangpt_register_commands():\n"
    )
    source += '    return [CommandSpec("hello", "Say hello.", "cleangpt_exiting_cmd:hello")]\n'
    install_plugin("cleangpt-hello", source)
    (tmp_path / "site-packages" / "cleangpt_exiting_cmd.py").write_text("import sys\nsys.exit(4)\n")
    result = run("hello")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: command 'hello' from cleangpt-hello 1.0.0 failed to load: SystemExit: 4"
    ]
    assert run("--help").exit_code == 0


def test_off_the_main_thread_a_keyboard_interrupt_is_the_plugins_own():
    """Signals reach the main thread only, so there a KeyboardInterrupt can only come from code."""
    outcomes = []

    def plugin_thread():
        with plugin_code() as outcome:
            raise KeyboardInterrupt
        outcomes.append(outcome)

    thread = threading.Thread(target=plugin_thread)
    thread.start()
    thread.join()
    [outcome] = outcomes
    assert isinstance(outcome.error, KeyboardInterrupt)


@pytest.mark.parametrize(
    "fields",
    ['summary=None, target="json:dumps"', 'summary="s", target="json:dumps", aliases="ab"'],
    ids=["summary not a str", "aliases a str"],
)
def test_a_component_with_fields_of_the_wrong_type_is_reported_and_listing_works(install_plugin, fields):
    component = f'Component(name="odd", kind="sampler", {fields})'
    hook = f"\n@hookimpl\ndef cleangpt_register_samplers():\n    return [{component}]\n"
    install_plugin("cleangpt-odd", HEADER + hook)
    for args in (["list-components"], ["list-components", "--json"], ["show-config", "top_p"]):
        result = run(*args)
        assert result.exit_code == 0, f"{args}: {result.output}"
    [failure] = failures_of("cleangpt-odd")
    assert "cleangpt_register_samplers raised TypeError: component" in failure.error


def test_a_name_whose_class_overrides_repr_is_kept_as_a_plain_str(install_plugin):
    source = (
        HEADER
        + """
class Name(str):
    def __repr__(self):
        raise RuntimeError("no repr for you")


@hookimpl
def cleangpt_register_samplers():
    return [Component(name=Name("odd"), kind="sampler", summary="s", target="json:dumps", aliases=[Name("o")])]
"""
    )
    install_plugin("cleangpt-odd", source)
    result = run("show-config", "o")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("sampler odd (cleangpt-odd 1.0.0)")
    assert type(get_component("sampler", "odd").name) is str
