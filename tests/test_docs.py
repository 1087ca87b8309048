"""Every code block of docs/writing-plugins.md runs, so the guide cannot drift from the code.

The conventions, also stated at the top of the guide:

- ``python`` blocks are executed in document order in one namespace, with a scratch folder as working directory;
- ``bash`` blocks run in document order, each as one ``bash -euo pipefail`` script in that folder, where
  ``python`` and ``cleangpt`` are those of a throwaway virtual environment (it sees this environment's
  packages, so torch and the core of this working tree, and what the block installs stays in it) and pip works
  offline (no index, no build isolation);
- ``toml`` blocks must parse;
- a block whose first line is ``# file: PATH`` must also be a verbatim excerpt of PATH in this repository;
- ``console`` blocks (commands that need credentials, like publishing to PyPI) and ``text`` listings are
  illustrations and do not run; a block in any other language, or none, fails the check.
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "writing-plugins.md"
RUN = {"python", "bash", "toml"}
ILLUSTRATIONS = {"console", "text"}
FENCE = re.compile(r"^```(?P<language>[\w-]*)\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int

    @property
    def where(self) -> str:
        return f"{GUIDE.relative_to(ROOT)}:{self.line}"

    @property
    def excerpt_of(self) -> Path | None:
        first, _, _ = self.code.partition("\n")
        return ROOT / first.removeprefix("# file: ").strip() if first.startswith("# file: ") else None


def blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [
        Block(match["language"], match["code"], text.count("\n", 0, match.start()) + 1)
        for match in FENCE.finditer(text)
    ]


def test_every_block_is_runnable_or_marked_as_an_illustration():
    found = blocks()
    assert found, f"no code blocks found in {GUIDE}"
    unknown = [f"{b.where} ```{b.language}" for b in found if b.language not in RUN | ILLUSTRATIONS]
    assert unknown == [], "label each block python, bash, toml, console or text"
    assert {"python", "bash"} <= {b.language for b in found}


def test_excerpts_match_the_files_they_quote():
    for block in blocks():
        if block.excerpt_of is None:
            continue
        assert block.excerpt_of.is_file(), f"{block.where} quotes {block.excerpt_of}, which does not exist"
        excerpt = block.code.partition("\n")[2]
        assert excerpt in block.excerpt_of.read_text(encoding="utf-8"), (
            f"{block.where} is no longer a verbatim excerpt of {block.excerpt_of.relative_to(ROOT)}"
        )


def test_toml_blocks_parse_and_python_blocks_compile():
    for block in blocks():
        if block.language == "toml":
            tomllib.loads(block.code)
        elif block.language == "python":
            compile(block.code, block.where, "exec", dont_inherit=True)


def throwaway_environment(root: Path) -> dict[str, str]:
    """The environment of bash blocks: a venv over this one's packages, with a `cleangpt` of its own."""
    venv.create(root, system_site_packages=True, with_pip=False)
    # When this interpreter is itself a virtual environment, "system" site-packages are its base's, not its
    # own: a .pth line adds this environment's site-packages (torch, the editable core and its .pth files).
    (site_packages,) = (root / "lib").glob("python*/site-packages")
    lines = [f"import site; site.addsitedir({directory!r})" for directory in site.getsitepackages()]
    (site_packages / "outer-environment.pth").write_text("\n".join(lines) + "\n")
    script = root / "bin" / "cleangpt"
    script.write_text(f"#!{root / 'bin' / 'python'}\nfrom cleangpt_core.cli.main import main\n\nmain()\n")
    script.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        PATH=f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        VIRTUAL_ENV=str(root),
        PIP_NO_INDEX="1",  # everything a block installs is here already or in the block's folder
        PIP_NO_BUILD_ISOLATION="0",  # pip's spelling of --no-build-isolation: build with this setuptools
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    return env


@pytest.mark.slow
def test_every_block_of_the_guide_runs(tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = throwaway_environment(tmp_path / "venv")
    env["CLEANGPT_CACHE_DIR"] = str(tmp_path / "token-cache")
    monkeypatch.setenv("CLEANGPT_CACHE_DIR", env["CLEANGPT_CACHE_DIR"])
    monkeypatch.chdir(workdir)
    namespace: dict[str, object] = {"__name__": "writing_plugins_guide"}
    for block in blocks():
        if block.language == "python":
            exec(compile(block.code, block.where, "exec", dont_inherit=True), namespace)
        elif block.language == "bash":
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.code],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, (
                f"{block.where} exited with {result.returncode}:\n{block.code}\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
    assert sys.modules.get("cleangpt_typical") is None  # the scaffolded plugin stayed in its environment
