"""The observability hooks of one runtime, called only when a plugin implements them.

The worker loop and emit test one flag per hook (``hooks.handled``...) on
the hot path and call the hook only then: a runtime without observers pays
an attribute read per event, not a pluggy call. A hook that raises is
logged and ignored: an observer never fails an event.
"""

from __future__ import annotations

import logging
from typing import Any

from ._envelope import Event
from ._plugins import Plugins

__all__ = ["Hooks"]

logger = logging.getLogger("rocketman")


class Hooks:
    """The ``rocketman_event_*`` hooks of a runtime's plugins, with a flag saying whether each has implementations.

    :meth:`refresh` reads the flags again (after a plugin is registered).
    """

    __slots__ = ("_plugins", "dead_lettered", "emitted", "failed", "handled")

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins
        #: Whether a plugin implements ``rocketman_event_emitted`` (and so on).
        self.emitted = self.handled = self.failed = self.dead_lettered = False

    def refresh(self) -> None:
        """Read again which hooks have implementations."""
        hook = self._plugins.manager.hook
        self.emitted = bool(hook.rocketman_event_emitted.get_hookimpls())
        self.handled = bool(hook.rocketman_event_handled.get_hookimpls())
        self.failed = bool(hook.rocketman_event_failed.get_hookimpls())
        self.dead_lettered = bool(hook.rocketman_event_dead_lettered.get_hookimpls())

    def event_emitted(self, event: Event) -> None:
        """Call ``rocketman_event_emitted``: ``event`` was stored (or, inline, dispatched)."""
        self._call("rocketman_event_emitted", event=event)

    def event_handled(self, event: Event, consumer: str, duration: float) -> None:
        """Call ``rocketman_event_handled``: ``consumer`` returned, after ``duration`` seconds."""
        self._call("rocketman_event_handled", event=event, consumer=consumer, duration=duration)

    def event_failed(self, event: Event, consumer: str, error: BaseException, will_retry: bool) -> None:
        """Call ``rocketman_event_failed``: ``consumer`` raised ``error``."""
        self._call("rocketman_event_failed", event=event, consumer=consumer, error=error,
                   will_retry=will_retry)

    def event_dead_lettered(self, event: Event | None, consumer: str | None, reason: str) -> None:
        """Call ``rocketman_event_dead_lettered``; ``event`` is None for a malformed message."""
        self._call("rocketman_event_dead_lettered", event=event, consumer=consumer, reason=reason)

    def _call(self, name: str, **kwargs: Any) -> None:
        try:
            getattr(self._plugins.manager.hook, name)(**kwargs)
        except Exception:
            logger.exception("a plugin's %s hook raised; ignored", name)
