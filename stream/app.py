"""Settings in -> a checked start-up (bundle, Redis, broker, topics) and the faust App that runs the worker:
the telemetry consumer (the aiokafka consumer by default, faust's agent stream as the alternative), the
outbox sweep timer and the /metrics page.

Processing guarantee: at-least-once (never faust's `exactly_once`); a batch's events are committed (or
acknowledged to faust) only after its state, outbox and outputs are written (see `stream.agents`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from model.bundle import Bundle, load_bundle
from model.errors import BundleError
from model.serving import Geometry, Served, serve
from stream.errors import StartupError
from stream.feedback import FeedbackReader
from stream.kafka import PartitionReader, ensure_topics, faust_credentials, faust_monitor, faust_transport
from stream.metrics import Metrics
from stream.processor import Processor
from stream.publish import Publisher
from stream.reload import Reloader
from stream.scorer import Scorer
from stream.settings import Settings
from stream.store import Store, connect

log = logging.getLogger(__name__)


@dataclass
class Checked:
    """What start-up established: the bundle, the aggregation geometry and every topic's partition count."""

    bundle: Bundle
    geometry: Geometry
    partitions: dict[str, int]


def load_checked_bundle(settings: Settings) -> tuple[Bundle, Geometry]:
    """Load and verify the bundle; resolve score_lag against its window. StartupError on any problem."""
    try:
        bundle = load_bundle(settings.model.source, threads=settings.model.threads, verify=settings.model.verify,
                             device=settings.model.device)
    except BundleError as e:
        raise StartupError(f"model bundle unusable: {e}") from e
    try:
        served = serve(bundle, settings.scoring.score_lag, settings.scoring.stride)
    except ValueError as e:
        raise StartupError(f"scoring.score_lag / scoring.stride: {e}") from e
    return bundle, served.geometry


async def check_services(settings: Settings) -> dict[str, int]:
    """Ping Redis, reach the broker and create missing topics; returns partition counts."""
    redis = connect(settings.redis)
    deadline = time.monotonic() + settings.redis.connect_timeout_s
    try:
        while True:  # like the broker's check: a Redis that is restarting is waited for, up to the deadline
            try:
                await asyncio.wait_for(redis.ping(), settings.redis.socket_timeout_s)
                break
            except (TimeoutError, RedisError, OSError) as e:
                if time.monotonic() + 0.5 > deadline:
                    raise StartupError(f"Redis {settings.redis.url} unreachable: {type(e).__name__}: {e}") from e
                await asyncio.sleep(0.5)
    finally:
        await redis.aclose()
    t = settings.kafka.topics
    return await ensure_topics(
        settings.kafka, [t.telemetry, t.scores, t.alerts, t.dlq, t.model_updates, t.feedback],
        compacted=[getattr(t, name) for name in t.COMPACTED]
    )


def startup_checks(settings: Settings) -> Checked:
    """Everything that must work before the worker joins the group; fails fast with one clear message."""
    bundle, geometry = load_checked_bundle(settings)
    partitions = asyncio.run(check_services(settings))
    log.info(
        "bundle %s (window %d, stride %d, channels %d), score_lag %d; partitions %s",
        bundle.version,
        geometry.window,
        geometry.stride,
        geometry.channels,
        geometry.lag,
        partitions,
    )
    return Checked(bundle, geometry, partitions)


