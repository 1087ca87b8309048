"""CI runs exactly the README's commands: the set-up, main-job and test lines and .ci/run agree."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CI_SECTIONS = ("Set-up", "The main job", "Tests")


def readme_sections() -> dict[str, list[str]]:
    """The command lines of each section CI runs, in README order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = {}
    for section in CI_SECTIONS:
        match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## )", readme, flags=re.S | re.M)
        assert match is not None, f"the README has no '## {section}' section"
        blocks = re.findall(r"```bash\n(.*?)```", match.group(1), flags=re.S)
        sections[section] = [line for block in blocks for line in block.splitlines() if line.strip()]
    return sections


def ci_commands() -> list[str]:
    """The lines .ci/run hands to its `step` function, unquoted."""
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    return [shlex.split(line)[1] for line in lines if line.startswith("step ")]


def test_each_section_is_one_line_a_newcomer_copies():
    assert {section: len(lines) for section, lines in readme_sections().items()} == dict.fromkeys(CI_SECTIONS, 1)


def test_the_readme_opens_with_the_set_up():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.*)$", readme, flags=re.M)
    assert headings[:3] == list(CI_SECTIONS)


def test_ci_runs_the_readme_commands_and_nothing_else():
    assert ci_commands() == [line for lines in readme_sections().values() for line in lines]


def test_setup_creates_and_activates_a_venv_then_installs_torch_before_anything_else():
    [setup] = readme_sections()["Set-up"]
    commands = [command.strip() for command in setup.split("&&")]
    assert commands[0].startswith("python3 -m venv .venv")
    assert commands[1] == "source .venv/bin/activate"
    assert commands[2] == "python -m pip install torch==2.13.0"
    assert commands[3] == 'python -m pip install -e ".[dev]" -e plugins/cleangpt-sasp -e plugins/cleangpt-bytetok'


def test_ci_stops_at_the_first_failing_command_of_a_line():
    """`set -e` alone would carry on after `false && true`; .ci/run's `step` must not."""
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    [step] = [line for line in run.splitlines() if line.startswith("step()")]
    script = f"set -euo pipefail\n{step}\nstep 'true && false && echo unreachable'\necho carried on\n"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "carried on" not in result.stdout and "unreachable" not in result.stdout
