"""A consumer's name is its subscription's: the same in every process that imports the same code."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from rocketman_core import Consumer, Rocketman, identity_of

ROCKETMAN = str(Path(sys.executable).with_name("rocketman"))

APP = '''
import rocketman_core as rocketman


@rocketman.on_event("order.placed")
def handler(payload):
    pass


class Mailer(rocketman.Consumer):
    @rocketman.on_event("user.signed_up")
    def welcome(self, payload):
        pass


if __name__ == "__main__":
    print(" ".join(c.name for c in rocketman.current().consumers.all()))
'''


def _env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROCKETMAN_")}
    env.pop("PYTHONPATH", None)
    return env


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=_env(), capture_output=True, text=True, timeout=60)


def test_a_script_names_its_consumers_as_rocketman_worker_does(tmp_path: Path) -> None:
    """``python app.py`` and ``rocketman worker app`` give the same names: ``app:handler``."""
    (tmp_path / "app.py").write_text(APP)
    ran = _run(sys.executable, "app.py", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["app:handler", "app:Mailer.welcome"]

    worker = subprocess.Popen([ROCKETMAN, "worker", "app", "--workers", "1"], cwd=tmp_path,
                              env=_env(), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert worker.stderr is not None
        started = next(line for line in worker.stderr if "rocketman worker started" in line)
    finally:
        worker.terminate()
        worker.wait(20)
    assert "app:handler on 'order.placed'" in started
    assert "app:Mailer.welcome on 'user.signed_up'" in started


def test_a_script_inside_a_package_and_python_m_name_it_by_its_dotted_module(tmp_path: Path) -> None:
    """``python shop/app.py`` (a package) and ``python -m shop.app`` both give ``shop.app:handler``."""
    package = tmp_path / "shop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text(APP)
    for args in ((sys.executable, "shop/app.py"), (sys.executable, "-m", "shop.app")):
        ran = _run(*args, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split() == ["shop.app:handler", "shop.app:Mailer.welcome"], args


def test_names_that_cannot_be_stable_are_warned_about_on_a_shared_storage(
    tmp_path: Path, rocketman_redis_server: Any,
) -> None:
    """Code given with -c, a lambda, two namesakes: a WARNING each, asking for name=."""
    code = textwrap.dedent(f'''
        import logging, uuid
        import rocketman_core as rocketman
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        rocketman.configure(storage="{rocketman_redis_server.url}?namespace=names-" + uuid.uuid4().hex,
                            worker_count=1)
        rocketman.on_event("a")(lambda payload: None)

        @rocketman.on_event("b")
        def named_well(payload):
            pass

        @rocketman.on_event("c", name="stable.name")
        def given(payload):
            pass

        rocketman.start()
        print(" ".join(c.name for c in rocketman.current().consumers.all()))
        rocketman.shutdown()
    ''')
    ran = _run(sys.executable, "-c", code, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    names = ran.stdout.split()
    assert names == ["__main__:<lambda>", "__main__:named_well", "stable.name"]
    warnings = [line for line in ran.stderr.splitlines() if "has no stable name" in line]
    assert len(warnings) == 2, ran.stderr
    assert all("-c" in line and 'name="..."' in line for line in warnings), warnings
    assert not any("stable.name" in line for line in warnings)


def test_memory_does_not_warn_about_unstable_names(caplog: pytest.LogCaptureFixture) -> None:
    """On a storage inside one process, no other process looks a subscription up by name."""
    app = Rocketman()
    app.configure(storage="memory", worker_count=1, latency=0.2)
    app.on_event("x")(lambda payload: None)
    with caplog.at_level(logging.WARNING, logger="rocketman"):
        app.emit("x")
        assert app.drain(timeout=5)
    app.shutdown(timeout=5)
    assert not [r for r in caplog.records if "stable name" in r.getMessage()]


def test_namesakes_get_numbers_and_are_marked_unstable() -> None:
    """Two functions sharing a qualname on different patterns both stay, the second as ``#2``."""
    app = Rocketman()
    for topic in ("first", "second"):
        @app.on_event(topic)
        def handle(payload: Any) -> None:
            pass
    names = [c.name for c in app.consumers.all()]
    base = identity_of(handle)
    assert names == [base, f"{base}#2"]
    assert app.consumers.by_name[f"{base}#2"].unstable is not None
    assert app.consumers.by_name[base].unstable is None


def test_a_redefinition_replaces_and_a_second_decorator_adds_a_pattern() -> None:
    """Re-running a definition replaces it; decorating one function twice listens to both."""
    app = Rocketman()
    for _ in range(2):  # a module reloaded, a notebook cell run again
        @app.on_event("again")
        def redefined(payload: Any) -> None:
            pass
    assert [c.function for c in app.consumers.all()] == [redefined]

    @app.on_event("one")
    @app.on_event("two")
    def both(payload: Any) -> None:
        pass
    spec = app.consumers.by_name[identity_of(both)]
    assert spec.patterns == ("two", "one")
    assert [c.name for c in app.consumers.for_name("one")] == [spec.name]


def test_explicit_names_are_checked_at_the_decorator() -> None:
    """A bad name, a bad start, or a name another function has: a ValueError naming it, at once."""
    app = Rocketman()
    with pytest.raises(ValueError, match="invalid consumer name 'has space'"):
        app.on_event("x", name="has space")
    with pytest.raises(ValueError, match="invalid start 'later'"):
        app.on_event("x", start="later")

    @app.on_event("x", name="billing.book")
    def first(payload: Any) -> None:
        pass

    with pytest.raises(ValueError, match=r"'billing\.book' is already used by"):
        @app.on_event("y", name="billing.book")
        def second(payload: Any) -> None:
            pass


def test_consumer_classes_take_name_and_start() -> None:
    """A Consumer method's ``@on_event`` takes the same ``name=`` and ``start=``."""
    import rocketman_core

    app = Rocketman()
    with rocketman_core.using(app):
        class Mailer(Consumer):
            @rocketman_core.on_event("user.signed_up", name="mailer.welcome", start="now")
            def welcome(self, payload: Any) -> None:
                pass

    (spec,) = app.consumers.all()
    assert (spec.name, spec.patterns, spec.start, spec.owner) == (
        "mailer.welcome", ("user.signed_up",), "now", Mailer)
    assert spec.subscription().start == "now"
