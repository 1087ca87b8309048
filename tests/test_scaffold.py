"""`cleangpt new-plugin` writes complete plugin projects that install, register and pass their own tests."""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from cleangpt_core import hookspecs
from cleangpt_core.cli.main import cli
from cleangpt_core.plugin_api import KINDS, PART_KINDS, PLUGIN_API_VERSION, Component
from cleangpt_core.scaffold import KIND_TEMPLATES, PluginNames, ScaffoldError, core_requirement, create_plugin_project
from cleangpt_core.scaffold.project import MAX_NAME_LENGTH, SCAFFOLD_KINDS

NAMES = {
    "sampler": "typical",
    "architecture": "parallel-gpt",
    "tokenizer": "wordpiece",
    "trainer": "agc",
    "optimizer": "lion",
    "schedule": "inverse-sqrt",
    "attention": "gated",
    "feedforward": "geglu",
    "norm": "dyt",
    "position": "sinusoidal",
    "residual": "layerscale",
}


def expected_files(names: PluginNames) -> set[str]:
    module = KIND_TEMPLATES[names.kind].module
    package = names.package
    return {
        ".gitignore",
        "README.md",
        "pyproject.toml",
        f"{package}/__init__.py",
        f"{package}/plugin.py",
        f"{package}/config.py",
        f"{package}/{module}.py",
        "tests/test_plugin.py",
        f"tests/test_{names.snake}.py",
    }


def written_files(project: Path) -> set[str]:
    return {path.relative_to(project).as_posix() for path in project.rglob("*") if path.is_file()}


@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_writes_every_file_of_a_plugin_project(kind, tmp_path):
    project = create_plugin_project(NAMES[kind], kind, tmp_path)
    names = PluginNames.parse(NAMES[kind], kind)
    assert project == tmp_path / names.distribution
    assert written_files(project) == expected_files(names)
    for path in project.rglob("*.py"):
        compile(path.read_text(encoding="utf-8"), str(path), "exec")


@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_pyproject_names_the_entry_point_and_a_core_version_range(kind, tmp_path):
    project = create_plugin_project(NAMES[kind], kind, tmp_path)
    names = PluginNames.parse(NAMES[kind], kind)
    metadata = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert metadata["name"] == names.distribution
    assert "cleangpt-core>=0.1,<0.2" in metadata["dependencies"]
    assert metadata["entry-points"]["cleangpt"] == {names.snake: f"{names.package}.plugin"}


@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_the_plugin_module_states_the_api_version_and_describes_its_component(kind, tmp_path, monkeypatch):
    project = create_plugin_project(NAMES[kind], kind, tmp_path)
    names = PluginNames.parse(NAMES[kind], kind)
    monkeypatch.syspath_prepend(str(project))
    try:
        plugin = importlib.import_module(f"{names.package}.plugin")
        assert plugin.CLEANGPT_PLUGIN_API == PLUGIN_API_VERSION
        (component,) = getattr(plugin, KIND_TEMPLATES[kind].hook)()
        assert isinstance(component, Component)
        assert (component.name, component.kind) == (names.component, kind)
        assert component.config_schema.__module__ == f"{names.package}.config"
        assert component.target.startswith(f"{names.package}.{KIND_TEMPLATES[kind].module}:")
    finally:
        for module in [m for m in sys.modules if m == names.package or m.startswith(f"{names.package}.")]:
            del sys.modules[module]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed")
