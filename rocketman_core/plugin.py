"""What a plugin author imports: the core's rules and the helpers every plugin needs.

A storage, executor or relay plugin imports from here rather than writing
its own copy of a rule the core already has, so that plugins and core never
disagree::

    from rocketman_core.plugin import (
        Register, RateLimitedLog, StorageUnavailable, option_seconds, relay_payload,
        validate_event_name,
    )

* :class:`Register`: the type of the ``register(name, factory)`` callback the
  registration hooks (``register_storages``, ``register_executors``,
  ``register_relays``) receive; :data:`hookimpl` marks the hooks.
* :func:`validate_event_name`: the core's rule for event names, the one
  ``emit`` applies.
* :func:`pattern_regex`: the core's rule for patterns (``*`` stands for any
  characters, every other character for itself), as a compiled regex whose
  ``match(name)`` says whether an event name matches: what a storage that
  routes by subscription patterns matches with.
* :func:`relay_payload`: the relay payload rule, "JSON if it parses, else
  the text", that every relay follows (see :class:`rocketman_core.Relay`).
* :func:`option_seconds`, :func:`option_number`, :func:`option_integer`,
  :func:`option_boolean`: an option's value from Python or from a URL's query
  string (always a string), or a ``ValueError`` that names the option, the
  value and what it must be.
* :class:`RateLimitedLog`: at most one log record per kind of problem and
  period, saying how many were held back: a flood of bad messages must not
  become a flood of log records.
* :class:`StorageUnavailable`: the base of the error a storage raises when
  its server cannot be reached; :class:`BacklogFull`, what a relay's
  ``emit`` raises when consumers are behind.

Importing this module imports nothing beyond the standard library and the
core.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from typing import Any

from ._consumers import _compile
from ._contracts import EmitFunction
from ._envelope import validate_name
from ._errors import BacklogFull, StorageUnavailable
from ._hookspecs import Register, hookimpl
from ._urls import mask_url, url_query

__all__ = [
    "BacklogFull",
    "EmitFunction",
    "RateLimitedLog",
    "Register",
    "StorageUnavailable",
    "hookimpl",
    "mask_url",
    "option_boolean",
    "option_integer",
    "option_number",
    "option_seconds",
    "pattern_regex",
    "relay_payload",
    "url_query",
    "validate_event_name",
]

#: Return ``name`` if it is a valid event name, else raise ``ValueError``
#: saying why: 1 to 255 characters, without whitespace or ``*`` (which is for
#: patterns). The very function ``emit`` applies; a relay that checks a name
#: before emitting can count a bad one as a drop instead of catching emit's error.
validate_event_name = validate_name

#: The compiled regex of a pattern: ``pattern_regex("user.*").match(name)``
#: is true when the event ``name`` matches it, as the core's consumers match.
pattern_regex = _compile


# -- the relay payload rule ----------------------------------------------------


def relay_payload(data: bytes | str) -> Any:
    """The payload of a relayed message: its JSON value if it is strict JSON, else the text.

    Strict JSON: Python's parser also takes ``NaN``, ``Infinity`` and numbers
    beyond a double's range (``1e400`` would become infinity), which ``emit``
    cannot encode; such a text stays a string, one rule for all three. So
    does JSON nested deeper than the parser's stack: as text it still
    reaches the consumer. Nothing is evaluated: the standard library's JSON
    parser, nothing else.

    :param data: the message as the outside system gives it; bytes must be UTF-8.
    :raises UnicodeDecodeError: (a ``ValueError``) when ``data`` is bytes
        that are not UTF-8. Such a message is not an event: the relay drops
        it, counts it and logs it (rate-limited); it never emits bytes nor a
        lossy decoding of them.
    """
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError):
        return text


def _reject_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text} is beyond the range of a JSON number")
    return value


# -- options -------------------------------------------------------------------

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def option_seconds(option: str, value: Any, *, default: float | None = None,
                   minimum: float = 0.0, exclusive: bool = False, zero_means: str | None = None,
                   backend: str = "") -> float:
    """A duration option, in seconds: a number or the text of one, finite and in range.

    At most ``threading.TIMEOUT_MAX``, so that every wait may use it.

    :param option: the option's name, for the message.
    :param value: what was given: a number, a string (from a URL), or None.
    :param default: returned when ``value`` is None; without one, None is an error.
    :param minimum: the smallest value allowed (inclusive, unless ``exclusive``).
    :param exclusive: the value must be more than ``minimum``, not equal to it.
    :param zero_means: what 0 means, when it is allowed (``"no limit"``), for the message.
    :param backend: who takes the option (``"redis storage"``), the message's prefix.
    :raises ValueError: ``[backend: ]option 'lease' must be a finite number of
        seconds, more than 0, not 'soon'``.
    """
    return _real(option, value, "a finite number of seconds", default, minimum, exclusive,
                 zero_means, backend, maximum=threading.TIMEOUT_MAX)


def option_number(option: str, value: Any, *, default: float | None = None,
                  minimum: float = 0.0, exclusive: bool = False, zero_means: str | None = None,
                  backend: str = "") -> float:
    """A number option that is not a duration (a ratio, a rate): finite and in range.

    The parameters and the message are those of :func:`option_seconds`.
    """
    return _real(option, value, "a finite number", default, minimum, exclusive,
                 zero_means, backend, maximum=math.inf)


def option_integer(option: str, value: Any, *, default: int | None = None, minimum: int = 0,
                   zero_means: str | None = None, backend: str = "") -> int:
    """A count or a size: an integer or the text of one, at least ``minimum``.

    A float (``2.5``, even ``2.0``) or a bool is refused, not truncated.
    The parameters are those of :func:`option_seconds`.

    :raises ValueError: ``[backend: ]option 'max_bytes' must be an integer,
        at least 1, not 'lots'``.
    """
    if value is None and default is not None:
        return default
    expected = f"an integer, {_range(minimum, False, zero_means)}"
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None or number < minimum:
        raise ValueError(_message(backend, option, expected, value))
    return number


def option_boolean(option: str, value: Any, *, default: bool | None = None,
                   backend: str = "") -> bool:
    """A switch: True or False, or from a string ``1, true, yes, on`` / ``0, false, no, off``.

    Case and surrounding spaces do not matter in a string; nothing else is
    taken (``2`` or ``"maybe"`` is an error, not true).

    :raises ValueError: ``[backend: ]option 'debug' must be true or false
        (1, true, yes, on; 0, false, no, off), not 'maybe'``.
    """
    if value is None and default is not None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    expected = f"true or false ({', '.join(_TRUE)}; {', '.join(_FALSE)})"
    raise ValueError(_message(backend, option, expected, value))


def _real(option: str, value: Any, kind: str, default: float | None, minimum: float,
          exclusive: bool, zero_means: str | None, backend: str, *, maximum: float) -> float:
    if value is None and default is not None:
        return default
    expected = f"{kind}, {_range(minimum, exclusive, zero_means)}"
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < minimum or (
            exclusive and number == minimum):
        raise ValueError(_message(backend, option, expected, value))
    if number > maximum:
        raise ValueError(_message(backend, option, f"{expected}, at most {maximum:g}", value))
    return number


def _range(minimum: float, exclusive: bool, zero_means: str | None) -> str:
    if exclusive:
        return f"more than {minimum:g}"
    text = f"at least {minimum:g}"
    if minimum == 0 and zero_means:
        text += f" (0: {zero_means})"
    return text


def _message(backend: str, option: str, expected: str, value: Any) -> str:
    prefix = f"{backend}: " if backend else ""
    # A value may be a URL with a password in it: never show that.
    shown = repr(mask_url(value)) if isinstance(value, str) else repr(value)
    return f"{prefix}option {option!r} must be {expected}, not {shown}"


# -- logging -------------------------------------------------------------------


class RateLimitedLog:
    """Logs at most one record per key every ``period`` seconds, saying how many were held back.

    A relay that receives a flood of bad messages (or a storage that keeps
    failing) logs the first of each kind at once, then one record a period,
    each saying how many of its kind were held back since the previous one.
    Held-back records still go to ``logger`` at ``held_back_level`` (DEBUG by
    default; None drops them), so that a debugging session sees every one.
    Thread-safe.

    :param logger: where the records go.
    :param period: seconds between two records of one key.
    :param held_back_level: the level of the records held back, or None.
    """

    def __init__(self, logger: logging.Logger, period: float, *,
                 held_back_level: int | None = logging.DEBUG) -> None:
        self.logger = logger
        self.period = period
        self.held_back_level = held_back_level
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, key: str, level: int, message: str, *args: Any) -> bool:
        """Log ``message % args`` at ``level`` unless a record of ``key`` went out within the period.

        :param key: the kind of problem (a drop reason): each key has its own period.
        :returns: whether the record went out at ``level`` (False: held back).
        """
        now = time.monotonic()
        with self._lock:
            allowed = now >= self._next.get(key, -math.inf)
            if allowed:
                self._next[key] = now + self.period
                held = self._held.pop(key, 0)
            else:
                self._held[key] = self._held.get(key, 0) + 1
        if not allowed:
            if self.held_back_level is not None:
                self.logger.log(self.held_back_level, message, *args)
            return False
        if held:
            message += f" ({held} more of these held back since the last record)"
        self.logger.log(level, message, *args)
        return True

    def held_back(self, key: str) -> int:
        """How many records of ``key`` were held back since the last one that went out."""
        with self._lock:
            return self._held.get(key, 0)