class Runtime:
    """The worker's live objects, built lazily inside faust's event loop (the clients bind to it)."""

    def __init__(self, settings: Settings, checked: Checked, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.checked = checked
        self.metrics = metrics or Metrics()
        self.scorer = Scorer(Served(checked.bundle, checked.geometry), settings.model.inference_batch,
                             self.metrics.model_busy.inc)
        self.incarnation = uuid.uuid4().hex[:8]
        self.lock = asyncio.Lock()  # one batch or sweep at a time: they share outbox claims
        self.processor: Processor | None = None
        self.publisher: Publisher | None = None
        self.store: Store | None = None
        self._reader: PartitionReader | None = None
        g = checked.geometry
        self.metrics.set_model(checked.bundle.version, g.window, g.stride, g.channels, g.lag)

    async def ready(self, send: Any, send_batch: Any = None) -> Processor:
        """Create the clients on first use (idempotent); `send` / `send_batch`: the publisher's (`stream.publish`)."""
        if self.processor is not None:
            return self.processor
        s = self.settings
        redis = connect(s.redis, read_timeout=False)  # Store times each round trip
        self.store = Store(redis, s.redis, s.worker.id, self.incarnation, int(s.worker.outbox_claim_s * 1000))
        self._reader = PartitionReader(s.kafka)
        publisher = Publisher(self.store, send, self._reader, s.kafka.topics, self.checked.partitions, self.metrics,
                              send_batch)
        await publisher.start()
        self.publisher = publisher
        self.processor = Processor(
            self.store,
            self.scorer,
            publisher,
            s.scoring,
            s.alerts,
            self.metrics,
            s.worker.id,
            dead_letter_max_bytes=s.kafka.dead_letter_max_bytes,
        )
        log.info("worker %s (incarnation %s) ready", s.worker.id, self.incarnation)
        return self.processor

    async def sweep(self, partitions: list[int]) -> int:
        """Publish outboxes left behind (expired claims, writes that found the claim held); returns sent."""
        if self.store is None or self.publisher is None or not partitions:
            return 0
        sent = 0
        for p, sids in (await self.store.indexed(partitions)).items():
            if not sids:
                continue
            results = await self.store.claim({sid: self.publisher.marks(sid) for sid in sids})
            empty = [sid for sid, r in results.items() if r.claimed == 0]
            await self.store.unindex(p, empty)
            sent += await self.publisher.publish(results, {sid: p for sid in results})
        if sent:
            log.info("sweep published %d leftover outbox message(s)", sent)
        return sent

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        if self.store is not None:
            await self.store.redis.aclose()
        self.scorer.close()


def faust_broker_urls(bootstrap: str) -> list[str]:
    return [f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip()]


def build_app(settings: Settings, checked: Checked, runtime: Runtime | None = None) -> Any:
    """The faust App: the telemetry consumer (`stream.agents.register`), the outbox sweep timer and /metrics."""
    import faust

    from stream.agents import register

    k, w = settings.kafka, settings.worker
    datadir = w.data_dir / k.group_id / w.id
    datadir.mkdir(parents=True, exist_ok=True)  # faust creates only the last level
    app = faust.App(
        k.group_id,
        broker=faust_broker_urls(k.bootstrap),
        broker_credentials=faust_credentials(k),
        processing_guarantee="at_least_once",
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=k.partitions,
        topic_replication_factor=k.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset=k.auto_offset_reset,
        broker_session_timeout=k.session_timeout_s,
        broker_heartbeat_interval=k.heartbeat_interval_s,
        broker_rebalance_timeout=k.rebalance_timeout_s,
        broker_commit_interval=k.commit_interval_s,
        broker_request_timeout=max(k.request_timeout_s, k.session_timeout_s + 5),
        producer_acks=-1,
        producer_max_request_size=k.max_request_bytes,
        web_enabled=w.web_enabled,
        web_port=w.web_port,
        web_bind=w.web_bind,
        datadir=str(datadir),
        store="memory://",
        stream_wait_empty=True,
        Monitor=faust_monitor(),
    )
    # Our transport subclass (for the consumer's fetch wait), set before anything builds the default one.
    app.transport = faust_transport(k.fetch_max_wait_ms)(app.conf.broker_consumer, app)
    runtime = runtime or Runtime(settings, checked)
    register(app, settings, runtime)
    app.task(FeedbackReader(settings, runtime.metrics).run)
    if settings.model.reload:
        reloader = Reloader(settings, runtime.scorer, runtime.metrics)
        app.timer(interval=settings.model.poll_interval_s, name="poll_model")(reloader.poll)
        app.task(reloader.follow_announcements)
    return app, runtime
