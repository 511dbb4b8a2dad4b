"""``rocketman demo``: events flowing through memory storage and worker threads.

What it shows, with the default backends and nothing else installed: a
producer and consumers (exact names and a pattern), a consumer that fails
twice and succeeds on its third attempt while its sibling runs once, one that
always fails and ends in the dead letters, a replay, and the throughput of
20,000 events.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from ._envelope import Event
from ._runtime import Rocketman

__all__ = ["run"]


def run(events: int = 20_000) -> int:
    """Run the demo on a fresh runtime; print what happens; return 0."""
    logging.getLogger("rocketman").setLevel(logging.CRITICAL)  # the demo narrates itself
    app = Rocketman()
    app.configure(storage="memory", executor="threads", worker_count=5,
                  max_retries=3, retry_backoff=0.05)
    say = _printer()
    flaky_calls: list[int] = []

    @app.on_event("user.signed_up")
    def send_welcome(payload: Any, event: Event) -> None:
        say(f"  send_welcome   got {payload} (event {event.id[-6:]}, attempt {event.attempt})")

    @app.on_event("user.signed_up")
    def sync_crm(payload: Any, event: Event) -> None:
        flaky_calls.append(event.attempt)
        if len(flaky_calls) < 3:
            say(f"  sync_crm       fails on attempt {event.attempt} (the CRM is down)")
            raise ConnectionError("CRM unreachable")
        say(f"  sync_crm       succeeds on attempt {event.attempt}")

    @app.on_event("user.*")
    def audit(payload: Any, event: Event) -> None:
        say(f"  audit          saw {event.name}")

    ledger = {"open": False}

    @app.on_event("invoice.paid")
    def book_invoice(payload: Any, event: Event) -> None:
        if not ledger["open"]:
            raise ValueError(f"no ledger for invoice {payload['invoice']}")
        say(f"  book_invoice   booked invoice {payload['invoice']} (replayed, attempt {event.attempt})")

    say("1. emit user.signed_up: two consumers of the name and one of the pattern user.*")
    app.emit("user.signed_up", {"id": 42, "email": "ada@example.com"})
    app.drain(timeout=10)
    say(f"   sync_crm was called {len(flaky_calls)} times, send_welcome once: retries are per consumer")

    say("\n2. emit invoice.paid to a consumer that fails every time")
    app.emit("invoice.paid", {"invoice": 7})
    app.drain(timeout=10)
    for record in app.dead_letters():
        error = record.reason
        say(f"   dead letter: {record.event.name if record.event else '?'} for {record.consumer}, "
            f"{record.attempts} attempts, {error}")
    say(f"   stats: {app.stats()}")

    say("\n3. open the ledger and replay the dead letters")
    ledger["open"] = True
    say(f"   replayed {app.replay_dead_letters()}")
    app.drain(timeout=10)
    say(f"   stats: {app.stats()}")

    say(f"\n4. throughput: {events:,} events through 5 worker threads")
    handled = [0]

    @app.on_event("demo.tick")
    def tick(payload: Any) -> None:
        handled[0] += 1

    started = time.perf_counter()
    for number in range(events):
        app.emit("demo.tick", {"n": number})
    app.drain(timeout=60)
    elapsed = time.perf_counter() - started
    say(f"   {handled[0]:,} handled in {elapsed:.2f}s: {handled[0] / elapsed:,.0f} events/s "
        "(first emit to last handler)")
    app.shutdown(timeout=5)
    say("\ndone: see README.md for durable storages, relays and plugins")
    return 0


def _printer() -> Any:
    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    return say
