"""rocketman-nats: a NATS relay for rocketman.

Messages published on NATS subjects become rocketman events, named after the
subject, with the body as payload (JSON when it is JSON, text otherwise)::

    import rocketman_core as rocketman

    rocketman.configure(relays=["nats://127.0.0.1:4222?subjects=orders.>"])

This module is the plugin rocketman finds through the entry point ``nats`` in
the group ``rocketman``. Importing it is cheap: ``nats`` (nats-py) is imported
when a relay is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rocketman_core import hookimpl

if TYPE_CHECKING:
    from ._relay import COUNTERS, NatsRelay

__all__ = ["COUNTERS", "NatsRelay", "register_relays"]

__version__ = "0.1.0"


@hookimpl
def register_relays(register: Any) -> None:
    """Provide the relay ``nats``, selected by name or by a ``nats://`` or ``tls://`` URL.

    ``nats`` is both the relay's name and its URL scheme, so only ``tls``
    needs saying as a further scheme.
    """
    register("nats", _build, schemes=("tls",))


def _build(**options: Any) -> NatsRelay:
    # Imported on first build: rocketman imports every plugin to discover it,
    # and only a process that selects this relay should pay for its module.
    from ._relay import NatsRelay

    return NatsRelay(**options)


def __getattr__(name: str) -> Any:
    if name in ("COUNTERS", "NatsRelay"):
        from . import _relay

        return getattr(_relay, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
