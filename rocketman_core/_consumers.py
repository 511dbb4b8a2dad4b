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

__all__ = ["ConsumerSpec", "Consumers", "identity_of"]

logger = logging.getLogger("rocketman.consumers")

F = TypeVar("F", bound=Callable[..., Any])

_CACHE_LIMIT = 10_000


def identity_of(function: Callable[..., Any]) -> str:
    """The stable identity of a consumer function: ``module:qualname``."""
    return f"{function.__module__}:{function.__qualname__}"


def is_method_definition(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is being defined in a class body (by its qualname)."""
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
    ) -> None:
        self.identity = identity_of(function)
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
        """Register ``function`` for the events ``pattern`` matches."""
        if not isinstance(pattern, str) or not pattern or any(c.isspace() for c in pattern):
            raise ValueError(f"invalid event name or pattern {pattern!r}")
        with self._lock:
            instance = None
            if owner is not None:
                instance = self._instances.setdefault(owner, _Instance(owner))
            spec = ConsumerSpec(pattern, function, owner, instance)
            previous = self.by_identity.get(spec.identity)
            if previous is not None and previous.function is not function:
                # The same module:qualname defined again (a module reloaded):
                # the new definition replaces the old one.
                logger.debug("consumer %s redefined; the new definition replaces it", spec.identity)
                self._remove(spec.identity)
            for existing in self._exact.get(pattern, ()):
                if existing.function is function:
                    return existing
            for _, existing in self._patterns:
                if existing.function is function and existing.pattern == pattern:
                    return existing
            if "*" in pattern:
                self._patterns.append((_compile(pattern), spec))
            else:
                self._exact.setdefault(pattern, []).append(spec)
            self.by_identity[spec.identity] = spec
            self._cache = {}
        return spec

    def _remove(self, identity: str) -> None:
        for name, specs in list(self._exact.items()):
            kept = [s for s in specs if s.identity != identity]
            if kept:
                self._exact[name] = kept
            else:
                del self._exact[name]
        self._patterns = [(r, s) for r, s in self._patterns if s.identity != identity]
        self.by_identity.pop(identity, None)

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
        """Every registered consumer, in registration order of their patterns."""
        with self._lock:
            return [s for specs in self._exact.values() for s in specs] + [
                s for _, s in self._patterns
            ]

    def clear(self) -> None:
        """Forget every consumer."""
        with self._lock:
            self._exact.clear()
            self._patterns.clear()
            self.by_identity.clear()
            self._instances.clear()
            self._cache = {}
