"""The telemetry consumer (raw telemetry bytes in, batches handed to the Processor through the `Pipeline`),
the outbox sweep timer and the /metrics page, attached to the faust App.

Two consumers, chosen by `kafka.consumer`: `aiokafka` (the default, `stream.consumer`: aiokafka `getmany()`
batches in the worker's event loop, offsets committed after the pipeline acknowledged them) and `faust`
(the `score_telemetry` agent on faust's stream). Both feed the same pipeline and keep the same guarantees.

Acknowledgement in the faust agent: faust's `take()` acknowledges a batch's events in a `finally` block,
i.e. also when the body raised or was cancelled (a shutdown mid-batch), which would let faust commit
offsets of points that were never written. The agent therefore uses `noack_take()` (the same batching
without the implicit acks) and acknowledges each event itself, after the state, outbox and outputs are
written (the pipeline does, in batch order). An error it cannot retry stops the process without
acknowledging, so the batch is redelivered after the restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream.consumer import TelemetryConsumer
from stream.errors import StateConflict
from stream.pipeline import Pipeline
from stream.processor import Processor, RawEvent, Staged
from stream.recovery import Backoff, exit_on_bug, retry

log = logging.getLogger(__name__)


def raw_event(event: Any) -> RawEvent:
    """faust Event -> the processor's plain view of it."""
    m = event.message
    ts = m.timestamp
    return RawEvent(
        key=m.key,
        value=m.value,
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        timestamp_ms=int(ts * 1000) if ts else None,
    )


def offset_of(fut: asyncio.Future) -> asyncio.Future:
    """A future of the record's offset, chained to the producer's future of its metadata.

    A plain future, not a coroutine: the publisher gathers one per message, and gathering coroutines
    would create a Task for each (a measurable share of the worker's CPU at a few hundred series)."""
    out = asyncio.get_running_loop().create_future()

    def done(f: asyncio.Future) -> None:
        if out.done():
            return
        if f.cancelled():
            out.cancel()
        elif f.exception() is not None:
            out.set_exception(f.exception())  # type: ignore[arg-type]
        else:
            out.set_result(int(f.result().offset))

    fut.add_done_callback(done)
    return out


async def send_batch_with(producer: Any, topic: str, partition: int, records: list[tuple[bytes, bytes]]) -> Any:
    """Queue one partition's records on an aiokafka producer as record batches (`create_batch`, `send_batch`:
    one future per batch, not per record); returns an awaitable of each record's outcome, in order: its offset,
    or the error of its batch (the broker stores a batch whole or not at all; records not queued at all share
    the error that stopped the queueing)."""
    batches: list[tuple[asyncio.Future | BaseException, int]] = []
    try:
        batch, n = producer.create_batch(), 0
        for key, value in records:
            if batch.append(timestamp=None, key=key, value=value) is None:  # full: send it, start the next
                batches.append((await producer.send_batch(batch, topic, partition=partition), n))
                batch, n = producer.create_batch(), 0
                if batch.append(timestamp=None, key=key, value=value) is None:
                    raise RuntimeError("an empty record batch refused a record")  # aiokafka takes any first one
            n += 1
        batches.append((await producer.send_batch(batch, topic, partition=partition), n))
    except Exception as e:  # noqa: BLE001 - the publisher sorts it out, record by record
        batches.append((e, len(records) - sum(count for _, count in batches)))

    async def outcomes() -> list[int | BaseException]:
        out: list[int | BaseException] = []
        for fut, count in batches:
            if isinstance(fut, BaseException):
                out.extend([fut] * count)
                continue
            try:
                base = int((await fut).offset)  # a batch's metadata carries its first record's offset
            except Exception as e:  # noqa: BLE001 - this batch's records share its error
                out.extend([e] * count)
                continue
            out.extend(range(base, base + count))
        return out

    return outcomes()


