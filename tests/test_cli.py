"""The ``cleangpt`` command line: listing, schemas, versions, errors, lazy plugin commands, start-up imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cleangpt_core.cli.main import cli
from cleangpt_core.plugin_api import PLUGIN_API_VERSION

COMMAND_PLUGIN = """
import click
from cleangpt_core.plugin_api import CommandSpec, hookimpl

CLEANGPT_PLUGIN_API = "1.0"


@hookimpl
def cleangpt_register_commands():
    return [CommandSpec("hello", "Say hello from a plugin.", "{module}_cmd:hello")]
"""

COMMAND_MODULE = """
import click

@click.command()
@click.argument("name")
def hello(name):
    click.echo(f"hello {name}")
"""


def run(*args: str):
    return CliRunner().invoke(cli, list(args), prog_name="cleangpt")


def test_list_components_shows_a_table_grouped_by_kind(fresh_registry):
    result = run("list-components")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "samplers" in lines
    header = next(line for line in lines[lines.index("samplers") :] if "name" in line)
    assert header.split() == ["name", "aliases", "summary", "distribution", "version"]
    assert any(line.split()[:2] == ["top_p", "nucleus"] and "cleangpt-core" in line for line in lines)


def test_list_components_filters_by_kind(fresh_registry):
    result = run("list-components", "--kind", "sampler")
    assert result.exit_code == 0
    assert "samplers" in result.output
    assert "tokenizers" not in result.output


def test_list_components_json_has_schemas_and_defaults(fresh_registry):
    result = run("list-components", "--json", "--kind", "sampler")
    payload = json.loads(result.output)
    top_p = next(c for c in payload["components"] if c["name"] == "top_p")
    assert top_p["defaults"] == {"temperature": 1.0, "p": 0.9}
    assert top_p["config_schema"]["properties"]["p"]["maximum"] == 1.0
    assert top_p["distribution"] == "cleangpt-core"
    assert top_p["aliases"] == ["nucleus"]


def test_list_components_shows_broken_plugins_and_still_exits_zero(install_plugin):
    install_plugin("cleangpt-broken", "raise ImportError('missing dependency xyz')", version="0.3")
    result = run("list-components")
    assert result.exit_code == 0
    assert "plugins that failed to load" in result.output
    assert "broken plugin" in result.output
    assert "cleangpt-broken 0.3" in result.output
    assert "missing dependency xyz" in result.output
    assert "top_p" in result.output
    failures = json.loads(run("list-components", "--json").output)["failures"]
    assert [f["distribution"] for f in failures if f["distribution"] == "cleangpt-broken"] == ["cleangpt-broken"]


def test_list_components_reports_incompatible_plugins(install_plugin):
    install_plugin("cleangpt-future", "CLEANGPT_PLUGIN_API = '9.0'\n", version="9.9")
    result = run("list-components")
    assert result.exit_code == 0
    assert "incompatible plugin" in result.output
    assert "written for plugin API 9.0" in result.output


def test_show_config_prints_fields_defaults_and_descriptions(fresh_registry):
    result = run("show-config", "top_k")
    assert result.exit_code == 0
    assert "sampler top_k (cleangpt-core" in result.output
    k_line = next(line for line in result.output.splitlines() if line.split()[:1] == ["k"])
    assert k_line.split()[1:3] == ["int", "50"]


def test_show_config_spells_out_the_values_a_literal_allows(fresh_registry):
    result = run("show-config", "advanced")
    assert result.exit_code == 0
    rows = {line.split()[0]: line for line in result.output.splitlines()[2:]}
    assert "'auto' | 'ddp' | 'fsdp'" in rows["strategy"]
    assert "bool | 'auto' | 'no' | 'bf16' | 'fp16'" in rows["mixed_precision"]
    assert "int | None" in rows["max_steps"]  # a constrained type shows as its base type


def test_show_config_names_the_aliases(fresh_registry):
    result = run("show-config", "nucleus")
    assert result.exit_code == 0
    assert result.output.splitlines()[:3] == [
        "sampler top_p (cleangpt-core 0.1.0)",
        "  nucleus sampling over the top-p probability mass",
        "  also called: nucleus",
    ]


def test_show_config_json_is_the_schema_and_defaults(fresh_registry):
    payload = json.loads(run("show-config", "combined", "--json").output)
    assert payload["defaults"] == {"temperature": 1.0, "top_k": None, "top_p": None, "min_p": None}
    assert set(payload["config_schema"]["properties"]) == {"temperature", "top_k", "top_p", "min_p"}


def test_unknown_component_is_one_line_and_a_non_zero_exit(fresh_registry):
    result = run("show-config", "top_q")
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("Error: no component called 'top_q'")
    assert "Traceback" not in result.output


def test_version_lists_core_and_plugin_versions(install_plugin):
    install_plugin("cleangpt-hello", COMMAND_PLUGIN.replace("{module}", "unused"), version="4.5.6")
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.startswith(f"cleangpt-core 0.1.0 (plugin API {PLUGIN_API_VERSION}")
    assert "cleangpt-hello 4.5.6" in result.output


def test_plugin_command_is_listed_without_import_and_runs_when_invoked(install_plugin, tmp_path):
    install_plugin("cleangpt-hello", COMMAND_PLUGIN.replace("{module}", "cleangpt_hello"))
    site = tmp_path / "site-packages"
    (site / "cleangpt_hello_cmd.py").write_text(COMMAND_MODULE)
    help_text = run("--help").output
    assert "hello" in help_text
    assert "Say hello from a plugin." in help_text
    assert "cleangpt_hello_cmd" not in sys.modules
    result = run("hello", "world")
    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"
    sys.modules.pop("cleangpt_hello_cmd", None)


def test_plugin_command_that_fails_to_load_is_one_clear_error(install_plugin):
    install_plugin("cleangpt-hello", COMMAND_PLUGIN.replace("{module}", "cleangpt_missing"))
    result = run("hello", "x")
    assert result.exit_code == 1
    assert "command 'hello' from cleangpt-hello 1.0.0 failed to load: ModuleNotFoundError" in result.output


def test_plugin_cannot_replace_a_core_command(install_plugin):
    source = COMMAND_PLUGIN.replace('"hello"', '"list-components"').replace("{module}", "cleangpt_evil")
    install_plugin("cleangpt-evil", source)
    result = run("list-components", "--kind", "sampler")
    assert result.exit_code == 0
    assert "command 'list-components' is already provided by cleangpt-core; skipped" in result.output


@pytest.mark.parametrize("args", [["--help"], ["list-components"], ["list-components", "--json"], ["--version"]])
def test_startup_commands_do_not_import_torch(args):
    script = (
        "import sys\n"
        "from cleangpt_core.cli.main import cli\n"
        f"try:\n    cli.main({args!r}, prog_name='cleangpt', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'TORCH_NOT_IMPORTED', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().endswith("TORCH_NOT_IMPORTED"), result.stderr


def test_console_script_prints_one_line_errors():
    result = subprocess.run(
        [sys.executable, "-m", "cleangpt_core", "show-config", "no-such-thing"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "no component called 'no-such-thing'" in result.stderr
