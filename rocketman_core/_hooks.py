"""The observability hooks of one runtime, called only when a plugin implements them.

The worker loop and emit test one flag per hook (``hooks.handled``...) on
the hot path and call the hook only then: a runtime without observers pays
an attribute read per event, not a pluggy call.

When they are implemented, the broadcast hooks run once or twice per event,
so pluggy's general call loop (result collection, wrappers, firstresult) is
a large part of an event's cost. :meth:`Hooks.refresh` takes the
implementations from pluggy (``get_hookimpls()``, in the order pluggy calls
them: last registered first, ``tryfirst``/``trylast`` applied) and calls
their functions directly with the arguments each declares. A hook with a
wrapper implementation goes through pluggy as usual. Each implementation
that raises is logged and ignored, and the others still run: an observer
never fails an event, nor silences another observer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ._envelope import Event
from ._plugins import Plugins

__all__ = ["Hooks"]

logger = logging.getLogger("rocketman")


class Hooks:
    """The ``rocketman_event_*`` hooks of a runtime's plugins, with a flag saying whether each has implementations.

    :meth:`refresh` reads the implementations again (after a plugin is registered).
    """

    __slots__ = ("_calls", "_plugins", "dead_lettered", "emitted", "failed", "handled")

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins
        self._calls: dict[str, Callable[[dict[str, Any]], None]] = {}
        #: Whether a plugin implements ``rocketman_event_emitted`` (and so on).
        self.emitted = self.handled = self.failed = self.dead_lettered = False

    def refresh(self) -> None:
        """Read again which hooks have implementations, and how to call them."""
        hook = self._plugins.manager.hook
        calls, implemented = {}, {}
        for name in ("rocketman_event_emitted", "rocketman_event_handled",
                     "rocketman_event_failed", "rocketman_event_dead_lettered"):
            caller = getattr(hook, name)
            impls = caller.get_hookimpls()
            calls[name], implemented[name] = _calling(name, caller, impls), bool(impls)
        self._calls = calls
        self.emitted = implemented["rocketman_event_emitted"]
        self.handled = implemented["rocketman_event_handled"]
        self.failed = implemented["rocketman_event_failed"]
        self.dead_lettered = implemented["rocketman_event_dead_lettered"]

    def event_emitted(self, event: Event) -> None:
        """Call ``rocketman_event_emitted``: ``event`` was stored (or, inline, dispatched)."""
        self._calls["rocketman_event_emitted"]({"event": event})

    def event_handled(self, event: Event, consumer: str, duration: float) -> None:
        """Call ``rocketman_event_handled``: ``consumer`` returned, after ``duration`` seconds."""
        self._calls["rocketman_event_handled"]({"event": event, "consumer": consumer, "duration": duration})

    def event_failed(self, event: Event, consumer: str, error: BaseException, will_retry: bool) -> None:
        """Call ``rocketman_event_failed``: ``consumer`` raised ``error``."""
        self._calls["rocketman_event_failed"](
            {"event": event, "consumer": consumer, "error": error, "will_retry": will_retry})

    def event_dead_lettered(self, event: Event | None, consumer: str | None, reason: str) -> None:
        """Call ``rocketman_event_dead_lettered``; ``event`` is None for a malformed message."""
        self._calls["rocketman_event_dead_lettered"](
            {"event": event, "consumer": consumer, "reason": reason})


def _calling(name: str, caller: Any, impls: list[Any]) -> Callable[[dict[str, Any]], None]:
    """A function calling ``impls``, the implementations of the hook ``name``, with the arguments given."""
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        def through_pluggy(arguments: dict[str, Any]) -> None:
            try:
                caller(**arguments)
            except Exception:
                logger.exception("a plugin's %s hook raised; ignored", name)

        return through_pluggy
    # pluggy calls the last registered first: the same order here.
    plan = [(impl.function, impl.argnames, impl.plugin_name) for impl in reversed(impls)]

    def direct(arguments: dict[str, Any]) -> None:
        for function, argnames, plugin in plan:
            try:
                function(*[arguments[argument] for argument in argnames])
            except Exception:
                logger.exception("the %s hook of the plugin %s raised; ignored", name, plugin)

    return direct
