"""Settings: from ``configure(...)`` arguments, then ``ROCKETMAN_*``, then defaults."""

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

from ._errors import ConfigurationError

__all__ = ["Settings", "ENV_PREFIX"]

ENV_PREFIX = "ROCKETMAN_"


class Settings(NamedTuple):
    """Every setting of a rocketman runtime, validated.

    :param storage: a storage name (``"memory"``), a URL whose scheme names it
        (``"redis://localhost:6379/0?namespace=app"``), or a storage object.
    :param executor: an executor name (``"threads"``, ``"inline"``) or object.
    :param relays: relays started by ``start()``: names, URLs, objects, or
        ``(name or URL, {options})`` pairs (options beside a URL's own).
    :param worker_count: workers per process; 0 makes a producer-only process.
    :param latency: the longest a worker blocks on the storage before it
        checks whether it should stop, in seconds. Not a delay: a worker takes
        the next event as soon as it is there.
    :param debug: log a DEBUG record for every emit and dispatch.
    :param max_retries: how often a failing consumer is retried before its
        event goes to the dead letters for it.
    :param retry_backoff: the first retry's delay in seconds; doubled at each
        attempt, with jitter (each delay is drawn between half and all of it).
    :param retry_backoff_max: the cap of a retry's delay, in seconds.
    :param shutdown_timeout: how long shutdown (and interpreter exit) waits
        for the workers to finish what is queued, in seconds.
    :param batch_size: the most messages one worker reserves at once.
    :param storage_options: keyword arguments for the storage's factory.
    :param executor_options: keyword arguments for the executor's factory.
    :param subscription_stale_after: seconds after which a subscription that
        no live process hosts is flagged as stale (``rocketman
        subscriptions``, and one WARNING in each hosting process).
    :param subscription_expire_after: seconds after which hosting processes
        remove, with its backlog, a subscription no process has hosted; 0
        (the default) never removes one.
    :param async_concurrency: the most ``async def`` consumers in flight at
        once in a process (awaiting together on its event loop); a worker
        waits for a free place before it starts another.
    :param relay_backlog_bytes: the most bytes of events a storage in this
        process's memory may hold before a relay's emit is refused
        (:class:`BacklogFull`: the relay drops the message and counts it);
        0 does not bound it. A durable storage is bounded by its server.
    """

    storage: Any = "memory"
    executor: Any = "threads"
    relays: tuple[Any, ...] = ()
    worker_count: int = 5
    latency: float = 3.0
    debug: bool = False
    max_retries: int = 3
    retry_backoff: float = 1.0
    retry_backoff_max: float = 300.0
    shutdown_timeout: float = 10.0
    batch_size: int = 64
    storage_options: Mapping[str, Any] = MappingProxyType({})
    executor_options: Mapping[str, Any] = MappingProxyType({})
    subscription_stale_after: float = 86400.0
    subscription_expire_after: float = 0.0
    relay_backlog_bytes: int = 64 * 1024 * 1024
    async_concurrency: int = 100

    @classmethod
    def resolve(cls, overrides: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from ``overrides`` (explicit arguments), else the environment, else defaults."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        from_env: dict[str, str] = {}
        for name in cls._fields:
            parse = _PARSERS.get(name)
            key = ENV_PREFIX + name.upper()
            if name in overrides:
                values[name] = overrides[name]
            elif parse is not None and environ.get(key, "").strip():
                try:
                    values[name] = parse(environ[key].strip())
                except ValueError as error:
                    raise ConfigurationError(f"{key}={environ[key]!r}: {error}") from None
                from_env[name] = key
        settings = cls()._replace(**values)
        try:
            settings.validate()
        except _BadSetting as error:
            variable = from_env.get(error.setting)
            if variable is None:
                raise
            # The value came from the environment: say which variable.
            raise ConfigurationError(f"{variable}={environ[variable]!r}: {error}") from None
        return settings

    def validate(self) -> None:
        """Raise :class:`ConfigurationError` for a value that cannot work."""
        _check_int("worker_count", self.worker_count, minimum=0)
        _check_int("max_retries", self.max_retries, minimum=0)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("relay_backlog_bytes", self.relay_backlog_bytes, minimum=0)
        _check_int("async_concurrency", self.async_concurrency, minimum=1)
        _check_number("latency", self.latency, positive=True)
        _check_number("retry_backoff", self.retry_backoff, positive=False)
        _check_number("retry_backoff_max", self.retry_backoff_max, positive=False)
        _check_number("shutdown_timeout", self.shutdown_timeout, positive=False)
        _check_number("subscription_stale_after", self.subscription_stale_after, positive=True)
        _check_number("subscription_expire_after", self.subscription_expire_after, positive=False)
        if not isinstance(self.debug, bool):
            raise _BadSetting("debug", f"debug must be True or False, not {self.debug!r}")
        for name in ("storage", "executor"):
            value = getattr(self, name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise _BadSetting(name, f"{name} must name a backend, not {value!r}")
        if isinstance(self.relays, (str, bytes)) or not isinstance(self.relays, Sequence):
            raise _BadSetting("relays", (
                f"relays must be a list of relay names, URLs, objects or (name, options) pairs, "
                f"not {self.relays!r}"))
        for relay in self.relays:
            if isinstance(relay, tuple) and len(relay) == 2 and not isinstance(relay[1], Mapping):
                raise _BadSetting("relays", (
                    f"a relay given as a pair is (name or URL, {{options}}), not {relay!r}"))
            if (isinstance(relay, str) and not relay.strip()) or relay is None:
                raise _BadSetting("relays", f"a relay must be a name, a URL or an object, not {relay!r}")
        for name in ("storage_options", "executor_options"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise _BadSetting(name, f"{name} must be a dict of options, not {value!r}")


class _BadSetting(ConfigurationError):
    """A bad value, and the setting it is for (to name its ROCKETMAN_* variable)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadSetting(name, f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise _BadSetting(name, f"{name} must be at least {minimum}, not {value}")


def _check_number(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadSetting(name, f"{name} must be a number of seconds, not {value!r}")
    if value < 0 or (positive and value == 0) or value != value:
        qualifier = "greater than 0" if positive else "0 or more"
        raise _BadSetting(name, f"{name} must be {qualifier}, not {value}")
    if value > threading.TIMEOUT_MAX:  # inf too: the waits that use it would overflow
        raise _BadSetting(name, (
            f"{name} must be a finite number of seconds, at most {threading.TIMEOUT_MAX:g}, "
            f"not {value}"))


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected one of 1, true, yes, on, 0, false, no, off")


def _parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError("expected an integer") from None


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError("expected a number") from None


def _parse_relays(text: str) -> tuple[Any, ...]:
    """Comma-separated names or URLs; or a JSON list, for URLs that hold commas.

    ``ROCKETMAN_RELAYS='["redis://h/0?pattern=a.*,b.*", ["mqtt", {"topics": "a/#"}]]'``
    """
    if text.startswith("["):
        import json

        try:
            items = json.loads(text)
        except ValueError as error:
            raise ValueError(f"not a JSON list of relays ({error})") from None
        if not isinstance(items, list):
            raise ValueError("expected a JSON list of relays")
        return tuple(tuple(item) if isinstance(item, list) else item for item in items)
    return tuple(part.strip() for part in text.split(",") if part.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "storage": str,
    "executor": str,
    "relays": _parse_relays,
    "worker_count": _parse_int,
    "latency": _parse_float,
    "debug": _parse_bool,
    "max_retries": _parse_int,
    "retry_backoff": _parse_float,
    "retry_backoff_max": _parse_float,
    "shutdown_timeout": _parse_float,
    "batch_size": _parse_int,
    "subscription_stale_after": _parse_float,
    "subscription_expire_after": _parse_float,
    "relay_backlog_bytes": _parse_int,
    "async_concurrency": _parse_int,
}
