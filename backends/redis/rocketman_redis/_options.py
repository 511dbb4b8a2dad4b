"""The Redis storage's options: from keyword arguments, a URL's query string, the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import redis

from rocketman_core import mask_url
from rocketman_core.plugin import option_integer, option_seconds

from ._layout import KeyLayout

__all__ = ["DEFAULT_URL", "URL_ENV", "Connection", "connect"]

#: The environment variable ``storage="redis"`` reads its URL from.
URL_ENV = "ROCKETMAN_REDIS_URL"
#: The URL when neither a URL nor ``ROCKETMAN_REDIS_URL`` is given.
DEFAULT_URL = "redis://localhost:6379/0"

# The prefix of the storage's messages about its options.
_BACKEND = "redis storage"
# Options a URL's query string may carry for the storage itself; the rest of
# the query (ssl_cert_reqs=..., ...) is redis-py's.
_OWN_QUERY_OPTIONS = ("namespace", "lease", "connect_timeout", "socket_timeout", "park_limit",
                      "park_max_age")


@dataclass(frozen=True)
class Connection:
    """The client a storage uses, and its settings, validated."""

    client: redis.Redis
    owns_client: bool
    where: str  # the URL with its credentials masked, for messages
    keys: KeyLayout
    lease: float
    connect_timeout: float
    socket_timeout: float
    park_limit: int
    park_max_age: float


def connect(url: str | None, client: redis.Redis | None, options: dict[str, Any]) -> Connection:
    """Validate the options and make (or check) the client; raise ValueError naming a bad one.

    ``options``: namespace, lease, connect_timeout, socket_timeout,
    park_limit, park_max_age; None means unset (then a URL's query string,
    then the default, applies).
    """
    given = dict(options)
    if client is not None:
        if url is not None:
            raise ValueError("redis storage: give a url or a client, not both")
        kwargs = client.get_connection_kwargs()
        if kwargs.get("decode_responses"):
            raise ValueError(
                "redis storage: the client decodes responses (decode_responses=True); "
                "the storage moves bytes, so give it a client without decode_responses"
            )
        place = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        where = f"redis client {place} db {kwargs.get('db', 0)}"
        address = ""
    else:
        address, from_query = _split_own_options(
            url or os.environ.get(URL_ENV, "").strip() or DEFAULT_URL)
        for name, value in from_query.items():
            if given.get(name) is None:
                given[name] = value
        where = mask_url(address)
    namespace = given.get("namespace")
    keys = KeyLayout("rocketman" if namespace is None else namespace)
    lease = _seconds("lease", given.get("lease"), 30.0)
    connect_timeout = _seconds("connect_timeout", given.get("connect_timeout"), 2.0)
    socket_timeout = _seconds("socket_timeout", given.get("socket_timeout"), 5.0)
    park_limit = option_integer("park_limit", given.get("park_limit"), default=100_000,
                                zero_means="park nothing", backend=_BACKEND)
    park_max_age = option_seconds("park_max_age", given.get("park_max_age"), default=7 * 86400.0,
                                  zero_means="no limit", backend=_BACKEND)
    settings = (keys, lease, connect_timeout, socket_timeout, park_limit, park_max_age)
    if client is None:
        try:
            client = redis.Redis.from_url(
                address, socket_connect_timeout=connect_timeout, socket_timeout=socket_timeout)
        except ValueError as error:
            raise ValueError(f"redis storage: bad URL {where!r}: {mask_url(str(error))}") from None
        return Connection(client, True, where, *settings)
    return Connection(client, False, where, *settings)


def _seconds(name: str, value: Any, default: float) -> float:
    """A duration of more than 0 seconds, ``default`` when unset."""
    return option_seconds(name, value, default=default, exclusive=True, backend=_BACKEND)


def _split_own_options(url: str) -> tuple[str, dict[str, str]]:
    """Take the storage's own options out of a URL's query string; leave redis-py's.

    Raises ``ValueError`` for a parameter that is neither the storage's nor
    one redis-py takes (a misspelling would otherwise reach redis-py, which
    fails only at the first connection), and for a database that is not a
    number (redis-py would quietly use 0).
    """
    # Not urlunsplit: it turns unix:///path into unix:/path, which redis-py rejects.
    address, _, query = url.partition("?")
    scheme, _, rest_of_address = address.partition("://")
    if scheme.lower() in ("redis", "rediss"):
        database = rest_of_address.partition("/")[2].strip("/")
        if database and not database.isdigit():
            raise ValueError(f"redis storage: the database in the URL must be a number, not {database!r}")
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in _OWN_QUERY_OPTIONS:
            own[name] = value
        else:
            _check_redis_py_parameter(name)
            rest.append((name, value))
    return (f"{address}?{urlencode(rest)}" if rest else address), own


def _redis_py_parameters() -> set[str]:
    """The URL parameters redis-py takes: its parsers' and its connection classes' arguments."""
    import inspect

    from redis import connection

    names = set(getattr(connection, "URL_QUERY_ARGUMENT_PARSERS", {}))
    for cls in (connection.Connection, connection.SSLConnection,
                connection.UnixDomainSocketConnection, getattr(connection, "AbstractConnection", None)):
        if cls is not None:
            names.update(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs"))
    return names | {"db"}


def _check_redis_py_parameter(name: str) -> None:
    known = _redis_py_parameters()
    if name in known:
        return
    import difflib

    close = difflib.get_close_matches(name, [*_OWN_QUERY_OPTIONS, *known], n=1, cutoff=0.75)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"redis storage: unknown option {name!r} in the URL{hint} It takes "
        f"{', '.join(_OWN_QUERY_OPTIONS)}, and redis-py's own URL parameters "
        "(ssl_cert_reqs, client_name, health_check_interval, ...)"
    )
