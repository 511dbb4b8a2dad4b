"""The errors of the Redis storage (importing them does not import redis)."""

from __future__ import annotations

import rocketman_core
from rocketman_core import RocketmanError

__all__ = ["StorageError", "StorageUnavailable"]


class StorageError(RocketmanError):
    """Redis refused an operation of the storage (an ACL, out of memory, a key of another type).

    The message says what the storage was doing and what Redis answered, with
    the URL's credentials masked.
    """


class StorageUnavailable(StorageError, rocketman_core.StorageUnavailable):
    """Redis cannot be reached, or did not answer in time.

    Raised by ``emit``: the event was most likely not stored (unless Redis
    took it and only its answer was lost), so emit it again later. Raised by
    a worker's ``reserve``: the worker logs it, backs off and tries again,
    and nothing Redis kept is lost. A :class:`rocketman_core.StorageUnavailable`,
    so ``except rocketman_core.StorageUnavailable`` catches it whatever the
    storage; also a builtin ``ConnectionError``.
    """
