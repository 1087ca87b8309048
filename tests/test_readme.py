"""CI runs exactly the README's commands: the set-up, test (and main-job) blocks and .ci/run agree."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI_SECTIONS = ("Set-up", "The main job", "Tests")


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for section in CI_SECTIONS:
        match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", readme, flags=re.S | re.M)
        if match is None:
            continue
        for block in re.findall(r"```bash\n(.*?)```", match.group(1), flags=re.S):
            commands += [line for line in block.splitlines() if line.strip()]
    return commands


def ci_commands() -> list[str]:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("#", "set ", "cd "))]


def test_ci_runs_the_readme_commands_and_nothing_else():
    assert readme_commands()
    assert ci_commands() == readme_commands()


def test_setup_installs_cpu_torch_before_anything_else():
    assert readme_commands()[0] == "python -m pip install torch==2.13.0"
