"""Pipeline bookkeeping that needs no Redis or broker: draining and cancelling (the batches themselves are
tested end to end in tests/integration)."""

from __future__ import annotations

import asyncio
from typing import Any

from stream.pipeline import Pipeline
from stream.processor import RawEvent


def events(n: int) -> list[RawEvent]:
    return [RawEvent(b"k", b"{}", "telemetry", 0, i, None) for i in range(n)]


async def test_drain_waits_and_cancel_drops_the_queue_unacknowledged() -> None:
    acked: list[Any] = []
    never = asyncio.Event()

    async def ready() -> Any:
        await never.wait()  # the processor never becomes ready: events stay queued

    async def redo(*_: Any) -> None:
        raise AssertionError("no batch should run")

    async def ack(ev: Any) -> None:
        acked.append(ev)

    pipeline = Pipeline(ready, redo, ack, asyncio.Lock(), (), max_batch=4)
    assert pipeline.idle
    evs = events(3)
    await pipeline.put(evs, evs)
    assert not pipeline.idle
    assert not await pipeline.drain(0.05)  # nothing finishes: drain gives up after its timeout
    pipeline.cancel()
    assert pipeline.idle and await pipeline.drain(0.05)
    assert acked == []  # dropped, not acknowledged: they are redelivered
