"""The trackers and lm-eval stay optional: never imported at start-up, never pulled by the default install."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import metadata, requires

import pytest
from packaging.requirements import Requirement

from cleangpt_core.config.tracking import TRACKERS

OPTIONAL = ("tensorboard", "mlflow", "wandb", "lm_eval")


@pytest.mark.parametrize("args", [["--help"], ["list-components"], ["export", "--help"], ["lm-eval", "--help"]])
def test_start_up_imports_no_tracker_and_no_lm_eval(args):
    script = (
        "import sys\n"
        "from cleangpt_core.cli.main import cli\n"
        f"try:\n    cli.main({args!r}, prog_name='cleangpt', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        f"print(sorted(name for name in {OPTIONAL!r} if name in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_the_default_install_pulls_no_tracker_and_no_lm_eval():
    always = [Requirement(line) for line in requires("cleangpt-core") if "extra ==" not in line]
    assert {requirement.name for requirement in always}.isdisjoint(
        {"tensorboard", "mlflow", "mlflow-skinny", "wandb", "lm-eval", "sqlalchemy", "alembic"}
    )


def test_every_tracker_names_an_extra_that_exists():
    extras = set(metadata("cleangpt-core").get_all("Provides-Extra"))
    assert {spec.extra for spec in TRACKERS.values()} | {"eval"} <= extras
