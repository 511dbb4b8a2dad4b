"""A test plugin that cannot be imported: it needs a library that is not installed.

Had it imported, it would provide the storage ``broken``.
"""

from __future__ import annotations

from typing import Any

import rocketman_no_such_dependency  # type: ignore[import-not-found]  # the point of this plugin

import rocketman_core

__all__ = ["register_storages"]


@rocketman_core.hookimpl
def register_storages(register: Any) -> None:
    """Provide the storage ``broken`` (never reached)."""
    register("broken", rocketman_no_such_dependency.Storage)
