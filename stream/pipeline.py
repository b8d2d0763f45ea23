"""Batches of consumed events in -> processed and acknowledged in order, `depth` at a time (2 by default):
while ONNX Runtime scores batch N in its executor thread, the event loop parses, loads and pushes batch N+1 and
writes and publishes batch N-1's results. Batch N+1's windows are queued for inference before batch N's scores
are in, so that the model goes on to them as soon as it has scored batch N: the windows of a series that N holds
are peeked from N's state as N pushed it (`SeriesState.peek`: windows depend on the points alone, not on the
scores), and N+1's points are pushed onto that state once N has applied its scores (`Processor.settle`).
Before, the model waited, batch after batch, for N's final points and N+1's pushes (at 1,000 series it was idle
about a third of the time). With depth 3, batch N+2 also starts while N is still writing and publishing: it takes
each series' state from the latest batch in flight that holds it (N+1, else N), which helps where the model is a
small share of the work (a window every 8 points) and the waits on Redis and the broker are not.

Why it keeps the processing guarantees:
- Per-series order: a batch pushes the points of a series that a batch in flight holds only after those batches
  have applied their scores, onto the state the latest of them left in memory (`Chained`), and its
  compare-and-set expects the token that batch's write leaves; a push whose windows differ from the peeked ones
  (that batch did not write the series) is scored again. Series that no batch in flight holds are taken from
  Redis, loaded after every earlier batch was fully written (and every series' threshold override is loaded
  afresh for every batch).
- Writes, publishes and acknowledgements stay sequential: batch N+1 writes only after batch N has written,
  published and acknowledged, and acknowledges only after its own write.
- Anything unusual (a Redis or broker error, a lost compare-and-set) ends the overlap: the batch is redone
  from what Redis holds, one attempt after the other with backoff, exactly as without the pipeline, and
  the batches after it, whose pushes may rest on a state that was never stored, are redone the same way (each
  waits for the one before it to be written as staged).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stream.processor import Chained, Processor, RawEvent, Staged
from stream.recovery import exit_on_bug

log = logging.getLogger(__name__)



@dataclass(eq=False)
class _Batch:
    """One batch in flight and the two hand-overs the next batch waits for."""

    events: Sequence[Any]
    raw: list[RawEvent]
    arrived: list[float] = field(default_factory=list)  # when each event reached the worker (`Pipeline.put`)
    produced_at: float | None = None  # when its outputs went to the producer (None: redone from Redis)
    # The series states as this batch pushed them, before its scores are in (None: the next batch must not
    # peek any, e.g. after an error): the next batch peeks its windows from them.
    pushed: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # The series states the next batch may push onto (None: it must not chain any, e.g. after an error).
    applied: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    # True when the batch was written exactly as staged; False when it was redone from Redis.
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Pipeline:
    """Runs at most `depth` batches at once through a `Processor`, overlapping their stages (1 to 3).

    `ready()` gives the processor (created on first use); `redo(staged)` applies a batch sequentially from
    Redis with retries and backoff until it is written (`stream.recovery`); `ack(event)` acknowledges
    one consumed event; `lock` serializes writes with the outbox sweep."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[Processor]],
        redo: Callable[[Processor, Staged, BaseException | None], Awaitable[None]],
        ack: Callable[[Any], Awaitable[Any]],
        lock: asyncio.Lock,
        retryable: tuple[type[BaseException], ...],
        max_batch: int,
        depth: int = 2,
    ) -> None:
        self._ready, self._redo, self._ack, self._lock = ready, redo, ack, lock
        self._retryable = retryable
        self.max_batch = max_batch
        self._slots = asyncio.Semaphore(depth)
        # The batches started last (up to depth - 1, oldest first): the ones a new batch may find in flight.
        self._recent: deque[_Batch] = deque(maxlen=max(depth - 1, 1))
        self._tasks: set[asyncio.Task] = set()
        # Consumed events not yet in a batch: they pile up while the pipeline is full, so batches grow with
        # the load (up to max_batch) instead of being cut by the consumer's batching wait.
        self._queue: deque[tuple[Any, RawEvent, float]] = deque()
        self._queued = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._runner: asyncio.Task | None = None

    async def put(self, events: Sequence[Any], raw: Sequence[RawEvent]) -> None:
        """Queue consumed events; waits while two batches' worth are queued already."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._start_batches())
        await self._room.wait()
        now = time.time()  # (a wait for room is the worker's own time too)
        self._queue.extend((ev, r, now) for ev, r in zip(events, raw, strict=True))
        self._queued.set()
        if len(self._queue) >= 2 * self.max_batch:
            self._room.clear()

    @property
    def idle(self) -> bool:
        """Nothing queued and no batch in flight: everything put so far is acknowledged."""
        return not self._queue and not self._tasks

    async def drain(self, timeout: float) -> bool:
        """Wait until everything put so far is processed and acknowledged (True), or `timeout` passes."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.idle:
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def cancel(self) -> None:
        """Stop every batch in flight and drop what is queued; none of it is acknowledged (redelivered)."""
        for task in [self._runner, *self._tasks]:
            if task is not None:
                task.cancel()
        self._queue.clear()

    async def _start_batches(self) -> None:
        """Whenever fewer than `depth` batches are in flight, start one with what is queued."""
        try:
            await self._batches()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the boundary, as in _run
            exit_on_bug("starting a batch")

    async def _batches(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                await self._queued.wait()
                processor = await self._ready()
            except BaseException:
                self._slots.release()
                raise
            take = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            if not self._queue:
                self._queued.clear()
            if len(self._queue) < 2 * self.max_batch:
                self._room.set()
            batch = _Batch([ev for ev, _, _ in take], [r for _, r, _ in take], [t for _, _, t in take])
            prevs = list(self._recent)
            self._recent.append(batch)
            task = asyncio.create_task(self._run(processor, batch, prevs))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, processor: Processor, batch: _Batch, prevs: list[_Batch]) -> None:
        try:
            as_staged = await self._process(processor, batch, prevs)
            processor.observe_in_worker(batch.arrived, batch.produced_at)
            # Acknowledged before the next batch may write: acknowledgements stay in consumption order.
            for ev in batch.events:
                await self._ack(ev)
            batch.done.set_result(as_staged)
        except asyncio.CancelledError:
            raise  # shutting down: the batch stays unacknowledged and is redelivered
        except Exception:  # noqa: BLE001 - the boundary: anything else is a bug; do not ack, do not go on
            exit_on_bug("processing a batch")
        finally:
            for fut in (batch.pushed, batch.applied, batch.done):
                if not fut.done():
                    fut.set_result(False if fut is batch.done else None)
            self._slots.release()

    async def _process(self, processor: Processor, batch: _Batch, prevs: list[_Batch]) -> bool:
        """Everything but the acknowledgement; True when the batch was written exactly as staged."""
        staged = processor.parse(batch.raw)
        prev = prevs[-1] if prevs else None
        try:
            chained = await self._stage(processor, staged, batch, prevs)
        except self._retryable as e:
            if not batch.pushed.done():
                batch.pushed.set_result(None)
            batch.applied.set_result(None)
            await self._after(prev)
            await self._redo(processor, staged, e)
            return False
        batch.applied.set_result(chained)
        if not await self._after(prev):
            # The previous batch was redone from Redis: states this one pushed onto may never have been
            # stored as they were. Nothing of this batch is written yet; redo it from Redis too.
            await self._redo(processor, staged, None)
            return False
        try:
            async with self._lock:
                lost = await processor.write(staged)
        except self._retryable as e:
            await self._redo(processor, staged, e)
            return False
        if lost:
            processor.metrics.state_conflicts.inc(len(lost))
            await self._redo(processor, _only(staged, lost), None)
        else:
            processor.observe_end_to_end(staged.events)
            batch.produced_at = staged.produced_at
        return not lost

    async def _stage(self, processor: Processor, staged: Staged, batch: _Batch,
                     prevs: list[_Batch]) -> dict[str, Chained]:
        """Load, push (peek the series the batches in flight hold, then push them onto their states), queue
        inference, finish: everything but the write."""
        await processor.load(staged)
        if not prevs:
            processor.start(staged, {})
        else:
            ahead = await _latest([p.pushed for p in prevs])
            if ahead is None:
                processor.start(staged, await _latest([p.applied for p in prevs]) or {})
            else:
                processor.start(staged, {}, ahead)
                processor.settle(staged, await _latest([p.applied for p in prevs]) or {})
        batch.pushed.set_result({sid: s.state for sid, s in staged.series.items() if s.state is not None})
        return await processor.finish(staged)

    @staticmethod
    async def _after(prev: _Batch | None) -> bool:
        """Wait until the previous batch is written and acknowledged; True if it was written as staged."""
        return prev is None or bool(await asyncio.shield(prev.done))


async def _latest(handed: list[asyncio.Future]) -> dict | None:
    """The hand-overs of the batches in flight (oldest first) as one: each series' state from the latest batch
    that holds it. None when any of them handed nothing over (an error: this batch will be redone from Redis,
    and must not push onto states a failed batch may have left half changed)."""
    out: dict = {}
    for fut in handed:
        states = await asyncio.shield(fut)
        if states is None:
            return None
        out.update(states)
    return out


def _only(staged: Staged, series: list[str]) -> Staged:
    """The part of a parsed batch that belongs to `series` (no dead letters: those are sent)."""
    return Staged(staged.events, {sid: staged.groups[sid] for sid in series}, [])
