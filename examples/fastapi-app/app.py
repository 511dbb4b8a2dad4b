"""A shop's order service: FastAPI endpoints emit, rocketman consumers react.

``uvicorn app:app`` alone keeps events in memory and runs the consumers in the
web process. With ``ROCKETMAN_STORAGE=redis://...`` and
``ROCKETMAN_WORKER_COUNT=0`` the web process only emits, and ``rocketman
worker app`` runs the consumers. The code is the same (see README.md).

The consumers append what they did to the file ``RECEIPTS_FILE`` (default
``receipts.log``): the stand-in for the database a real service would write
to, which the web process and a worker process both see.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

import rocketman_core as rocketman

RECEIPTS_FILE = Path(os.environ.get("RECEIPTS_FILE", "receipts.log"))
#: The latency of the mail API that ``send_receipt`` stands in for, in seconds.
MAIL_SECONDS = float(os.environ.get("MAIL_SECONDS", "0.01"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # uvicorn ends by re-raising the SIGTERM it received, which skips the
    # interpreter's exit handlers, rocketman's among them: shut down here, so
    # that what the memory storage still holds is handled (or counted in a
    # WARNING). On a thread: shutdown blocks until then.
    await asyncio.to_thread(rocketman.shutdown)


app = FastAPI(title="shop", lifespan=lifespan)


class Order(BaseModel):
    item: str
    quantity: int = 1


@app.post("/orders", status_code=202)
async def place_order(order: Order) -> dict[str, str]:
    """Accept an order: emit ``order.placed`` and answer at once with its event id."""
    event_id = await rocketman.emit_async("order.placed", payload=order.model_dump())
    return {"event_id": event_id}


@app.get("/receipts")
def receipts() -> list[dict[str, Any]]:
    """What the consumers did so far, one record per handling (in any process)."""
    if not RECEIPTS_FILE.exists():
        return []
    return [json.loads(line) for line in RECEIPTS_FILE.read_text().splitlines()]


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


@rocketman.on_event("order.placed", name="shop.send_receipt")
async def send_receipt(payload: dict[str, Any], event: rocketman.Event) -> None:
    """Mail the customer a receipt: awaited on rocketman's event loop, not uvicorn's."""
    await asyncio.sleep(MAIL_SECONDS)  # the mail API's round trip
    record("send_receipt", event)


@rocketman.on_event("order.placed", name="shop.book_sale")
def book_sale(payload: dict[str, Any], event: rocketman.Event) -> None:
    """Book the sale in the ledger: a plain function, run on a worker thread."""
    record("book_sale", event)


def record(consumer: str, event: rocketman.Event) -> None:
    """Append one JSON line: one O_APPEND write, so lines of several processes never mix.

    A local write of a few bytes: quick enough to do on the event loop.
    """
    line = json.dumps({"consumer": consumer, "event_id": event.id, "pid": os.getpid()})
    fd = os.open(RECEIPTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)
