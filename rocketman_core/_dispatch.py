"""The worker loop: reserve a batch, dispatch each event, retry or dead-letter, acknowledge.

A mixin of :class:`rocketman_core.Rocketman`, kept apart because it is the
hot path: every line here runs once per event.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._config import Settings
from ._consumers import Consumers, ConsumerSpec
from ._contracts import Storage
from ._envelope import (
    Event,
    MalformedMessage,
    _decode_json,
    _encode_json,
    decode,
    encode_event,
    payload_error,
)
from ._plugins import Plugins
from ._urls import mask_url

__all__ = ["Dispatch"]

logger = logging.getLogger("rocketman")

_STORAGE_RETRY_MAX = 5.0  # seconds between attempts while the storage is down


class Dispatch:
    """Dispatching events to consumers, for the runtime that mixes it in."""

    consumers: Consumers
    plugins: Plugins
    _drainers: int
    _idle: threading.Condition
    _held: dict[int, Sequence[Any]]
    _hosted: tuple[str, ...]
    _hook_emitted: bool
    _hook_handled: bool
    _hook_failed: bool
    _hook_dead: bool
    _debug: bool

    @property
    def settings(self) -> Settings:
        raise NotImplementedError  # provided by Rocketman

    if TYPE_CHECKING:
        def _wait_for_consumers(self, timeout: float) -> None: ...  # provided by Hosting

    def _work(self, storage: Storage, stopping: threading.Event) -> None:
        """One worker: reserve a batch for the hosted subscriptions, dispatch each, acknowledge."""
        settings = self.settings
        latency, batch_size = settings.latency, settings.batch_size
        me = threading.get_ident()
        release = getattr(storage, "release", None)
        failures = 0
        while not stopping.is_set():
            hosted = self._hosted
            if not hosted:
                self._wait_for_consumers(latency)
                continue
            try:
                deliveries = storage.reserve(hosted, latency, batch_size)
            except Exception as error:
                import random

                failures += 1
                delay = min(_STORAGE_RETRY_MAX, 0.1 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0)
                logger.error(
                    "the storage failed to give work (%s); trying again in %.1fs",
                    mask_url(str(error)) or type(error).__name__, delay,
                )
                stopping.wait(delay)
                continue
            if failures:
                logger.warning("the storage gives work again after %d failed attempts", failures)
                failures = 0
            if not deliveries:
                continue
            self._held[me] = deliveries
            done = []
            for index, delivery in enumerate(deliveries):
                if index and release is not None and stopping.is_set():
                    # Stopping: give back what this worker has not started,
                    # rather than make the stop wait for a whole batch.
                    try:
                        release(deliveries[index:])
                    except Exception as error:
                        logger.warning("could not give back %d messages (their lease will): %s",
                                       len(deliveries) - index, mask_url(str(error)))
                    break
                try:
                    if self._handle(storage, delivery):
                        done.append(delivery)
                except Exception as error:
                    # The storage failed while recording a retry or a dead
                    # letter: leave the delivery unacknowledged, so it comes
                    # back (at least once) rather than being lost.
                    logger.error(
                        "could not record the outcome of a message; it stays unacknowledged: %s",
                        mask_url(str(error)),
                    )
            try:
                storage.ack(done)
            except Exception as error:
                logger.error("could not acknowledge %d messages (they will be delivered again): %s",
                             len(done), mask_url(str(error)))
            self._held.pop(me, None)
            if self._drainers:
                with self._idle:
                    self._idle.notify_all()

    def _handle(self, storage: Storage, delivery: Any) -> bool:
        """Dispatch one delivery to its subscription's consumer.

        Returns True when it is to be acknowledged (the consumer succeeded),
        False when the storage already took it back (a retry, a dead letter).
        """
        message = delivery.message
        try:
            event = decode(message)
        except MalformedMessage as error:
            reason = f"malformed message: {error}"
            logger.warning("dead-lettering a malformed message of %s: %s", delivery.subscription, error)
            storage.dead_letter(delivery, message, reason)
            if self._hook_dead:
                self._call_hook("rocketman_event_dead_lettered", event=None,
                                consumer=delivery.subscription, reason=reason)
            return False
        spec = self.consumers.by_name.get(delivery.subscription)
        if spec is None:
            reason = (
                f"no consumer named {delivery.subscription} in the process that took it: its "
                "code was removed or renamed (give consumers a name= that stays), or the "
                "subscription is retired (`rocketman subscriptions remove`)"
            )
            logger.warning("dead-lettering %s (id %s): %s", event.name, event.id, reason)
            storage.dead_letter(delivery, message, reason)
            if self._hook_dead:
                self._call_hook("rocketman_event_dead_lettered", event=event,
                                consumer=delivery.subscription, reason=reason)
            return False
        if self._debug:
            logger.debug("dispatching %s (id %s) to %s", event.name, event.id, spec.name)
        timed = self._hook_handled
        started = time.perf_counter() if timed else 0.0
        try:
            spec.invoke(event.payload, event)
        except Exception as error:
            self._failed(storage, delivery, event, spec, error)
            return False
        if timed:
            self._call_hook("rocketman_event_handled", event=event, consumer=spec.name,
                            duration=time.perf_counter() - started)
        return True

    def _failed(self, storage: Storage, delivery: Any, event: Event, spec: ConsumerSpec,
                error: Exception) -> None:
        settings = self.settings
        attempt = event.attempt + 1
        retry = event.attempt < settings.max_retries
        message = encode_event(event, attempt=attempt, consumer=None)
        if retry:
            import random

            base = min(settings.retry_backoff_max, settings.retry_backoff * 2 ** event.attempt)
            delay = random.uniform(base / 2, base)
            logger.error(
                "consumer %s failed on %s (id %s, attempt %d of %d); retrying in %.2fs",
                spec.name, event.name, event.id, attempt, settings.max_retries + 1, delay,
                exc_info=error,
            )
            storage.retry_later(delivery, message, delay)
        else:
            reason = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            logger.error(
                "consumer %s failed on %s (id %s) %d times; dead-lettered",
                spec.name, event.name, event.id, attempt, exc_info=error,
            )
            storage.dead_letter(delivery, message, reason)
        if self._hook_failed:
            self._call_hook("rocketman_event_failed", event=event, consumer=spec.name,
                            error=error, will_retry=retry)
        if not retry and self._hook_dead:
            self._call_hook("rocketman_event_dead_lettered", event=event, consumer=spec.name,
                            reason=str(error))

    def _dispatch_inline(self, event_id: str, name: str, payload: Any) -> None:
        try:
            # Round-trip through JSON as a storage would: a consumer sees the
            # same payload inline as it will with memory or Redis.
            text = _encode_json(payload)
            payload = _decode_json(text)
        except (TypeError, ValueError) as error:
            raise payload_error(name, error) from None
        emitted_at = time.time()
        first: Exception | None = None
        for index, spec in enumerate(self.consumers.for_name(name)):
            # Each consumer its own copy, as each subscription decodes its own
            # delivery on a storage: one consumer's changes never reach another.
            mine = payload if index == 0 else _decode_json(text)
            try:
                spec.invoke(mine, Event(event_id, name, mine, emitted_at))
            except Exception as error:
                if first is None:
                    first = error
                else:
                    logger.error("consumer %s failed on %s", spec.name, name, exc_info=error)
        if first is not None:
            raise first

    def _call_hook(self, name: str, **kwargs: Any) -> None:
        try:
            getattr(self.plugins.manager.hook, name)(**kwargs)
        except Exception:
            logger.exception("a plugin's %s hook raised; ignored", name)

