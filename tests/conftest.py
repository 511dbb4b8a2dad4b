"""Fixtures shared by the core's tests: test plugins really installed, and the console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN_SOURCES = Path(__file__).parent / "plugins"


class InstalledTestPlugins:
    """The distributions under ``tests/plugins/``, each pip-installed in a directory of its own.

    A subprocess sees the plugins whose directories are on its ``PYTHONPATH``,
    so ``importlib.metadata`` finds their ``dist-info`` as it would in any
    environment; :meth:`env` builds that environment.
    """

    def __init__(self, sites: dict[str, Path]) -> None:
        self.sites = sites

    def env(self, *names: str, **variables: str) -> dict[str, str]:
        """``os.environ`` without ``ROCKETMAN_*``, seeing the plugins ``names``, plus ``variables``."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
        env.pop("PYTHONPATH", None)
        if names:
            env["PYTHONPATH"] = os.pathsep.join(str(self.sites[name]) for name in names)
        env.update(variables)
        return env


@pytest.fixture(scope="session")
def rocketman_test_plugins(tmp_path_factory: pytest.TempPathFactory) -> InstalledTestPlugins:
    """Install every test plugin distribution with pip (no network, no build isolation)."""
    root = tmp_path_factory.mktemp("rocketman-test-plugins")
    sources = sorted(path for path in PLUGIN_SOURCES.iterdir() if (path / "pyproject.toml").exists())
    installs = {
        source.name: subprocess.Popen(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
             "--no-build-isolation", "--disable-pip-version-check",
             "--target", str(root / source.name), str(source)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for source in sources
    }
    for name, process in installs.items():
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, f"pip could not install the test plugin {name}:\n{output}"
    return InstalledTestPlugins({name: root / name for name in installs})


@pytest.fixture(scope="session")
def rocketman_console_script() -> str:
    """The path of the installed ``rocketman`` command (beside this interpreter)."""
    beside = Path(sys.executable).with_name("rocketman")
    found = str(beside) if beside.exists() else shutil.which("rocketman")
    assert found, (
        "the rocketman console script is not installed: "
        f"{sys.executable} -m pip install -e . (from the repository root)"
    )
    return found
