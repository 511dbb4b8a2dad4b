"""Meta-tests that keep the plugin surface honest, like datasette's.

Every hook specification in ``rocketman_core/_hookspecs.py`` must have a
docstring with a ``:param`` for each argument, be documented in
CONTRIBUTING.md, and be named by a test. A new hook without them fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pluggy
import pytest

from rocketman_core import _hookspecs

ROOT = Path(__file__).resolve().parent.parent
CONTRIBUTING = ROOT / "CONTRIBUTING.md"


def _hookspec_names() -> list[str]:
    # pluggy's public parser recognises exactly what add_hookspecs would.
    manager = pluggy.PluginManager("rocketman")
    return sorted(name for name in dir(_hookspecs)
                  if manager.parse_hookspec_opts(_hookspecs, name) is not None)


HOOKS = _hookspec_names()


def _test_sources() -> list[Path]:
    """The Python files of every test directory pytest collects, but this one."""
    folders = [ROOT / "tests", *ROOT.glob("backends/*/tests"), *ROOT.glob("relays/*/tests")]
    this = Path(__file__).resolve()
    return [path for folder in folders for path in folder.rglob("*.py")
            if path.resolve() != this]


def test_the_hook_specifications_are_found() -> None:
    """The meta-tests below see the hooks (guards against passing on an empty list)."""
    assert "register_storages" in HOOKS and "register_relays" in HOOKS, HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_documents_every_argument(hook: str) -> None:
    """A hook's docstring says what it is for and has ``:param name:`` for each argument."""
    function = getattr(_hookspecs, hook)
    doc = inspect.getdoc(function)
    assert doc, f"hook {hook} has no docstring"
    missing = [name for name in inspect.signature(function).parameters
               if not re.search(rf":param {re.escape(name)}:", doc)]
    assert not missing, f"hook {hook}: its docstring has no `:param NAME:` for {missing}"


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_is_documented_in_contributing(hook: str) -> None:
    """Plugin authors find every hook in CONTRIBUTING.md."""
    assert CONTRIBUTING.exists(), (
        f"CONTRIBUTING.md is missing at {CONTRIBUTING}: it must document the hook {hook}")
    text = CONTRIBUTING.read_text(encoding="utf-8")
    assert re.search(rf"\b{re.escape(hook)}\b", text), (
        f"hook {hook} is not mentioned in CONTRIBUTING.md: document it for plugin authors")


@pytest.mark.parametrize("hook", HOOKS)
def test_each_hook_is_named_by_a_test(hook: str) -> None:
    """Some test (or test plugin) names the hook, so it is exercised somewhere."""
    pattern = re.compile(rf"\b{re.escape(hook)}\b")
    naming = [path for path in _test_sources()
              if pattern.search(path.read_text(encoding="utf-8", errors="replace"))]
    assert naming, (f"hook {hook} is named by no test under tests/, backends/*/tests or "
                    "relays/*/tests: write one that exercises it")
