"""Broker plumbing: settings in -> aiokafka client options, faust credentials, topics created if absent,
the producer's partition for a key, and a group-less reader for checking what a partition already holds."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import murmur2

from stream.errors import StartupError
from stream.settings import KafkaSettings

log = logging.getLogger(__name__)


def ssl_context(cfg: KafkaSettings) -> ssl.SSLContext | None:
    if cfg.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(
        cafile=str(cfg.ssl_cafile) if cfg.ssl_cafile else None,
        certfile=str(cfg.ssl_certfile) if cfg.ssl_certfile else None,
        keyfile=str(cfg.ssl_keyfile) if cfg.ssl_keyfile else None,
        password=cfg.ssl_key_password.get_secret_value() if cfg.ssl_key_password else None,
    )


def client_options(cfg: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments shared by every aiokafka client this worker opens itself."""
    opts: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap,
        "security_protocol": cfg.security_protocol,
        "request_timeout_ms": int(cfg.request_timeout_s * 1000),
    }
    ctx = ssl_context(cfg)
    if ctx is not None:
        opts["ssl_context"] = ctx
    if cfg.security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = cfg.sasl_mechanism
        opts["sasl_plain_username"] = cfg.sasl_username
        opts["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    return opts


def faust_credentials(cfg: KafkaSettings) -> Any:
    """The faust `broker_credentials` for these settings (None for PLAINTEXT)."""
    from faust.auth import SASLCredentials, SSLCredentials

    ctx = ssl_context(cfg)
    if cfg.security_protocol.startswith("SASL"):
        return SASLCredentials(
            username=cfg.sasl_username,
            password=cfg.sasl_password.get_secret_value() if cfg.sasl_password else None,
            mechanism=cfg.sasl_mechanism,
            ssl_context=ctx,
        )
    if ctx is not None:
        return SSLCredentials(ctx)
    return None


def faust_transport(fetch_max_wait_ms: int) -> type:
    """faust's aiokafka transport with the worker's consumer fetch wait set (faust 0.15 fixes it at 1500 ms).

    The wait is how long a broker may hold a fetch that finds no new record. Apache Kafka answers as soon as
    one record is there (`fetch_min_bytes=1`), so there it only paces an idle consumer's fetches; some
    Kafka-compatible brokers (Tansu, the local test broker) hold a fetch for a good part of the wait even
    then, which the wait adds to every point's latency."""
    from faust.transport.drivers import aiokafka as driver

    class ConsumerThread(driver.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher; faust passes no way to set it.
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(driver.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(driver.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


def faust_monitor() -> type:
    """faust's Monitor sensor without its per-message bookkeeping (a few dict updates and clock reads for
    every message in and out: ~4 % of the worker's event loop under load). The worker keeps its own metrics
    (`stream.metrics`); faust's offset and lag tracking, which its consumer calls directly, stays."""
    from faust.sensors import Monitor

    class LeanMonitor(Monitor):
        def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
            return None

        def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
            return None

        def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
            return None

        def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
            return None

    return LeanMonitor


@functools.lru_cache(maxsize=65536)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition aiokafka's default partitioner (and the Java client's) picks for a key.

    Cached: murmur2 is pure Python, and the publisher asks for every series in every batch."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


async def ensure_topics(cfg: KafkaSettings, names: Iterable[str], compacted: Iterable[str] = ()) -> dict[str, int]:
    """Create missing topics with `cfg.partitions` partitions; returns every topic's partition count.

    Raises StartupError when the broker cannot be reached within `cfg.connect_timeout_s`."""
    names, compacted = list(dict.fromkeys(names)), set(compacted)
    admin = AIOKafkaAdminClient(**client_options(cfg))
    try:
        await asyncio.wait_for(admin.start(), cfg.connect_timeout_s)
    except (TimeoutError, KafkaError, OSError) as e:
        await _quietly(admin.close())
        raise StartupError(f"Kafka broker {cfg.bootstrap} unreachable: {type(e).__name__}: {e}") from e
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            new = [
                NewTopic(
                    n,
                    cfg.partitions,
                    cfg.replication_factor,
                    topic_configs={"cleanup.policy": "compact"} if n in compacted else {},
                )
                for n in missing
            ]
            try:
                await admin.create_topics(new)
                log.info("created topics %s with %d partitions", missing, cfg.partitions)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
        counts = await _partition_counts(admin, names)
    finally:
        await _quietly(admin.close())
    return counts


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    for _ in range(50):  # a just-created topic may take a moment to show its partitions
        described = await admin.describe_topics(names)
        counts = {d["topic"]: len(d.get("partitions") or []) for d in described}
        if all(counts.get(n) for n in names):
            return counts
        await asyncio.sleep(0.1)
    raise StartupError(f"topics have no partitions after creation: {counts}")


async def _quietly(aw: Any) -> None:
    try:
        await aw
    except (KafkaError, OSError):
        pass


class PartitionReader:
    """Reads ranges of output partitions with no consumer group; used to learn what is already published."""

    def __init__(self, cfg: KafkaSettings) -> None:
        self._cfg = cfg
        self._consumer: AIOKafkaConsumer | None = None

    async def _get(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            c = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **client_options(self._cfg))
            await c.start()
            self._consumer = c
        return self._consumer

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        consumer = await self._get()
        return await consumer.end_offsets(tps)

    async def read(self, tp: TopicPartition, start: int) -> list[tuple[bytes | None, bytes | None]]:
        """(key, value) of every record from `start` to the end of the partition.

        "The end" is where a fetch comes back empty at or past the reported end offset: some brokers
        (the Tansu test broker) report an end offset below the last record of a multi-record batch."""
        consumer = await self._get()
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.assign([tp])
        consumer.seek(tp, start)
        out: list[tuple[bytes | None, bytes | None]] = []
        while True:
            records = (await consumer.getmany(tp, timeout_ms=300)).get(tp, [])
            out.extend((r.key, r.value) for r in records)
            if not records and await consumer.position(tp) >= end:
                return out

    async def close(self) -> None:
        if self._consumer is not None:
            await _quietly(self._consumer.stop())
            self._consumer = None


async def read_to_end(cfg: KafkaSettings, topic: str) -> AsyncIterator[Any]:
    """Every record of `topic`, partition by partition in offset order, from its beginning to its end offsets as
    of the call, without a consumer group (nothing is committed): a bounded read of a compacted or small topic.
    A topic with no partitions yields nothing."""
    consumer = AIOKafkaConsumer(**client_options(cfg), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # refreshes the metadata that partitions_for_topic reads
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not tps:
            return
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for record in records:
                    if record.offset < end[tp]:
                        yield record
    finally:
        await consumer.stop()
