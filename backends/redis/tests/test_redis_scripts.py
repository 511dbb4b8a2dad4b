"""The Lua scripts as files: each loads, each is run, Lua and Python agree on what they share."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, cast

import redis
from rocketman_redis import (
    RedisStorage,
    _dead_letters,
    _lua,
    _routing_scripts,
    _scripts,
    _storage,
    _subscriptions,
)
from rocketman_redis._wire import Script

from rocketman_core import Subscription

PACKAGE = Path(_lua.__file__).parent
DISTRIBUTION = PACKAGE.parent
_INCLUDE = re.compile(r"^[ \t]*--#include[ \t]+(\S+)", re.MULTILINE)


def _script_files() -> list[str]:
    return sorted(p.stem for p in (PACKAGE / "lua").glob("*.lua"))


def _all_lua() -> dict[str, str]:
    """Every .lua file of the package, raw (includes and placeholders unresolved), by relative path."""
    return {p.relative_to(PACKAGE / "lua").as_posix(): p.read_text(encoding="utf-8")
            for p in sorted((PACKAGE / "lua").rglob("*.lua"))}


def test_each_script_file_is_loaded_by_its_name_and_run_by_the_storage() -> None:
    """lua/<name>.lua is <NAME> of a script module, fully resolved; the storage holds a Script of each."""
    names = _script_files()
    assert len(names) == 17, names
    sources: dict[str, str] = {}
    for name in names:
        module = _scripts if hasattr(_scripts, name.upper()) else _routing_scripts
        text = getattr(module, name.upper())
        assert text == _lua.source(name)
        assert name.upper() in module.__all__
        assert "--#include" not in text, f"{name}: an include was left unresolved"
        assert not _lua.PLACEHOLDER.search(text), f"{name}: a placeholder was left unfilled"
        sources[name] = text
    shas = {Script(text).sha: name for name, text in sources.items()}
    assert len(shas) == len(names), "two scripts have the same text"
    assert all(re.fullmatch(r"[0-9a-f]{40}", sha) for sha in shas)
    assert all(hashlib.sha1(sources[name].encode()).hexdigest() == sha for sha, name in shas.items())
    run = {value.sha for module in (_storage, _subscriptions, _dead_letters)
           for value in vars(module).values() if isinstance(value, Script)}
    assert run == set(shas), f"scripts never run: {sorted(shas[s] for s in set(shas) - run)}"


def test_every_fragment_is_included_and_every_placeholder_is_a_python_constant() -> None:
    files = _all_lua()
    included = {name for text in files.values() for name in _INCLUDE.findall(text)}
    fragments = {path.removeprefix("include/") for path in files if path.startswith("include/")}
    assert included == fragments, "a fragment is never included, or an include names no fragment"
    used = {name for text in files.values() for name in _lua.PLACEHOLDER.findall(text)}
    assert used == set(_lua.CONSTANTS), "a placeholder is not a constant, or a constant is never used"


def test_python_and_lua_share_the_constants_defined_once() -> None:
    """The names the other modules read are the very constants the loader fills in."""
    assert _lua.CONSTANTS["TAKE_MORE_QUEUED"] == _scripts.TAKE_MORE_QUEUED
    assert _lua.CONSTANTS["TAKE_NOTHING_DUE"] == _scripts.TAKE_NOTHING_DUE
    # 16, as 0.1 wrote it: the width is part of what Redis stores.
    assert _scripts.RETRY_TAG_WIDTH == _lua.CONSTANTS["RETRY_TAG_WIDTH"] == 16
    assert _lua.CONSTANTS["NO_TABLE"] == _routing_scripts.NO_TABLE
    # A due time is 0 or more: the status codes must never look like one.
    assert _scripts.TAKE_MORE_QUEUED < 0 and _scripts.TAKE_NOTHING_DUE < 0
    assert _scripts.TAKE_MORE_QUEUED != _scripts.TAKE_NOTHING_DUE
    # Hex of random bytes: an even width.
    assert _scripts.RETRY_TAG_WIDTH % 2 == 0


def test_take_answers_with_the_status_codes_python_reads(redis_storage: RedisStorage,
                                                         redis_raw: redis.Redis) -> None:
    """On a real server: nothing pending, messages left, a retry pending; its tag is stripped exactly."""
    keys = redis_storage.keys.subscription("raw")  # TAKE called by hand: no router, no table

    def take(count: int) -> list[Any]:
        return list(redis_raw.eval(_scripts.TAKE, 5, *keys.take(), count, 30000, "t:", 1, 0))

    assert take(10) == [_scripts.TAKE_NOTHING_DUE]
    redis_raw.lpush(keys.queue, b"first", b"second")
    # Each batch under one lease: the subscription's index, then its messages.
    assert take(1) == [_scripts.TAKE_MORE_QUEUED, 0, [b"first"]]
    status, *taken = take(1)
    # Both leases are pending: the ms until the first falls due.
    assert taken == [0, [b"second"]] and 0 <= status <= 30000
    assert redis_raw.hget(keys.reserved, "#") == b"2"  # what stats() reports as reserved

    # A retry as the storage writes it is read back by TAKE as the message, to the byte.
    redis_storage.subscribe([Subscription("s", ("*",))], "test-host")
    redis_storage.push("job", b"payload")
    (delivery,) = redis_storage.reserve(("s",), 5)
    redis_storage.retry_later(delivery, b"payload, again", 0)
    (member,) = cast("list[bytes]", redis_raw.zrange(redis_storage.keys.subscription("s").delayed, 0, -1))
    tag, message = member[:_scripts.RETRY_TAG_WIDTH], member[_scripts.RETRY_TAG_WIDTH:]
    assert message == b"payload, again" and re.fullmatch(rb"[0-9a-f]+", tag)
    again = redis_storage.reserve(("s",), 5)
    assert [d.message for d in again] == [b"payload, again"]
    redis_storage.ack(again)


def test_the_scripts_ship_in_the_wheel_and_load_from_it(tmp_path: Path) -> None:
    """Built as users get it, imported from the wheel itself (a zip): every script reads the same."""
    # hatchling is in requirements-dev.txt: without it this fails, saying so, rather than skip.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(tmp_path), str(DISTRIBUTION)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = tmp_path.glob("rocketman_redis-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    missing = {f"rocketman_redis/lua/{path}" for path in _all_lua()} - shipped
    assert not missing, f"not in the wheel: {sorted(missing)}"

    program = (
        "import hashlib, rocketman_redis, rocketman_redis._scripts as s, rocketman_redis._routing_scripts as r\n"
        "print(rocketman_redis.__file__)\n"
        "for m in (s, r):\n"
        "    for n in sorted(m.__all__):\n"
        "        v = getattr(m, n)\n"
        "        if isinstance(v, str) and v.startswith('--'): print(n, hashlib.sha1(v.encode()).hexdigest())\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(wheel), os.environ.get("PYTHONPATH")]))}
    found = subprocess.run([sys.executable, "-c", program], check=True, capture_output=True, text=True,
                           env=env, timeout=60).stdout.splitlines()
    assert found[0].startswith(str(wheel)), f"imported from {found[0]}, not from the wheel"
    expected = [f"{name.upper()} {Script(_lua.source(name)).sha}" for name in _script_files()]
    assert sorted(found[1:]) == sorted(expected)
