"""The distribution as users meet it: installed with pip, found by entry point, selected by URL."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import rocketman_core

INSTALL_HINT = "pip install -e examples/rocketman-nats"


def test_the_installed_distribution_provides_the_relay_nats() -> None:
    """rocketman finds the plugin through its entry point, with its distribution and version."""
    app = rocketman_core.Rocketman()
    app.plugins.load()
    info = app.plugins.infos.get("nats")
    assert info is not None, f"no plugin named 'nats': is rocketman-nats installed? ({INSTALL_HINT})"
    assert info.error is None
    assert (info.distribution, info.version) == ("rocketman-nats", metadata.version("rocketman-nats"))
    assert info.module == "rocketman_nats"
    assert info.provides == {"relay": ["nats"]}


def test_rocketman_plugins_lists_it() -> None:
    """The ``rocketman plugins`` command shows the plugin and what it provides."""
    script = Path(sys.executable).with_name("rocketman")
    assert script.exists(), f"the rocketman command is not installed beside {sys.executable}"
    done = subprocess.run([str(script), "plugins", "--json"], capture_output=True, text=True,
                          timeout=60, env=_environment())
    assert done.returncode == 0, done.stderr
    plugins = {plugin["name"]: plugin for plugin in json.loads(done.stdout)}
    assert plugins["nats"]["distribution"] == "rocketman-nats"
    assert plugins["nats"]["provides"] == {"relay": ["nats"]}
    assert plugins["nats"]["error"] is None


def test_events_published_on_nats_reach_consumers_end_to_end(
    nats_url: str, nats_subject_root: str, nats_publisher: Any
) -> None:
    """relays=["nats://...?subjects=..."] with memory and threads: NATS -> storage -> consumer."""
    root = nats_subject_root
    app = rocketman_core.Rocketman()
    app.configure(storage="memory", executor="threads", worker_count=2, latency=0.2,
                  relays=[f"{nats_url}?subjects={root}.>"])
    received: list[Any] = []
    arrived = threading.Event()

    @app.on_event(f"{root}.probe")
    def probe(payload: Any) -> None:
        arrived.set()

    @app.on_event(f"{root}.orders.created")
    def ship(payload: Any) -> None:
        received.append(payload)
        arrived.set()

    threads_before = set(threading.enumerate())
    app.start()
    try:
        _publish_until(lambda: nats_publisher.publish(f"{root}.probe", "{}"), arrived)
        arrived.clear()
        nats_publisher.publish(f"{root}.orders.created", '{"id": 42}')
        assert arrived.wait(10), "the consumer did not receive the relayed event"
        assert received == [{"id": 42}]
    finally:
        assert app.shutdown(timeout=5)
    relay_threads = [t for t in set(threading.enumerate()) - threads_before
                     if t.name == "rocketman-relay-nats"]
    assert not relay_threads, "shutdown() left the relay's thread running"


def test_a_program_selects_the_relay_from_the_environment(
    nats_url: str, nats_subject_root: str, tmp_path: Path
) -> None:
    """``ROCKETMAN_RELAYS`` alone brings the relay into an unmodified program.

    Commas separate relays there: a relay URL that holds commas goes in a
    JSON list.
    """
    root = nats_subject_root
    program = tmp_path / "program.py"
    program.write_text(textwrap.dedent(f"""
        import asyncio, json, threading, time
        import nats
        import rocketman_core as rocketman

        seen = {{}}
        both = threading.Event()

        @rocketman.on_event("a.created")
        @rocketman.on_event("b.paid")
        def record(payload, event):
            seen[event.name] = payload
            if len(seen) == 2:
                both.set()

        async def publish_until_seen():
            client = await nats.connect({nats_url!r})
            deadline = time.monotonic() + 10
            while not both.is_set() and time.monotonic() < deadline:
                await client.publish("{root}.a.created", b'{{"order": 1}}')
                await client.publish("{root}.b.paid", b"cash")
                await client.flush()
                await asyncio.sleep(0.05)
            await client.close()

        rocketman.start()
        asyncio.run(publish_until_seen())
        rocketman.shutdown(timeout=5)
        print(json.dumps(seen, sort_keys=True))
    """))
    relays = json.dumps([f"{nats_url}?subjects={root}.a.>,{root}.b.>&prefix={root}."])
    done = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=60,
        env=_environment(ROCKETMAN_RELAYS=relays, ROCKETMAN_LATENCY="0.2"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"a.created": {"order": 1}, "b.paid": "cash"}


def test_nats_is_imported_when_a_relay_is_built_not_when_plugins_load() -> None:
    """Discovering plugins stays cheap: nats-py is imported by the relay, not the plugin module."""
    code = textwrap.dedent("""
        import sys
        import rocketman_core
        app = rocketman_core.Rocketman()
        app.plugins.load()
        assert "nats" in app.plugins.infos, "the plugin did not load"
        print("after load:", "nats" in sys.modules)
        app.plugins.build("relay", "nats://127.0.0.1:4222?subjects=x.>")
        print("after build:", "nats" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=_environment())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["after load: False", "after build: True"]


def test_a_disabled_plugin_cannot_be_selected(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switched off with ROCKETMAN_DISABLE_PLUGINS, ``nats`` is unavailable, and says why."""
    monkeypatch.setenv("ROCKETMAN_DISABLE_PLUGINS", "nats")
    app = rocketman_core.Rocketman()
    with pytest.raises(rocketman_core.PluginError, match="disabled"):
        app.configure(storage="memory", relays=["nats://127.0.0.1:4222"])


def test_unknown_options_are_a_configuration_error() -> None:
    """A misspelt option in the URL fails at configuration, naming it, not in the relay's thread."""
    app = rocketman_core.Rocketman()
    with pytest.raises(rocketman_core.ConfigurationError, match="subject"):
        app.configure(storage="memory", executor="inline", relays=["nats://127.0.0.1:4222?subject=x"])
    app.shutdown(timeout=5)


def test_the_core_has_no_code_that_knows_about_nats() -> None:
    """The promise of the plugin system: nothing in rocketman_core names this plugin."""
    core = Path(rocketman_core.__file__).parent
    mention = re.compile(r"rocketman[_-]nats|import nats|from nats|[\"']nats[\"']|nats://", re.I)
    found = [f"{path.relative_to(core)}: {line.strip()}"
             for path in sorted(core.rglob("*.py"))
             for line in path.read_text(encoding="utf-8").splitlines() if mention.search(line)]
    assert not found, "the core knows about the NATS plugin:\n" + "\n".join(found)


def _publish_until(publish: Any, arrived: threading.Event, timeout: float = 10.0) -> None:
    # The relay subscribes in its own thread after start() returned, and core
    # NATS keeps nothing for subscribers to come: publish until one arrives.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish()
        if arrived.wait(0.1):
            return
    pytest.fail(f"nothing published on NATS reached a consumer within {timeout}s")


def _environment(**variables: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
    env.update(variables)
    return env
