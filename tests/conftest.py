"""Shared fixtures: throwaway third-party plugin distributions for the length of one test, virtual
environments layered over the one running the tests, a real Ctrl-C, and waiting for the moment to kill a process."""

from __future__ import annotations

import itertools
import os
import signal
import site
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
import venv
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cleangpt_core.registry import reset_registry

# Tests compute with PyTorch's own kernels unless they fix others (`cleangpt_core.kernels.fixed`): measured choices
# would make a test's numbers depend on how busy the machine is. Nor is the user's kernel cache theirs to write.
os.environ["CLEANGPT_KERNELS"] = "plain"
os.environ["CLEANGPT_KERNELS_CACHE"] = str(Path(tempfile.mkdtemp(prefix="cleangpt-test-kernels-")) / "kernels.json")

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


def create_layered_venv(root: Path) -> Path:
    """A virtual environment at `root` that sees every package of the environment running the tests; returns
    its python.

    What it installs goes into its own site-packages, which comes first, so a package installed there shadows
    the running environment's copy. `venv.create(system_site_packages=True)` would not do: it exposes the
    base interpreter's packages, not those of the virtual environment the tests run in, which is how the
    README installs. Without a pip of its own, the running environment's pip and setuptools build and install
    into it, so nothing is downloaded.
    """
    venv.create(root, with_pip=False)
    own = Path(sysconfig.get_path("purelib", scheme="venv", vars={"base": str(root), "platbase": str(root)}))
    running = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    # addsitedir also runs the .pth files there, which is how editable installs put themselves on sys.path.
    line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in running if Path(d).is_dir())
    (own / "_cleangpt_tests_running_environment.pth").write_text(line + "\n", encoding="utf-8")
    return root / "bin" / "python"


@pytest.fixture(scope="session")
def layered_venv() -> Callable[[Path], Path]:
    """`create_layered_venv`, for tests that install into an environment of their own."""
    return create_layered_venv


@pytest.fixture
def ctrl_c() -> Iterator[Callable[[], None]]:
    """A function that presses Ctrl-C: a real SIGINT to this process, turned into KeyboardInterrupt by Python's
    own handler (whatever the test runner installed is put back afterwards). Code that merely raises
    KeyboardInterrupt is not the same: cleanGPT takes that for a plugin's fault."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield lambda: os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_while_running(
    process: subprocess.Popen, done: Callable[[], bool], what: str, timeout: float = 120, poll: float = 0.02
) -> None:
    """Wait until `done()` is true while `process` runs, e.g. for the first checkpoint of a run to kill; fail
    naming `what` if the process ends first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not done():
        assert process.poll() is None, f"the process ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(poll)


@pytest.fixture
def wait_for() -> Callable[..., None]:
    """`wait_while_running`, for tests that kill a process at a chosen moment."""
    return wait_while_running
