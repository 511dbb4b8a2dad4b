"""Plugin discovery through real installed distributions, and selection by name.

The test plugins under ``tests/plugins/`` are installed with pip (fixture
``rocketman_test_plugins``); each test runs Python or the ``rocketman``
command in a subprocess that sees the plugins it names, so the entry points
come from real ``dist-info`` directories, as they would in a user's
environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from importlib import metadata
from typing import Any

import pytest

import rocketman_core
from rocketman_core import PluginError, Rocketman, UnknownBackendError, hookimpl

TIMEOUT = 30


def run_python(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a fresh interpreter; fail with its output if it fails."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def last_json(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON a script printed on its last line of output."""
    return json.loads(done.stdout.strip().splitlines()[-1])


def plugins_json(script_path: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """What ``rocketman plugins --json`` reports in ``env``."""
    done = subprocess.run([script_path, "plugins", "--json"], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def row_of(rows: list[dict[str, Any]], distribution: str) -> dict[str, Any]:
    """The ``rocketman plugins --json`` row of the plugin from ``distribution``."""
    found = [row for row in rows if row["distribution"] == distribution]
    assert len(found) == 1, f"expected one plugin from {distribution}: {rows}"
    return found[0]


# A script that selects a storage, emits through it and reports what a
# consumer saw and which SampleStorage objects were built with which label.
EMIT_THROUGH = """
    import json, rocketman_core
    app = rocketman_core.Rocketman()
    app.configure(storage={storage!r}, worker_count=2, latency=0.2)
    seen = []
    @app.on_event("order.placed")
    def record(payload):
        seen.append(payload)
    app.emit("order.placed", {{"order": 7}})
    used = app.storage
    drained = app.drain(timeout=10)
    app.shutdown(timeout=5)
    import rocketman_sample_plugin
    # configure() built one to check its options (and closed it); the emit built the one used.
    assert len(rocketman_sample_plugin.built) == 2 and rocketman_sample_plugin.built[-1] is used
    print(json.dumps({{
        "drained": drained, "seen": seen, "labels": [used.label], "urls": [used.url],
    }}))
"""


# -- an installed plugin is selectable -----------------------------------------


def test_installed_storage_is_selected_by_name(rocketman_test_plugins: Any) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    report = last_json(run_python(EMIT_THROUGH.format(storage="sample"), env))
    assert report == {"drained": True, "seen": [{"order": 7}], "labels": ["unlabelled"], "urls": [None]}


def test_installed_storage_is_selected_by_url_with_query_options(rocketman_test_plugins: Any) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    report = last_json(run_python(EMIT_THROUGH.format(storage="sample://?label=blue"), env))
    assert report["seen"] == [{"order": 7}]
    assert report["labels"] == ["blue"]
    assert report["urls"] == ["sample://"], "the factory gets the URL without its query"


def test_an_option_the_plugin_does_not_know_is_a_configuration_error_naming_it(
    rocketman_test_plugins: Any,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    done = run_python("""
        import rocketman_core
        app = rocketman_core.Rocketman()
        try:
            app.configure(storage="sample://?colour=red", worker_count=0)  # at configure, not later
        except rocketman_core.ConfigurationError as error:
            print(error)
    """, env)
    assert "sample://?colour=red" in done.stdout
    assert "rocketman-sample-plugin 1.2.3" in done.stdout
    assert "colour" in done.stdout


def test_a_relay_takes_options_beside_its_name(rocketman_test_plugins: Any) -> None:
    """relays=[("sample", {"count": 3})]: options outside a URL, as storage_options are."""
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    done = run_python("""
        import json, time, rocketman_core
        app = rocketman_core.Rocketman()
        app.configure(storage="memory", relays=[("sample", {"count": 3})], worker_count=1, latency=0.2)
        seen = []
        app.on_event("sample.relayed")(seen.append)
        app.start()
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        app.shutdown(timeout=5)
        print(json.dumps(sorted(p["n"] for p in seen)))
    """, env)
    assert done.returncode == 0, done.stderr
    assert last_json(done) == [0, 1, 2]


def test_installed_relay_is_selected_by_url_and_its_events_reach_consumers(
    rocketman_test_plugins: Any,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    done = run_python("""
        import json, time, rocketman_core
        app = rocketman_core.Rocketman()
        app.configure(storage="sample", relays=["sample://?count=3"], worker_count=2, latency=0.2)
        seen = []
        @app.on_event("sample.relayed")
        def record(payload):
            seen.append(payload)
        app.start()
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        app.shutdown(timeout=5)
        print(json.dumps(sorted(p["n"] for p in seen)))
    """, env)
    assert last_json(done) == [0, 1, 2]


def test_plugins_command_shows_distribution_version_and_what_each_provides(
    rocketman_test_plugins: Any, rocketman_console_script: str,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    rows = plugins_json(rocketman_console_script, env)
    sample = row_of(rows, "rocketman-sample-plugin")
    assert sample == {
        "name": "sample", "module": "rocketman_sample_plugin",
        "distribution": "rocketman-sample-plugin", "version": "1.2.3",
        "provides": {"storage": ["sample"], "relay": ["sample"]},
        "schemes": {"storage": {"sample": ["sample"]}, "relay": {"sample": ["sample"]}},
        "disabled": False, "error": None,
    }
    assert row_of(rows, "rocketman-redis")["schemes"] == {"storage": {"redis": ["redis", "rediss", "unix"]}}
    memory = row_of(rows, "rocketman-memory")
    assert memory["provides"] == {"storage": ["memory"]}
    assert memory["version"] == metadata.version("rocketman-memory")
    assert row_of(rows, "rocketman-threads")["provides"] == {"executor": ["threads"]}

    human = subprocess.run([rocketman_console_script, "plugins"], env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert human.returncode == 0, human.stderr
    line = next(line for line in human.stdout.splitlines() if "rocketman-sample-plugin" in line)
    assert line.split()[0] == "sample"
    for part in ("rocketman-sample-plugin 1.2.3", "ok", "storage sample", "relay sample"):
        assert part in line, line
    assert any("rocketman-memory" in line and "storage memory (memory://)" in line
               for line in human.stdout.splitlines())
    assert any("rocketman-redis" in line and "storage redis (redis://, rediss://, unix://)" in line
               for line in human.stdout.splitlines()), human.stdout


# -- a broken plugin ------------------------------------------------------------


def test_a_broken_plugin_does_not_take_the_application_down(rocketman_test_plugins: Any) -> None:
    env = rocketman_test_plugins.env("rocketman-broken-plugin")
    done = run_python("""
        import json, rocketman_core
        app = rocketman_core.Rocketman()
        app.configure(storage="memory", worker_count=1, latency=0.2)
        seen = []
        @app.on_event("still.working")
        def record(payload):
            seen.append(payload)
        app.emit("still.working", 1)
        print(json.dumps({"drained": app.drain(timeout=10), "seen": seen}))
    """, env)
    assert last_json(done) == {"drained": True, "seen": [1]}
    # Reported, not silent: the default logging shows the warning.
    assert "broken" in done.stderr and "rocketman-broken-plugin 0.0.1" in done.stderr
    assert "rocketman_no_such_dependency" in done.stderr


def test_plugins_command_shows_a_broken_plugins_error_and_succeeds(
    rocketman_test_plugins: Any, rocketman_console_script: str,
) -> None:
    env = rocketman_test_plugins.env("rocketman-broken-plugin")
    broken = row_of(plugins_json(rocketman_console_script, env), "rocketman-broken-plugin")
    assert broken["name"] == "broken" and broken["version"] == "0.0.1"
    assert broken["provides"] == {}
    assert "ModuleNotFoundError" in broken["error"]
    assert "rocketman_no_such_dependency" in broken["error"]

    human = subprocess.run([rocketman_console_script, "plugins"], env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "rocketman-broken-plugin" in line)
    assert "FAILED" in lines[at]
    assert "error:" in lines[at + 1] and "rocketman_no_such_dependency" in lines[at + 1]
    assert any("rocketman-memory" in line and " ok " in line for line in lines), "the rest loaded"


def test_selecting_what_a_broken_plugin_provides_fails_with_its_error(
    rocketman_test_plugins: Any,
) -> None:
    env = rocketman_test_plugins.env("rocketman-broken-plugin")
    done = run_python("""
        import rocketman_core
        try:
            rocketman_core.Rocketman().configure(storage="broken")
        except rocketman_core.PluginError as error:
            print(error)
    """, env)
    message = done.stdout.strip()
    assert "'broken'" in message
    assert "rocketman-broken-plugin 0.0.1" in message
    assert "No module named 'rocketman_no_such_dependency'" in message


# -- two plugins, one name ------------------------------------------------------


def test_two_plugins_registering_one_storage_name_are_reported_at_load(
    rocketman_test_plugins: Any,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin", "rocketman-shadow-plugin")
    done = run_python("""
        import logging, rocketman_core
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
        rocketman_core.Rocketman().plugins.load()
    """, env)
    warnings = [line for line in done.stderr.splitlines() if "'sample'" in line]
    assert len(warnings) == 1, done.stderr
    assert warnings[0].startswith("WARNING rocketman.plugins")
    for part in ("rocketman-sample-plugin 1.2.3", "rocketman-shadow-plugin 2.0.0",
                 "ROCKETMAN_DISABLE_PLUGINS"):
        assert part in warnings[0]


def test_selecting_a_storage_two_plugins_provide_is_an_error_naming_both(
    rocketman_test_plugins: Any, rocketman_console_script: str,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin", "rocketman-shadow-plugin")
    rows = plugins_json(rocketman_console_script, env)
    assert row_of(rows, "rocketman-sample-plugin")["provides"]["storage"] == ["sample"]
    assert row_of(rows, "rocketman-shadow-plugin")["provides"]["storage"] == ["sample", "shadow"]

    done = run_python("""
        import json, rocketman_core
        try:
            rocketman_core.Rocketman().configure(storage="sample")
        except rocketman_core.PluginError as error:
            print(error)
        # The name only one of them provides is unaffected.
        app = rocketman_core.Rocketman()
        app.configure(storage="shadow", executor="inline")
        seen = []
        @app.on_event("x")
        def record(payload):
            seen.append(payload)
        app.emit("x", 1)
        print(json.dumps(seen))
    """, env)
    message, shadow_seen = done.stdout.strip().splitlines()
    for part in ("'sample'", "rocketman-sample-plugin 1.2.3", "rocketman-shadow-plugin 2.0.0",
                 "ROCKETMAN_DISABLE_PLUGINS"):
        assert part in message
    assert json.loads(shadow_seen) == [1]


def test_disabling_one_of_two_plugins_by_environment_makes_the_name_selectable(
    rocketman_test_plugins: Any, rocketman_console_script: str,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin", "rocketman-shadow-plugin",
                                     ROCKETMAN_DISABLE_PLUGINS="shadow")
    report = last_json(run_python(EMIT_THROUGH.format(storage="sample://?label=chosen"), env))
    assert report["seen"] == [{"order": 7}]
    assert report["labels"] == ["chosen"], "the sample plugin's storage, not the shadow's"
    assert "rocketman_shadow_plugin" not in run_python(
        "import sys, rocketman_core; rocketman_core.Rocketman().plugins.load(); print(sorted(sys.modules))",
        env,
    ).stdout, "a disabled plugin is not even imported"

    shadow = row_of(plugins_json(rocketman_console_script, env), "rocketman-shadow-plugin")
    assert shadow["disabled"] is True and shadow["provides"] == {} and shadow["error"] is None
    human = subprocess.run([rocketman_console_script, "plugins"], env=env,
                           capture_output=True, text=True, timeout=TIMEOUT)
    assert any("rocketman-shadow-plugin" in line and "disabled" in line
               for line in human.stdout.splitlines()), human.stdout


def test_two_distributions_with_one_entry_point_name_are_reported(
    rocketman_test_plugins: Any, rocketman_console_script: str,
) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin", "rocketman-sample-twin")
    rows = [row for row in plugins_json(rocketman_console_script, env) if row["name"] == "sample"]
    assert {row["distribution"] for row in rows} == {"rocketman-sample-plugin", "rocketman-sample-twin"}
    loaded = [row for row in rows if row["error"] is None]
    skipped = [row for row in rows if row["error"] is not None]
    assert len(loaded) == 1 and len(skipped) == 1, rows
    assert loaded[0]["distribution"] in skipped[0]["error"], "the skipped one names the winner"
    assert "unique" in skipped[0]["error"]


# -- unknown names, plugins in code, laziness -------------------------------------


def test_a_misspelt_storage_lists_what_is_installed_and_suggests_the_nearest() -> None:
    with pytest.raises(UnknownBackendError) as raised:
        Rocketman().configure(storage="memroy")
    message = str(raised.value)
    assert "storage" in message and "'memroy'" in message
    assert f"memory (from rocketman-memory {metadata.version('rocketman-memory')})" in message
    assert "Did you mean 'memory'?" in message


def test_a_misspelt_executor_is_suggested_too() -> None:
    with pytest.raises(UnknownBackendError, match="Did you mean 'threads'"):
        Rocketman().configure(executor="thread")


class CountingStorageFactory:
    """A plugin registered in code: the storage ``counted`` over a memory queue."""

    def __init__(self) -> None:
        self.pushed: list[bytes] = []

    @hookimpl
    def register_storages(self, register: Any) -> None:
        from rocketman_memory import MemoryStorage

        pushed = self.pushed

        class CountedStorage(MemoryStorage):
            def push(self, name: str, message: bytes) -> None:
                pushed.append(message)
                super().push(name, message)

        register("counted", CountedStorage)


@pytest.mark.parametrize("when", ["before loading", "after loading"])
def test_a_plugin_registered_in_code_provides_a_storage(when: str) -> None:
    app = Rocketman()
    plugin = CountingStorageFactory()
    if when == "after loading":
        app.plugins.load()
    app.register_plugin(plugin, name="counting")
    app.configure(storage="counted", worker_count=1, latency=0.2)
    seen: list[Any] = []
    app.on_event("in.code")(seen.append)
    try:
        app.emit("in.code", {"n": 1})
        assert app.drain(timeout=10)
    finally:
        app.shutdown(timeout=5)
    assert seen == [{"n": 1}]
    assert len(plugin.pushed) == 1, "the event went through the plugin's storage"
    assert app.plugins.infos["counting"].origin == "registered in code"


def test_a_plugin_registered_in_code_is_isolated_to_its_runtime() -> None:
    app = Rocketman()
    app.register_plugin(CountingStorageFactory(), name="counting")
    app.configure(storage="counted")
    with pytest.raises(UnknownBackendError):
        Rocketman().configure(storage="counted")
    with pytest.raises(PluginError, match="already registered"):
        app.register_plugin(CountingStorageFactory(), name="counting")


class MisspeltHook:
    """A plugin whose hook is named register_storage: pluggy would accept it, and never call it."""

    @hookimpl
    def register_storage(self, register: Any) -> None:
        register("misspelt", dict)

    @hookimpl
    def register_executors(self, register: Any) -> None:
        register("half", dict)


@pytest.mark.parametrize("when", ["before loading", "after loading"])
def test_a_misspelt_hook_is_reported_like_a_broken_plugin(
    when: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Hardening 22: pluggy's check_pending finds it; the plugin is rejected whole, and says why."""
    app = Rocketman()
    if when == "after loading":
        app.plugins.load()
    with caplog.at_level("WARNING", logger="rocketman.plugins"):
        plugin = MisspeltHook()
        app.register_plugin(plugin, name="misspelt")
        app.plugins.load()
    info = app.plugins.infos["misspelt"]
    assert info.error is not None and "'register_storage'" in info.error, info.error
    assert "did you mean 'register_storages'?" in info.error
    (warning,) = [r for r in caplog.records if "misspelt" in r.getMessage()]
    assert "was rejected" in warning.getMessage()
    with pytest.raises(PluginError, match=r"failed to load: .*'register_storage'"):
        app.configure(storage="misspelt")
    with pytest.raises(UnknownBackendError, match=r"misspelt .*'register_storage'"):
        app.configure(executor="half")  # a half-broken plugin provides nothing
    assert not app.plugins.manager.is_registered(plugin), "unregistered from pluggy"


def test_a_disabled_name_is_blocked_in_pluggy_for_plugins_in_code_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ROCKETMAN_DISABLE_PLUGINS is pluggy's set_blocked: a plugin registered in code is refused too."""
    monkeypatch.setenv("ROCKETMAN_DISABLE_PLUGINS", "counting, other")
    app = Rocketman()
    plugin = CountingStorageFactory()
    app.register_plugin(plugin, name="counting")
    with pytest.raises(PluginError, match="disabled by ROCKETMAN_DISABLE_PLUGINS"):
        app.configure(storage="counting")
    assert app.plugins.manager.is_blocked("counting") and app.plugins.manager.is_blocked("other")
    assert not app.plugins.manager.is_registered(plugin)
    assert app.plugins.infos["counting"].disabled


def test_importing_the_core_loads_no_plugin(rocketman_test_plugins: Any) -> None:
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    done = run_python("""
        import sys, rocketman_core
        print("rocketman_sample_plugin" in sys.modules, "rocketman_memory" in sys.modules)
        @rocketman_core.on_event("declared.only")
        def handler(payload):
            pass
        print("rocketman_sample_plugin" in sys.modules)
        rocketman_core.Rocketman().plugins.load()
        print("rocketman_sample_plugin" in sys.modules)
    """, env)
    assert done.stdout.split() == ["False", "False", "False", "True"], (
        "plugins load when first needed, not when rocketman_core or a consumer is declared"
    )


def test_discovering_plugins_does_not_import_redis(rocketman_test_plugins: Any) -> None:
    # Whatever rocketman plugins are installed in this environment (the Redis
    # storage and relay among them once installed), discovering them must not
    # import the redis client: that happens when a Redis backend is built.
    env = rocketman_test_plugins.env("rocketman-sample-plugin")
    done = run_python("""
        import json, sys, rocketman_core
        app = rocketman_core.Rocketman()
        app.plugins.load()
        print(json.dumps({
            "heavy": sorted(m for m in ("redis", "hiredis") if m in sys.modules),
            "loaded": sorted(i.module for i in app.plugins.infos.values() if not i.error),
        }))
    """, env)
    report = last_json(done)
    installed = {ep.value for ep in metadata.entry_points(group="rocketman")}
    assert installed <= set(report["loaded"]), "every installed plugin module was imported"
    assert report["heavy"] == []


def test_module_level_api_uses_plugins_registered_in_code() -> None:
    app = Rocketman()
    with rocketman_core.using(app):
        rocketman_core.register_plugin(CountingStorageFactory(), name="counting")
        rocketman_core.configure(storage="counted", executor="inline")
        seen: list[Any] = []
        rocketman_core.on_event("module.level")(seen.append)
        rocketman_core.emit("module.level", 3)
    assert seen == [3]