@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_generated_code_is_ruff_clean_even_for_the_longest_name(kind, tmp_path):
    name = "x" * (MAX_NAME_LENGTH - len(kind)) + kind
    project = create_plugin_project(name, kind, tmp_path)
    # The project's own pyproject.toml configures ruff (120 columns, import order with its package first-party).
    for command in (["ruff", "check", "--no-cache", "."], ["ruff", "format", "--check", "--no-cache", "."]):
        result = subprocess.run(command, cwd=project, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_names_derive_from_the_one_given():
    names = PluginNames.parse("my-sampler", "sampler")
    assert (names.snake, names.camel, names.package, names.distribution) == (
        "my_sampler",
        "MySampler",
        "cleangpt_my_sampler",
        "cleangpt-my-sampler",
    )
    assert names.component == "my_sampler"
    assert PluginNames.parse("parallel-gpt", "architecture").component == "ParallelGpt"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Typical", "not valid"),
        ("9lives", "not valid"),
        ("my--sampler", "not valid"),
        ("my sampler", "not valid"),
        ("sampler-", "not valid"),
        ("cleangpt-typical", "leave out the 'cleangpt-' prefix"),
        ("x" * (MAX_NAME_LENGTH + 1), f"at most {MAX_NAME_LENGTH}"),
    ],
)
def test_an_invalid_name_is_refused_with_what_a_valid_one_looks_like(name, reason, tmp_path):
    with pytest.raises(ScaffoldError, match=reason):
        create_plugin_project(name, "sampler", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_name_an_installed_component_has_is_refused():
    with pytest.raises(ScaffoldError, match="'top_k' is provided by cleangpt-core"):
        create_plugin_project("top-k", "sampler")
    with pytest.raises(ScaffoldError, match="'Vanilla' is provided by cleangpt-core"):
        create_plugin_project("vanilla", "architecture")


def test_a_name_an_installed_distribution_has_is_refused():
    with pytest.raises(ScaffoldError, match="cleangpt-core .* is installed already"):
        create_plugin_project("core", "trainer")


def test_an_unknown_kind_is_refused():
    with pytest.raises(ScaffoldError, match="choose one of"):
        PluginNames.parse("typical", "loss")


def test_every_kind_of_component_has_a_template_registering_through_its_hook():
    assert set(SCAFFOLD_KINDS) == set(KINDS)
    assert all(hasattr(hookspecs, template.hook) for template in KIND_TEMPLATES.values())


def test_the_core_range_is_the_current_release_series():
    assert core_requirement("0.1.0") == "cleangpt-core>=0.1,<0.2"
    assert core_requirement("0.4.2") == "cleangpt-core>=0.4,<0.5"
    assert core_requirement("1.2.3") == "cleangpt-core>=1.2,<2"


def test_the_command_writes_the_project_and_says_what_to_do_next(tmp_path):
    result = CliRunner().invoke(cli, ["new-plugin", "typical", "--kind", "sampler", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cleangpt-typical" / "cleangpt_typical" / "sampler.py").is_file()
    assert "cleangpt_typical/sampler.py" in result.output
    assert "python -m pytest" in result.output


def test_the_command_never_overwrites_an_existing_folder(tmp_path):
    existing = tmp_path / "cleangpt-typical"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["new-plugin", "typical", "--kind", "sampler", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {existing} exists already; remove it or pass another --dir (nothing was written)"
    ]
    assert written_files(existing) == {"mine.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cleangpt-typical"]  # no staging folder left behind


def test_the_command_rejects_a_missing_or_unknown_kind(tmp_path):
    missing = CliRunner().invoke(cli, ["new-plugin", "typical", "--dir", str(tmp_path)])
    assert missing.exit_code == 2
    assert "--kind" in missing.output
    unknown = CliRunner().invoke(cli, ["new-plugin", "typical", "--kind", "loss", "--dir", str(tmp_path)])
    assert unknown.exit_code == 2
    assert list(tmp_path.iterdir()) == []


# -- end to end: each kind installed into a fresh environment ---------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", SCAFFOLD_KINDS)
def test_a_scaffolded_plugin_installs_is_listed_and_passes_its_own_tests(kind, tmp_path, layered_venv, monkeypatch):
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", str(tmp_path / "token-cache"))  # the training run's, not the user's
    project = create_plugin_project(NAMES[kind], kind, tmp_path / "projects")
    names = PluginNames.parse(NAMES[kind], kind)
    python = layered_venv(tmp_path / "venv")  # over this environment: torch, the core of this working tree

    def run(*arguments: str, cwd: Path = tmp_path) -> str:
        result = subprocess.run([str(python), *arguments], cwd=cwd, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{' '.join(arguments)}:\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        return result.stdout

    core = run("-c", "import cleangpt_core; print(cleangpt_core.__file__)").strip()
    assert Path(core).is_relative_to(Path(__file__).resolve().parents[1])  # the core of this working tree
    run("-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e", str(project))

    listing = json.loads(run("-m", "cleangpt_core", "list-components", "--kind", kind, "--json"))
    listed = {(c["name"], c["distribution"], c["version"]) for c in listing["components"]}
    assert (names.component, names.distribution, "0.1.0") in listed
    assert [f for f in listing["failures"] if f["distribution"] == names.distribution] == []

    output = run("-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert " passed" in output
    assert "failed" not in output and "error" not in output

    # The README's Python examples run as written, against the installed plugin.
    readme = (project / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r"^```python\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
    assert examples
    for example in examples:
        run("-c", example)

    if kind in PART_KINDS:  # a short training run with the part swapped in by config, as the README says
        run_dir = tmp_path / "run"
        run("-m", "cleangpt_core", "train", *tiny_training(run_dir), "--set", f"model.{kind}={names.component}")
        (checkpoint,) = (run_dir / "checkpoints").iterdir()
        saved = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        assert saved[kind]["name"] == names.component
        generated = run("-m", "cleangpt_core", "generate", str(run_dir), "--prompt", "ROMEO:", "-n", "12")
        assert generated.startswith("ROMEO:")


def tiny_training(run_dir: Path) -> list[str]:
    """`--set` options for a training run of a few seconds on the embedded corpus."""
    settings = {
        "model.n_layer": 1,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 16,
        "data.eval_batch_size": 256,
        "trainer.max_steps": 4,
        "schedule.warmup_steps": 1,
        "trainer.eval_interval": 4,
        "trainer.eval_max_batches": 1,
        "output.sample_tokens": 0,
        "output.dir": run_dir,
    }
    return [part for key, value in settings.items() for part in ("--set", f"{key}={value}")]
