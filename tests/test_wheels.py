"""The distributions install from wheels into a fresh virtual environment and work together there.

Wheels of cleangpt-core, cleangpt-sasp and cleangpt-bytetok are built from the working tree and installed into
a virtual environment layered over the one running the tests: the wheels' copies shadow the working tree's,
their dependencies (torch included) are the ones installed already, so nothing is downloaded, and `pip check`
confirms that what the wheels declare is met. They are exercised through the `cleangpt` command that the
core's wheel installs: the plugins are listed with their versions, a SASP model trains for a few steps on the
byte tokenizer and generates from its checkpoint, and `new-plugin` finds its templates inside the installed
core.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = {
    "cleangpt-core": ROOT,
    "cleangpt-sasp": ROOT / "plugins" / "cleangpt-sasp",
    "cleangpt-bytetok": ROOT / "plugins" / "cleangpt-bytetok",
}
# Left behind by the README's set-up (.venv), editable installs and earlier builds; a wheel must be built
# from the sources alone.
BUILD_LEFTOVERS = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis", "runs"
)

pytestmark = pytest.mark.slow


def run(command: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    """Run a command, failing the test with its output if it fails."""
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, command))} exited with {result.returncode}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result.stdout


def build_wheel(project: Path, sources: Path, dist: Path, env: dict[str, str]) -> Path:
    """`python -m build --wheel` of a copy of `project` (so the working tree gets no build/ folder)."""
    copy = sources / project.name
    shutil.copytree(project, copy, ignore=BUILD_LEFTOVERS)
    before = set(dist.glob("*.whl"))
    run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, copy], cwd=sources, env=env)
    (wheel,) = set(dist.glob("*.whl")) - before
    return wheel


@pytest.fixture(scope="module")
def fresh_env(tmp_path_factory: pytest.TempPathFactory, layered_venv: Callable[[Path], Path]):
    """A virtual environment holding the three wheels, over this environment's packages."""
    root = tmp_path_factory.mktemp("wheels")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["CLEANGPT_CACHE_DIR"] = str(root / "token-cache")
    dist, sources = root / "dist", root / "sources"
    dist.mkdir()
    sources.mkdir()
    wheels = [build_wheel(project, sources, dist, env) for project in PROJECTS.values()]

    python = layered_venv(root / "venv")
    bin_dir = python.parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # --ignore-installed: the editable installs of this environment have the same versions; the wheels go
    # into the new environment all the same, and shadow them there.
    run(
        [python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--ignore-installed", *wheels], root, env
    )
    run([python, "-m", "pip", "check"], cwd=root, env=env)
    return root, bin_dir, env


def test_the_distributions_come_from_their_wheels(fresh_env):
    root, bin_dir, env = fresh_env
    code = "import cleangpt_core, cleangpt_sasp, cleangpt_bytetok, torch; print(torch.__version__)\n"
    code += "for module in (cleangpt_core, cleangpt_sasp, cleangpt_bytetok): print(module.__file__)"
    version, *locations = run([bin_dir / "python", "-c", code], cwd=root, env=env).split()
    assert version == torch.__version__
    assert all(Path(location).is_relative_to(root / "venv") for location in locations), locations
    assert (bin_dir / "cleangpt").is_file()


def test_list_components_shows_both_plugins_with_their_versions(fresh_env):
    root, bin_dir, env = fresh_env
    listing = json.loads(run([bin_dir / "cleangpt", "list-components", "--json"], cwd=root, env=env))
    assert listing["failures"] == []
    found = {(c["kind"], c["name"]): (c["distribution"], c["version"]) for c in listing["components"]}
    assert found[("architecture", "SASP")] == ("cleangpt-sasp", "0.1.0")
    assert found[("tokenizer", "byte")] == ("cleangpt-bytetok", "0.1.0")
    assert found[("architecture", "Vanilla")][0] == "cleangpt-core"
    table = run([bin_dir / "cleangpt", "list-components"], cwd=root, env=env)
    assert "cleangpt-sasp" in table
    assert "cleangpt-bytetok" in table


def test_sasp_trains_on_bytes_and_generates_from_its_checkpoint(fresh_env):
    root, bin_dir, env = fresh_env
    run_dir = root / "run"
    overrides = {
        "model.model_type": "SASP",
        "model.n_layer": 2,
        "model.n_head": 2,
        "model.n_embd": 32,
        "model.block_size": 32,
        "tokenizer.name": "byte",
        "trainer.max_steps": 6,
        "schedule.warmup_steps": 1,
        "trainer.eval_interval": 6,
        "trainer.eval_max_batches": 2,
        "output.dir": run_dir,
        "output.sample_tokens": 0,
        "device": "cpu",
    }
    command: list[str | Path] = [bin_dir / "cleangpt", "train"]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    log = run(command, cwd=root, env=env)
    assert "training SASP" in log
    config = json.loads((run_dir / "checkpoints" / "step-00000006" / "config.json").read_text())
    assert config["model_type"] == "SASP"
    assert config["vocab_size"] == 259  # the byte tokenizer's 256 bytes and 3 special tokens

    text = run(
        [bin_dir / "cleangpt", "generate", run_dir, "--prompt", "ROMEO:", "-n", "24", "--seed", "0"], cwd=root, env=env
    )
    assert text.startswith("ROMEO:")
    assert len(text.encode("utf-8")) > len("ROMEO:")


def test_new_plugin_finds_its_templates_in_the_installed_core(fresh_env):
    root, bin_dir, env = fresh_env
    command = [bin_dir / "cleangpt", "new-plugin", "typical", "--kind", "sampler", "--dir", root / "scaffold"]
    run(command, cwd=root, env=env)
    project = root / "scaffold" / "cleangpt-typical"
    assert (project / "pyproject.toml").is_file()
    assert (project / "cleangpt_typical" / "sampler.py").is_file()
