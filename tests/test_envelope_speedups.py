"""The optional msgspec decoder (``rocketman-core[speedups]``) accepts and refuses exactly what the standard one does."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from rocketman_core import _envelope
from rocketman_core._envelope import MalformedMessage, decode, payload_from_text


def _envelope_with(payload: str) -> bytes:
    return ('{"id":"e-1","name":"order.paid","emitted_at":1764384000.25,"attempt":0,"payload":'
            + payload + "}").encode()


#: Messages as a storage may hold them: from rocketman, from producers in
#: other languages, and broken ones.
CORPUS: list[bytes] = [
    _envelope_with('{"order": 1042, "total": "99.50", "tags": ["a", "b"], "ok": true, "none": null}'),
    _envelope_with("-0"), _envelope_with("1E5"), _envelope_with("0.1"), _envelope_with("-1.5e-300"),
    _envelope_with("1e400"), _envelope_with("-1e400"),  # overflow to infinity: accepted by both
    _envelope_with("123456789012345678901234567890"),  # past 64 bits (orjson makes it a float)
    _envelope_with('"\\ud800"'),  # an escaped lone surrogate
    _envelope_with('"\\u00e9t\\u00e9 \u00e9t\u00e9 \\n \\u0000"'),
    _envelope_with("NaN"), _envelope_with("Infinity"), _envelope_with("-Infinity"),
    _envelope_with('{"a": 1, "a": 2}'),  # duplicate keys: the last wins
    _envelope_with("[" * 3000 + "]" * 3000),  # deeper than either parser goes
    _envelope_with("[1, 2,]"), _envelope_with("/* no */ 1"), _envelope_with('"raw\ttab"'),
    b"  " + _envelope_with("1") + b"\n",  # whitespace around it
    _envelope_with("1") + b" trailing",
    "\ufeff".encode() + _envelope_with("1"),  # a byte-order mark
    _envelope_with("1").decode().encode("utf-16"),
    _envelope_with('"\xff"'.encode("latin-1").decode("latin-1")).replace(b"\xc3\xbf", b"\xff"),
    b"", b"null", b"[]", b'"just a string"', b"{", b'{"id": 5, "name": "x.y"}',
    b'{"id": "e-2", "name": "not a valid name!"}', b'{"name": "a.b"}',
    b'{"id": "e-3", "name": "a.b", "attempt": -1}', b'{"id": "e-4", "name": "a.b", "emitted_at": "now"}',
]


def _outcome(message: bytes) -> tuple[str, Any]:
    try:
        event = decode(message)
    except MalformedMessage as error:
        return "refused", str(error)
    # emitted_at defaults to now when absent: compare what the message says.
    return "accepted", (event.id, event.name, _shape(event.payload), event.attempt, event.consumer)


def _shape(value: Any) -> Any:
    """The value with its types (1 and 1.0 and True must not compare equal), NaN-safe."""
    if isinstance(value, dict):
        return ("dict", [(k, _shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [_shape(v) for v in value])
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else repr(value))
    return (type(value).__name__, value)


@pytest.fixture
def speedups() -> Iterator[None]:
    assert _envelope.use_speedups(True), (
        "msgspec is not installed: install rocketman-core[speedups] (requirements-dev.txt has it)")
    yield
    _envelope.use_speedups(_envelope._speedups_wanted())


def test_the_same_bytes_are_accepted_and_refused_with_the_same_values_and_messages(speedups: None) -> None:
    fast = [_outcome(message) for message in CORPUS]
    payloads_fast = [_payload(message) for message in CORPUS]
    assert not _envelope.use_speedups(False)
    slow = [_outcome(message) for message in CORPUS]
    payloads_slow = [_payload(message) for message in CORPUS]
    for message, with_msgspec, without in zip(CORPUS, fast, slow, strict=True):
        assert with_msgspec == without, f"{message[:80]!r}: {with_msgspec} with msgspec, {without} without"
    assert payloads_fast == payloads_slow
    assert {kind for kind, _ in slow} == {"accepted", "refused"}  # the corpus has both


def _payload(message: bytes) -> Any:
    try:
        return ("ok", _shape(payload_from_text(message.decode("utf-8", "surrogatepass"))))
    except (ValueError, RecursionError) as error:
        return ("refused", type(error).__name__)


def test_msgspec_is_imported_at_the_first_decode_and_rocketman_speedups_0_turns_it_off() -> None:
    program = ("import sys; from rocketman_core import _envelope as e; loaded = 'msgspec' in sys.modules; "
               "e.decode(e.encode('a.b', 1)); print(not loaded and e._decode_json is not e._decode_json_stdlib)")
    env = {k: v for k, v in os.environ.items() if k != "ROCKETMAN_SPEEDUPS"}
    found = [subprocess.run([sys.executable, "-c", program], env={**env, **extra}, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
             for extra in ({}, {"ROCKETMAN_SPEEDUPS": "0"})]
    assert found == ["True", "False"]


def test_emit_still_encodes_with_the_standard_library_and_refuses_nan() -> None:
    """Fast JSON encoders write NaN as null: encoding stays with the standard library."""
    from rocketman_core import Rocketman

    app = Rocketman()
    app.configure(executor="inline")
    with pytest.raises(Exception, match="nan, inf or -inf is not JSON"):
        app.emit("order.paid", {"total": float("nan")})
    app.shutdown()
    assert json.loads(_envelope.encode("a.b", {"x": 1.5}))["payload"] == {"x": 1.5}
