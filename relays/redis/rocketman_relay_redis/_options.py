"""The relay's options: what it listens to, its limits and its timings.

Options arrive from Python as their own types, and from a relay URL's query
string (``redis://host:6379/0?pattern=orders.*``) as strings; both go
through :func:`resolve`, which rejects a bad value with a ``ValueError`` that
names the option, the value and what it must be (the core's option helpers,
:mod:`rocketman_core.plugin`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from rocketman_core.plugin import option_integer, option_seconds

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_URL", "URL_ENV", "RelayOptions", "resolve"]

#: The environment variable that gives the relay its Redis URL.
URL_ENV = "ROCKETMAN_REDIS_URL"
#: The URL when neither ``url`` nor ``ROCKETMAN_REDIS_URL`` gives one.
DEFAULT_URL = "redis://localhost:6379/0"
#: Messages longer than this (in bytes) are dropped, by default: 1 MiB.
DEFAULT_MAX_BYTES = 1 << 20

_SCHEMES = ("redis", "rediss", "unix")

# Redis glob patterns give these characters a meaning; a prefix turned into
# the default pattern ``prefix*`` must match them literally.
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


@dataclass(frozen=True)
class RelayOptions:
    """The relay's options, validated.

    :param url: the Redis URL, or None when a client factory is used.
    :param patterns: glob patterns subscribed with PSUBSCRIBE.
    :param channels: exact channel names subscribed with SUBSCRIBE.
    :param prefix: stripped from channel names to make event names; a
        message whose channel lacks it is dropped.
    :param max_bytes: the largest message relayed; longer ones are dropped.
    :param db: the database number for a ``unix://`` URL, else None.
    :param latency: the longest the relay's thread blocks on a read before it
        checks whether it should stop, in seconds.
    :param health_check_interval: after this many seconds without a word from
        Redis the relay sends a PING; 0 turns the check off.
    :param socket_timeout: the bound on connecting, on each command, and on
        the answer to a PING, in seconds.
    :param backoff: the first reconnection delay in seconds, doubled at each
        failed attempt, with jitter.
    :param backoff_max: the cap of the reconnection delay, in seconds.
    """

    url: str | None
    patterns: tuple[str, ...]
    channels: tuple[str, ...]
    prefix: str
    max_bytes: int
    db: int | None
    latency: float
    health_check_interval: float
    socket_timeout: float
    backoff: float
    backoff_max: float

    @property
    def subscriptions(self) -> int:
        """How many subscription confirmations Redis sends back."""
        return len(self.patterns) + len(self.channels)


def resolve(
    *,
    url: str | None,
    has_client_factory: bool,
    pattern: str | Iterable[str] | None,
    patterns: str | Iterable[str] | None,
    channels: str | Iterable[str] | None,
    prefix: str | None,
    max_bytes: int | str,
    db: int | str | None,
    latency: float | str,
    health_check_interval: float | str,
    socket_timeout: float | str,
    backoff: float | str,
    backoff_max: float | str,
) -> RelayOptions:
    """Validate the options given to :class:`~rocketman_relay_redis.RedisRelay`."""
    if url is not None and has_client_factory:
        raise ValueError("give the redis relay a url or a client_factory, not both")
    if url is None and not has_client_factory:
        url = os.environ.get(URL_ENV, "").strip() or DEFAULT_URL
    if url is not None:
        if not isinstance(url, str):
            raise ValueError(f"url must be a string, not {type(url).__name__}")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(
                f"url must start with redis://, rediss:// or unix://, not {scheme + '://' if scheme else 'nothing'}"
            )
    prefix = prefix or ""
    if not isinstance(prefix, str):
        raise ValueError(f"prefix must be a string, not {type(prefix).__name__}")
    chosen_patterns = _names("pattern", pattern) + _names("patterns", patterns)
    chosen_channels = _names("channels", channels)
    if not chosen_patterns and not chosen_channels:
        # Listening to everything and dropping what lacks the prefix would
        # cost a read per foreign message; let Redis filter instead.
        chosen_patterns = (_GLOB_SPECIAL.sub(r"\\\1", prefix) + "*",)
    backoff_value = option_seconds("backoff", backoff)
    backoff_max_value = option_seconds("backoff_max", backoff_max)
    if backoff_max_value < backoff_value:
        raise ValueError(f"backoff_max ({backoff_max_value}) must be at least backoff ({backoff_value})")
    return RelayOptions(
        url=url,
        patterns=tuple(dict.fromkeys(chosen_patterns)),
        channels=tuple(dict.fromkeys(chosen_channels)),
        prefix=prefix,
        max_bytes=option_integer("max_bytes", max_bytes, minimum=1),
        db=None if db is None or db == "" else option_integer("db", db),
        latency=option_seconds("latency", latency, minimum=0.01),
        health_check_interval=option_seconds("health_check_interval", health_check_interval,
                                             zero_means="no health check"),
        socket_timeout=option_seconds("socket_timeout", socket_timeout, minimum=0.01),
        backoff=backoff_value,
        backoff_max=backoff_max_value,
    )


def _names(option: str, value: str | Iterable[str] | None) -> tuple[str, ...]:
    """Channel names or patterns: a comma-separated string, or an iterable of strings."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{option} must be strings, not {type(item).__name__}")
        if item.strip():
            names.append(item.strip())
    return tuple(names)