def register(app: Any, settings: Any, runtime: Any) -> None:
    """Attach the agent, the sweep timer and the /metrics page to `app`."""
    from faust.app.base import BootStrategy
    from faust.exceptions import ProducerSendError

    retryable = (RedisError, KafkaError, OSError, asyncio.TimeoutError, StateConflict, ProducerSendError)
    scoring, worker = settings.scoring, settings.worker

    async def send(topic: str, key: bytes, value: bytes, partition: int) -> Any:
        fut = await app.producer.send(topic, key, value, partition, None, None)
        return offset_of(fut)

    async def send_batch(topic: str, partition: int, records: list[tuple[bytes, bytes]]) -> Any:
        # faust's producer wraps aiokafka's; record batches are aiokafka's API (`_ensure_producer`: started)
        return await send_batch_with(app.producer._ensure_producer(), topic, partition, records)

    async def redo_until_done(processor: Processor, staged: Staged, error: BaseException | None) -> None:
        """Apply a batch from what Redis holds, retrying Redis and broker errors with backoff."""
        first = staged.events[0]
        what = f"batch of {len(staged.events)} (first {first.topic}[{first.partition}]@{first.offset})"
        backoff = Backoff(worker.retry_backoff_s, runtime.metrics.retries)
        if error is not None:
            await backoff.wait(what, error)

        async def redo() -> None:
            async with runtime.lock:
                await processor.redo(staged)

        await retry(redo, retryable, backoff, what)

    async def ready() -> Processor:
        return await retry(lambda: runtime.ready(send, send_batch), retryable,
                           Backoff(worker.retry_backoff_s, runtime.metrics.retries), "worker start-up")

    def new_pipeline(ack: Callable[[Any], Awaitable[Any]]) -> Pipeline:
        return Pipeline(ready, redo_until_done, ack, runtime.lock, retryable, scoring.max_batch,
                        depth=scoring.pipeline_depth)

    consumer: TelemetryConsumer | None = None
    if settings.kafka.consumer == "faust":
        partitions = _faust_agent(app, settings, new_pipeline)
    else:
        consumer = TelemetryConsumer(settings.kafka, worker.id, scoring.max_batch, worker.retry_backoff_s)
        partitions = consumer.partitions
        # faust's own consumer would have no topic left to subscribe to (it refuses to start with none).
        app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)

        async def consume_telemetry() -> None:
            try:
                await consumer.run(new_pipeline)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the boundary, as in the pipeline: a bug; exit without committing
                exit_on_bug("consuming telemetry")

        app.task(consume_telemetry)

    async def sweep_outboxes() -> None:
        if runtime.processor is None:
            return
        try:
            async with runtime.lock:
                await runtime.sweep(partitions())
        except retryable as e:
            log.warning("outbox sweep failed (retried at the next tick): %s: %s", type(e).__name__, e)

    app.timer(interval=worker.sweep_interval_s, name="sweep_outboxes")(sweep_outboxes)

    async def metrics_page(self: Any, request: Any) -> Any:
        return self.bytes(runtime.metrics.render(), content_type="text/plain; version=0.0.4")

    app.page("/metrics", name="metrics")(metrics_page)

    async def close_clients(sender: Any, **kwargs: Any) -> None:
        if consumer is not None:  # before the clients it writes with are closed
            await consumer.stop()
        await runtime.close()

    app.on_before_shutdown.connect(close_clients)


def _faust_agent(app: Any, settings: Any, new_pipeline: Callable[..., Pipeline]) -> Callable[[], list[int]]:
    """`kafka.consumer = "faust"`: the `score_telemetry` agent on faust's stream; returns the function that
    lists the telemetry partitions this worker owns."""
    scoring = settings.scoring
    telemetry = app.topic(settings.kafka.topics.telemetry, key_serializer="raw", value_serializer="raw")

    async def score_telemetry(stream: Any) -> None:
        pipeline = new_pipeline(stream.ack)
        try:
            async for events in stream.noack_take(scoring.max_batch, within=scoring.max_wait_s):
                await pipeline.put(events, [raw_event(ev) for ev in events])
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the boundary: anything else is a bug; do not ack, do not go on
            exit_on_bug("starting a batch")
        finally:
            pipeline.cancel()  # stopping: batches still in flight stay unacknowledged and are redelivered

    app.agent(telemetry, name="score_telemetry")(score_telemetry)
    name = telemetry.get_topic_name()
    return lambda: sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == name)
