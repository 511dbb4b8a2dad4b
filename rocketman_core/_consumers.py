"""Consumers: who receives which events, under which subscription name.

A consumer is a function (or a method of a :class:`Consumer` subclass)
registered for one or more event names or patterns. Its *name* is its
subscription's name in the storage: the ``name=`` given to ``@on_event``, or
``module:qualname``, which every process importing the same code computes
alike. A function defined in the script being run (``python app.py``) is
named after the module it would be imported as (``app:handler``), as
``rocketman worker app`` names it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from types import FunctionType
from typing import Any, TypeVar

from ._contracts import Subscription
from ._envelope import Event

__all__ = [
    "ConsumerSpec",
    "Consumers",
    "check_pattern",
    "check_start",
    "check_subscription_name",
    "identity_of",
]

logger = logging.getLogger("rocketman.consumers")

F = TypeVar("F", bound=Callable[..., Any])

_CACHE_LIMIT = 10_000
_NAME = r"\S{1,255}\Z"  # compiled by re at the first name given, not at import
#: What ``start=`` may be: see :class:`rocketman_core.Subscription`.
STARTS = ("parked", "now")


def _main_module_name() -> str | None:
    """The name the running script would be imported as, or None when it has none.

    ``python -m pkg.app`` gives ``pkg.app``; ``python app.py`` gives ``app``
    (``pkg.app`` when the script's folder is a package); ``python -c`` and
    an interactive session give None.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        name: str = spec.name
        return name.removesuffix(".__main__")
    file = getattr(main, "__file__", None)
    if not file:
        return None
    # os.path, not pathlib: this module is imported by every process that emits.
    folder, script = os.path.split(os.path.realpath(file))
    stem, suffix = os.path.splitext(script)
    if suffix != ".py":
        return None
    parts = [stem]
    while os.path.exists(os.path.join(folder, "__init__.py")):
        folder, package = os.path.split(folder)
        if not package.isidentifier():
            break
        parts.insert(0, package)
    return ".".join(parts)


def _module_of(function: Callable[..., Any]) -> tuple[str, str | None]:
    """The module name for a consumer's default name, and why it is unstable (or None)."""
    module = getattr(function, "__module__", None) or "__main__"
    if module != "__main__":
        return module, None
    main = _main_module_name()
    if main is None:
        return "__main__", "it is defined in code given with -c or typed interactively"
    return main, None


def identity_of(function: Callable[..., Any]) -> str:
    """The default name of a consumer function: ``module:qualname``.

    The same in every process that imports the same code; a function of the
    script being run is named after the module it would be imported as.
    """
    module, _ = _module_of(function)
    return f"{module}:{getattr(function, '__qualname__', type(function).__qualname__)}"


def is_method_definition(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is being defined in a class body (by its qualname)."""
    if not isinstance(function, FunctionType):
        return False  # a bound method or a callable object: registered as it is
    parts = function.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


class ConsumerSpec:
    """One consumer: its name, the patterns it listens to, how to call it.

    :param unstable: why the name is not the same in every process (a
        lambda, a namesake, code given with ``-c``), or None.
    """

    __slots__ = (
        "_instance", "function", "invoke", "is_async", "name", "owner", "patterns", "start",
        "unstable",
    )

    def __init__(
        self,
        name: str,
        patterns: tuple[str, ...],
        function: Callable[..., Any],
        owner: type | None = None,
        instance: _Instance | None = None,
        start: str = "parked",
        unstable: str | None = None,
    ) -> None:
        self.name = name
        self.patterns = patterns
        self.function = function
        self.owner = owner
        self.start = start
        self.unstable = unstable
        self._instance = instance
        #: Whether it is an ``async def``: :attr:`invoke` then returns a
        #: coroutine, which the core awaits on an event loop.
        self.is_async = _is_coroutine_function(function)
        self.invoke: Callable[[Any, Event], Any] = self._make_invoke()

    @property
    def identity(self) -> str:
        """The consumer's name (the name of its subscription); kept for 0.1 code."""
        return self.name

    @property
    def pattern(self) -> str:
        """The first pattern (most consumers have one)."""
        return self.patterns[0]

    def subscription(self) -> Subscription:
        """The subscription a storage keeps for this consumer."""
        return Subscription(self.name, self.patterns, self.start)

    def _make_invoke(self) -> Callable[[Any, Event], Any]:
        # Decided once here, not at every dispatch: does the consumer take the
        # payload, and does it ask for the event (a parameter named "event")?
        import inspect  # here, not at the top: importing the core must stay cheap

        function = self.function
        parameters = list(inspect.signature(function).parameters.values())
        if self.owner is not None:
            parameters = parameters[1:]  # self
        wants_event = any(p.name == "event" for p in parameters)
        positional = [
            p for p in parameters
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "event"
        ]
        takes_payload = bool(positional) or any(p.kind is p.VAR_POSITIONAL for p in parameters)

        if self.owner is None:
            if wants_event and takes_payload:
                return lambda payload, event: function(payload, event=event)
            if wants_event:
                return lambda payload, event: function(event=event)
            if takes_payload:
                return lambda payload, event: function(payload)
            return lambda payload, event: function()

        assert self._instance is not None
        instance = self._instance.get
        if wants_event and takes_payload:
            return lambda payload, event: function(instance(), payload, event=event)
        if wants_event:
            return lambda payload, event: function(instance(), event=event)
        if takes_payload:
            return lambda payload, event: function(instance(), payload)
        return lambda payload, event: function(instance())

    def __repr__(self) -> str:
        return f"<consumer {self.name} on {' '.join(self.patterns)!r}>"


def _is_coroutine_function(function: Callable[..., Any]) -> bool:
    """Whether calling ``function`` gives a coroutine: an ``async def``, a partial of one, or an object whose ``__call__`` is one."""
    import inspect

    if inspect.iscoroutinefunction(function):
        return True
    if isinstance(function, FunctionType):
        return False
    return inspect.iscoroutinefunction(type(function).__dict__.get("__call__"))


class _Instance:
    """The one instance of a Consumer subclass, made at its first event."""

    __slots__ = ("lock", "owner", "value")

    def __init__(self, owner: type) -> None:
        self.owner = owner
        self.value: Any = None
        self.lock = threading.Lock()

    def get(self) -> Any:
        value = self.value
        if value is None:
            with self.lock:
                if self.value is None:
                    self.value = self.owner()
                value = self.value
        return value


def check_pattern(pattern: Any) -> None:
    """Raise ``ValueError`` unless ``pattern`` is an event name or a ``*`` pattern."""
    if not isinstance(pattern, str) or not pattern or any(c.isspace() for c in pattern):
        raise ValueError(
            f"invalid event name or pattern {pattern!r}: a non-empty string without "
            "whitespace, where * matches any characters"
        )


def check_subscription_name(name: Any) -> None:
    """Raise ``ValueError`` unless ``name`` can name a subscription."""
    if not isinstance(name, str) or not re.match(_NAME, name):
        raise ValueError(
            f"invalid consumer name {name!r}: 1 to 255 characters without whitespace, "
            "such as 'billing.book_invoice'"
        )


def check_start(start: Any) -> None:
    """Raise ``ValueError`` unless ``start`` is ``"parked"`` or ``"now"``."""
    if start not in STARTS:
        raise ValueError(
            f"invalid start {start!r}: 'parked' (also receive the parked events that match, "
            "the default) or 'now' (only what is emitted from now on)"
        )


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")


# Called with the names of the consumers added, changed or replaced; None: all.
Listener = Callable[[tuple[str, ...] | None], None]


class Consumers:
    """The registry of consumers of one runtime, by name. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_name: dict[str, ConsumerSpec] = {}
        self._exact: dict[str, list[ConsumerSpec]] = {}
        self._patterns: list[tuple[re.Pattern[str], ConsumerSpec]] = []
        self._cache: dict[str, tuple[ConsumerSpec, ...]] = {}
        self._instances: dict[type, _Instance] = {}
        self._namesakes: dict[str, int] = {}  # the next number to try for a default name taken
        self._listeners: list[Listener] = []

    @property
    def by_identity(self) -> dict[str, ConsumerSpec]:
        """The consumers by name (their 0.1 name)."""
        return self.by_name

    def listen(self, listener: Listener) -> None:
        """Call ``listener(names)`` after every change (outside the registry's lock)."""
        self._listeners.append(listener)

    def add(
        self,
        pattern: str,
        function: Callable[..., Any],
        owner: type | None = None,
        *,
        name: str | None = None,
        start: str = "parked",
    ) -> ConsumerSpec:
        """Register ``function`` for the events ``pattern`` matches, under ``name``.

        Registering the same function again under the same name adds the
        pattern to its subscription (a function decorated twice listens to
        both). A *different* function under a name already taken replaces
        the old one when it is a redefinition (a module reloaded, a notebook
        cell run again: the same ``module:qualname``, on a pattern the old
        one had); an explicit ``name=`` taken by another function is a
        ``ValueError``. Two different functions that share a default name
        otherwise (two lambdas in one scope) get ``#2``, ``#3``... in
        registration order, and are marked unstable: another process would
        not name them alike.
        """
        check_pattern(pattern)
        check_start(start)
        if name is not None:
            check_subscription_name(name)
        default = identity_of(function)
        unstable: str | None = None
        if name is None:  # a name given is stable, wherever the code is
            _, unstable = _module_of(function)
            if unstable is None and "<lambda>" in getattr(function, "__qualname__", ""):
                unstable = "it is a lambda"
        with self._lock:
            spec = self._add(pattern, function, owner, name, default, start, unstable)
        for listener in list(self._listeners):
            listener((spec.name,))
        return spec

    def _add(self, pattern: str, function: Callable[..., Any], owner: type | None,
             name: str | None, default: str, start: str, unstable: str | None) -> ConsumerSpec:
        chosen = name or default
        existing = self.by_name.get(chosen)
        if existing is not None and existing.function is function:
            if pattern in existing.patterns:
                return existing
            return self._put(existing, (*existing.patterns, pattern))
        if existing is not None:
            redefined = identity_of(existing.function) == default and (
                name is not None or pattern in existing.patterns)
            if redefined:
                logger.debug("consumer %s redefined; the new definition replaces it", chosen)
                self._forget(existing)
            elif name is not None:
                raise ValueError(
                    f"the consumer name {name!r} is already used by {identity_of(existing.function)}; "
                    "give each consumer a name of its own"
                )
            else:
                # Remember where the count stopped: a thousand namesakes are
                # registered in linear time, not by trying #2..#1000 each time.
                number = self._namesakes.get(default, 2)
                while f"{default}#{number}" in self.by_name:
                    number += 1
                self._namesakes[default] = number + 1
                chosen = f"{default}#{number}"
                unstable = unstable or (
                    f"another function is also named {default} (a namesake: its name "
                    "depends on the order they were defined in)")
        instance = None
        if owner is not None:
            instance = self._instances.setdefault(owner, _Instance(owner))
        spec = ConsumerSpec(chosen, (pattern,), function, owner, instance, start, unstable)
        self.by_name[chosen] = spec
        self._index(spec)
        return spec

    def _put(self, old: ConsumerSpec, patterns: tuple[str, ...]) -> ConsumerSpec:
        self._forget(old)
        spec = ConsumerSpec(old.name, patterns, old.function, old.owner, old._instance,
                            old.start, old.unstable)
        self.by_name[spec.name] = spec
        self._index(spec)
        return spec

    def _index(self, spec: ConsumerSpec) -> None:
        for pattern in spec.patterns:
            if "*" in pattern:
                self._patterns.append((_compile(pattern), spec))
            else:
                self._exact.setdefault(pattern, []).append(spec)
        self._cache = {}

    def _forget(self, spec: ConsumerSpec) -> None:
        self.by_name.pop(spec.name, None)
        for pattern in spec.patterns:
            specs = self._exact.get(pattern)
            if specs is not None:
                kept = [s for s in specs if s is not spec]
                if kept:
                    self._exact[pattern] = kept
                else:
                    del self._exact[pattern]
        self._patterns = [(r, s) for r, s in self._patterns if s is not spec]
        self._cache = {}

    def for_name(self, name: str) -> tuple[ConsumerSpec, ...]:
        """The consumers of the event ``name``: exact ones first, then patterns; each once."""
        found = self._cache.get(name)
        if found is None:
            with self._lock:
                matched = list(self._exact.get(name, ()))
                matched += [spec for regex, spec in self._patterns if regex.match(name)]
                found = tuple(dict.fromkeys(matched))
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache = {}
                self._cache[name] = found
        return found

    def names(self) -> tuple[str, ...]:
        """Every registered consumer's name, in registration order."""
        with self._lock:
            return tuple(self.by_name)

    def all(self) -> list[ConsumerSpec]:
        """Every registered consumer, in registration order."""
        with self._lock:
            return list(self.by_name.values())

    def subscriptions(self) -> list[Subscription]:
        """The subscriptions of every registered consumer."""
        with self._lock:
            return [spec.subscription() for spec in self.by_name.values()]

    def clear(self) -> None:
        """Forget every consumer."""
        with self._lock:
            self.by_name.clear()
            self._exact.clear()
            self._patterns.clear()
            self._instances.clear()
            self._namesakes.clear()
            self._cache = {}
        for listener in list(self._listeners):
            listener(None)
