"""The exceptions rocketman raises."""

from __future__ import annotations

__all__ = [
    "BacklogFull",
    "ConfigurationError",
    "PluginError",
    "RocketmanError",
    "StorageUnavailable",
    "UnknownBackendError",
]


class RocketmanError(Exception):
    """The base of every error rocketman raises on purpose."""


class ConfigurationError(RocketmanError, ValueError):
    """A setting has a bad value, or names something that cannot be built."""


class UnknownBackendError(ConfigurationError):
    """No installed plugin provides the backend the configuration names."""


class PluginError(ConfigurationError):
    """The plugin that provides the selected backend failed to load, or two do."""


class BacklogFull(RocketmanError):
    """A relay's emit was refused: the storage holds more than ``relay_backlog_bytes``.

    Pub/sub cannot push back (Redis disconnects a subscriber that reads too
    slowly), so a relay drops the message, counts it, and logs at most a
    line every few seconds; it never waits.
    """


class StorageUnavailable(RocketmanError, ConnectionError):
    """A storage's server cannot be reached, or did not answer in time.

    The base class for every storage plugin: a storage raises it (or a
    subclass of its own) when the fault is the network or the server, not
    the request, so that applications catch one type whatever the storage.
    Raised by ``emit``: the event was most likely not stored (unless the
    server took it and only its answer was lost), so emit it again later.
    Raised by a worker's ``reserve``: the worker logs it, backs off and tries
    again; nothing the storage kept is lost. Also a builtin ``ConnectionError``.
    """
