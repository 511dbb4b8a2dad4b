"""The relay's side of redis-py: building its client, and what Redis errors mean.

``redis`` is imported inside the functions, never at module level: the plugin
module is imported at every plugin discovery, the library only when a relay
starts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rocketman_core import mask_url

from ._options import RelayOptions

if TYPE_CHECKING:
    import redis

__all__ = ["CLIENT_NAME", "Unresponsive", "close_quietly", "describe", "is_redis_error",
           "make_client", "other_relays"]

logger = logging.getLogger("rocketman.relay.redis")

#: The name the relay's connections give themselves (``CLIENT LIST`` shows it).
CLIENT_NAME = "rocketman-relay-redis"


class Unresponsive(Exception):
    """Redis did not answer in time: the connection is half dead."""


def make_client(options: RelayOptions) -> redis.Redis:
    """A client of ``options.url`` whose every wait is bounded by ``socket_timeout``."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    assert options.url is not None  # resolve() gives a URL when there is no factory
    extra: dict[str, Any] = {} if options.db is None else {"db": options.db}
    if not options.url.lower().startswith("unix:"):
        # TCP only: keepalive probes let the kernel notice a peer gone for good.
        extra["socket_keepalive"] = True
    return redis.Redis.from_url(
        options.url,
        socket_timeout=options.socket_timeout,
        socket_connect_timeout=options.socket_timeout,
        # The relay reconnects and resubscribes itself, with backoff and
        # logs; redis-py's silent retries would hide a lost connection.
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
        client_name=CLIENT_NAME,
        **extra,
    )


def other_relays(client: redis.Redis) -> int | None:
    """How many other rocketman relays listen on this Redis, or None if Redis will not say.

    Counts the subscribed connections named :data:`CLIENT_NAME`, less this
    relay's own; only relays that name their connections (built from a URL)
    are seen.
    """
    try:
        clients = client.client_list()
    except Exception as error:  # CLIENT LIST may be forbidden by an ACL: only a courtesy
        logger.debug("redis relay could not list clients: %s", describe(error))
        return None
    listening = [
        entry for entry in clients
        if entry.get("name") == CLIENT_NAME
        and any(entry.get(key, "0") not in ("0", "") for key in ("psub", "sub"))
    ]
    return max(0, len(listening) - 1)


def is_redis_error(error: Exception) -> bool:
    """Whether ``error`` is the network or Redis refusing (an ACL's NOPERM), not a bug."""
    import redis.exceptions

    return isinstance(error, (redis.exceptions.RedisError, OSError, Unresponsive))


def describe(error: BaseException) -> str:
    """``Type: message`` for a log line, with credentials masked."""
    text = mask_url(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def close_quietly(resource: Any) -> None:
    """Close a client or pub/sub object whose connection may already be gone."""
    try:
        resource.close()
    except Exception as error:  # the connection is already gone: nothing to release
        logger.debug("redis relay: closing %s failed: %s", type(resource).__name__, describe(error))
