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


#: Each broadcast hook and its arguments, in the hookspec's order.
_SPECS = {
    "rocketman_event_emitted": ("event",),
    "rocketman_event_handled": ("event", "consumer", "duration"),
    "rocketman_event_failed": ("event", "consumer", "error", "will_retry"),
    "rocketman_event_dead_lettered": ("event", "consumer", "reason"),
}


def _nothing(*arguments: Any) -> None:
    pass


class Hooks:
    """The ``rocketman_event_*`` hooks of a runtime's plugins, with a flag saying whether each has implementations.

    :meth:`refresh` reads the implementations again (after a plugin is registered).
    """

    __slots__ = ("_plugins", "dead_lettered", "emitted", "event_dead_lettered", "event_emitted",
                 "event_failed", "event_handled", "failed", "handled")

    def __init__(self, plugins: Plugins) -> None:
        self._plugins = plugins
        #: Whether a plugin implements ``rocketman_event_emitted`` (and so on).
        self.emitted = self.handled = self.failed = self.dead_lettered = False
        #: Call ``rocketman_event_emitted(event)``: the event was stored (or, inline, dispatched).
        self.event_emitted: Callable[[Event], None] = _nothing
        #: Call ``rocketman_event_handled(event, consumer, duration)``: the consumer returned.
        self.event_handled: Callable[[Event, str, float], None] = _nothing
        #: Call ``rocketman_event_failed(event, consumer, error, will_retry)``: the consumer raised.
        self.event_failed: Callable[[Event, str, BaseException, bool], None] = _nothing
        #: Call ``rocketman_event_dead_lettered(event, consumer, reason)``; event None: a malformed message.
        self.event_dead_lettered: Callable[[Event | None, str | None, str], None] = _nothing

    def refresh(self) -> None:
        """Read again which hooks have implementations, and how to call them."""
        hook = self._plugins.manager.hook
        calls, implemented = {}, {}
        for name in _SPECS:
            caller = getattr(hook, name)
            impls = caller.get_hookimpls()
            calls[name], implemented[name] = _calling(name, caller, impls), bool(impls)
        self.event_emitted = calls["rocketman_event_emitted"]
        self.event_handled = calls["rocketman_event_handled"]
        self.event_failed = calls["rocketman_event_failed"]
        self.event_dead_lettered = calls["rocketman_event_dead_lettered"]
        self.emitted = implemented["rocketman_event_emitted"]
        self.handled = implemented["rocketman_event_handled"]
        self.failed = implemented["rocketman_event_failed"]
        self.dead_lettered = implemented["rocketman_event_dead_lettered"]


def _calling(name: str, caller: Any, impls: list[Any]) -> Callable[..., None]:
    """A function of the hookspec's arguments, in order, that calls ``impls``, the implementations of ``name``."""
    spec = _SPECS[name]
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        def through_pluggy(*arguments: Any) -> None:
            try:
                caller(**dict(zip(spec, arguments, strict=True)))
            except Exception:
                logger.exception("a plugin's %s hook raised; ignored", name)

        return through_pluggy
    # pluggy calls the last registered first: the same order here. Each
    # implementation gets the arguments it declares, by their place in the
    # spec (None: all of them, in order).
    whole = tuple(range(len(spec)))
    plan = []
    for impl in reversed(impls):
        places = tuple(spec.index(argument) for argument in impl.argnames)
        plan.append((impl.function, None if places == whole else places, impl.plugin_name))

    if len(plan) == 1 and plan[0][1] is None:
        # The usual case, one plugin observing: no loop (a third of the call).
        function, _, plugin = plan[0]

        def one(*arguments: Any) -> None:
            try:
                function(*arguments)
            except Exception:
                logger.exception("the %s hook of the plugin %s raised; ignored", name, plugin)

        return one

    def direct(*arguments: Any) -> None:
        for function, places, plugin in plan:
            try:
                if places is None:
                    function(*arguments)
                else:
                    function(*[arguments[place] for place in places])
            except Exception:
                logger.exception("the %s hook of the plugin %s raised; ignored", name, plugin)

    return direct
