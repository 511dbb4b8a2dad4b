"""Consumers: who receives which events.

A consumer is a function (or a method of a :class:`Consumer` subclass)
registered for an event name or a pattern. Its identity, ``module:qualname``,
is stable across processes and restarts: a retry names the one consumer it is
for, so the consumers that already succeeded do not run again.
"""

from __future__ import annotations

import inspect
import logging
import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ._envelope import Event

__all__ = ["ConsumerSpec", "Consumers", "check_pattern", "identity_of"]

logger = logging.getLogger("rocketman.consumers")

F = TypeVar("F", bound=Callable[..., Any])

_CACHE_LIMIT = 10_000


def identity_of(function: Callable[..., Any]) -> str:
    """The stable identity of a consumer function: ``module:qualname``."""
    return f"{function.__module__}:{function.__qualname__}"


def is_method_definition(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is being defined in a class body (by its qualname)."""
    if not inspect.isfunction(function):
        return False  # a bound method or a callable object: registered as it is
    parts = function.__qualname__.split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


class ConsumerSpec:
    """One consumer: its identity, the pattern it listens to, how to call it."""

    __slots__ = ("_instance", "function", "identity", "invoke", "owner", "pattern")

    def __init__(
        self,
        pattern: str,
        function: Callable[..., Any],
        owner: type | None = None,
        instance: _Instance | None = None,
        identity: str | None = None,
    ) -> None:
        self.identity = identity or identity_of(function)
        self.pattern = pattern
        self.function = function
        self.owner = owner
        self._instance = instance
        self.invoke: Callable[[Any, Event], Any] = self._make_invoke()

    def _make_invoke(self) -> Callable[[Any, Event], Any]:
        # Decided once here, not at every dispatch: does the consumer take the
        # payload, and does it ask for the event (a parameter named "event")?
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
        return f"<consumer {self.identity} on {self.pattern!r}>"


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


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")


class Consumers:
    """The registry of consumers of one runtime. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: dict[str, list[ConsumerSpec]] = {}
        self._patterns: list[tuple[re.Pattern[str], ConsumerSpec]] = []
        self._cache: dict[str, tuple[ConsumerSpec, ...]] = {}
        self.by_identity: dict[str, ConsumerSpec] = {}
        self._instances: dict[type, _Instance] = {}

    def add(self, pattern: str, function: Callable[..., Any], owner: type | None = None) -> ConsumerSpec:
        """Register ``function`` for the events ``pattern`` matches.

        Registering the same function for the same pattern again changes
        nothing. A *different* function with the same ``module:qualname`` and
        pattern is a redefinition (a module reloaded, a notebook cell run
        again): it replaces the old one. Two different functions that share a
        qualname otherwise (two lambdas in one scope) get ``#2``, ``#3``... in
        registration order, so each keeps an identity of its own.
        """
        check_pattern(pattern)
        with self._lock:
            specs = self._all()
            for existing in specs:
                if existing.function is function and existing.pattern == pattern:
                    return existing
            identity = next((s.identity for s in specs if s.function is function), None)
            if identity is None:
                identity = identity_of(function)
                namesakes = [s for s in specs if s.identity.split("#")[0] == identity]
                replaced = {s.function for s in namesakes if s.pattern == pattern}
                if replaced:
                    logger.debug("consumer %s redefined; the new definition replaces it", identity)
                    identity = next(s.identity for s in namesakes if s.function in replaced)
                    self._remove(replaced)
                elif namesakes:
                    identity = f"{identity}#{len({s.function for s in namesakes}) + 1}"
            instance = None
            if owner is not None:
                instance = self._instances.setdefault(owner, _Instance(owner))
            spec = ConsumerSpec(pattern, function, owner, instance, identity)
            if "*" in pattern:
                self._patterns.append((_compile(pattern), spec))
            else:
                self._exact.setdefault(pattern, []).append(spec)
            self.by_identity[spec.identity] = spec
            self._cache = {}
        return spec

    def _all(self) -> list[ConsumerSpec]:
        return [s for specs in self._exact.values() for s in specs] + [s for _, s in self._patterns]

    def _remove(self, functions: set[Callable[..., Any]]) -> None:
        for name, specs in list(self._exact.items()):
            kept = [s for s in specs if s.function not in functions]
            if kept:
                self._exact[name] = kept
            else:
                del self._exact[name]
        self._patterns = [(r, s) for r, s in self._patterns if s.function not in functions]
        self.by_identity = {i: s for i, s in self.by_identity.items() if s.function not in functions}

    def for_name(self, name: str) -> tuple[ConsumerSpec, ...]:
        """The consumers of the event ``name``: exact ones first, then patterns."""
        found = self._cache.get(name)
        if found is None:
            with self._lock:
                found = tuple(self._exact.get(name, ())) + tuple(
                    spec for regex, spec in self._patterns if regex.match(name)
                )
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache = {}
                self._cache[name] = found
        return found

    def all(self) -> list[ConsumerSpec]:
        """Every registered consumer: exact names first, then patterns."""
        with self._lock:
            return self._all()

    def clear(self) -> None:
        """Forget every consumer."""
        with self._lock:
            self._exact.clear()
            self._patterns.clear()
            self.by_identity.clear()
            self._instances.clear()
            self._cache = {}
