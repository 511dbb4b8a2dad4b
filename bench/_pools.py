"""The hand-written baselines: what a user would write instead of rocketman.

Each is a *factory*: given the handler, it starts its workers and returns an
``emit(name, payload)`` function and a ``close()`` function, the same shape as
:func:`bench._memory.rocketman_factory`, so one driver times them all.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Emit", "Factory", "Handler", "deque_pool", "queue_pool", "thread_pool_executor"]

Handler = Callable[[Any], None]
Emit = Callable[[str, Any], Any]
Factory = Callable[[Handler], tuple[Emit, Callable[[], None]]]


def queue_pool(workers: int, *, encode: bool = True) -> Factory:
    """``queue.Queue`` and ``workers`` consumer threads.

    With ``encode``, the producer puts ``json.dumps({"name", "payload"})`` and
    each consumer ``json.loads`` it before the handler: the cost of the JSON
    contract rocketman keeps, so that code moves to Redis unchanged.
    """

    def start(handler: Handler) -> tuple[Emit, Callable[[], None]]:
        tasks: queue.Queue[Any] = queue.Queue()
        put = tasks.put
        dumps, loads = json.dumps, json.loads

        def consume() -> None:
            get = tasks.get
            while True:
                item = get()
                if item is None:
                    return
                if encode:
                    handler(loads(item)["payload"])
                else:
                    handler(item[1])

        threads = [threading.Thread(target=consume, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()

        if encode:
            def emit(name: str, payload: Any) -> None:
                put(dumps({"name": name, "payload": payload}))
        else:
            def emit(name: str, payload: Any) -> None:
                put((name, payload))

        def close() -> None:
            for _ in threads:
                put(None)
            for thread in threads:
                thread.join()

        return emit, close

    return start


def deque_pool(workers: int) -> Factory:
    """``collections.deque`` with one ``threading.Condition``, JSON both ways.

    Each consumer takes every message ready under one acquisition of the lock:
    the design note's idea of "the limit" for a JSON queue in one process.
    """

    def start(handler: Handler) -> tuple[Emit, Callable[[], None]]:
        items: deque[str] = deque()
        ready = threading.Condition(threading.Lock())
        waiting = [0]
        stopping = [False]
        dumps, loads = json.dumps, json.loads

        def consume() -> None:
            while True:
                with ready:
                    while not items:
                        if stopping[0]:
                            return
                        waiting[0] += 1
                        ready.wait()
                        waiting[0] -= 1
                    share = max(1, len(items) // (waiting[0] + 1))
                    batch = [items.popleft() for _ in range(min(share, 64))]
                for item in batch:
                    handler(loads(item)["payload"])

        threads = [threading.Thread(target=consume, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()

        def emit(name: str, payload: Any) -> None:
            message = dumps({"name": name, "payload": payload})
            with ready:
                items.append(message)
                if waiting[0]:
                    ready.notify()

        def close() -> None:
            with ready:
                stopping[0] = True
                ready.notify_all()
            for thread in threads:
                thread.join()

        return emit, close

    return start


def thread_pool_executor(workers: int) -> Factory:
    """``concurrent.futures.ThreadPoolExecutor(workers).submit(handler, payload)``."""

    def start(handler: Handler) -> tuple[Emit, Callable[[], None]]:
        pool = ThreadPoolExecutor(workers)
        submit = pool.submit

        def emit(name: str, payload: Any) -> None:
            submit(handler, payload)

        def close() -> None:
            pool.shutdown(wait=True)

        return emit, close

    return start
