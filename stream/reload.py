"""Hot reload: an announcement on `model-updates` or a changed pointer in -> a verified bundle swapped in.

Every worker reads `model-updates` without a consumer group (each sees every announcement) and also
polls the bundle source (the registry's `current`, or the bundle directory's manifest) as a fallback.
A new bundle is loaded and verified off the event loop (hash, manifest schema, channel count, one
smoke inference); a bad one is refused with a log line and a metric, and the old one keeps serving.
The swap is one attribute assignment, read once per batch: every score comes from one model version.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from model.bundle import Bundle, load_bundle, read_manifest, resolve_bundle_dir
from model.errors import BundleError
from model.serving import Served, serve
from stream.metrics import Metrics
from stream.scorer import Scorer
from stream.settings import Settings

log = logging.getLogger(__name__)


class Reloader:
    """Keeps `scorer` serving the newest good bundle of `settings.model.source`."""

    def __init__(self, settings: Settings, scorer: Scorer, metrics: Metrics) -> None:
        self.settings, self.scorer, self.metrics = settings, scorer, metrics
        self.refused: set[str] = set()  # versions already refused: logged once, not retried
        self._lock = asyncio.Lock()

    def _source_version(self, uri: str | None = None) -> tuple[Path, str] | None:
        """(bundle directory, version) that should be served, or None if unreadable right now."""
        m = self.settings.model
        try:
            directory = resolve_bundle_dir(m.registry or (uri if uri else m.path))
            return directory, read_manifest(directory).version
        except BundleError as e:
            log.warning("model source not readable: %s", e)
            return None

    async def check(self, uri: str | None = None) -> bool:
        """Swap in the source's bundle if it is new and good; True if a swap happened."""
        async with self._lock:
            found = self._source_version(uri)
            if found is None:
                return False
            directory, version = found
            if version == self.scorer.served.bundle.version or version in self.refused:
                return False
            try:
                served = await asyncio.to_thread(self._load, directory)
            except BundleError as e:
                self.refused.add(version)
                self.metrics.model_reloads.labels("refused").inc()
                log.error("refused model %s from %s, still serving %s: %s",
                          version, directory, self.scorer.served.bundle.version, e)
                return False
            old = self.scorer.served.bundle.version
            self.scorer.swap(served)
            g = served.geometry
            self.metrics.set_model(version, g.window, g.stride, g.channels, g.lag)
            self.metrics.model_reloads.labels("ok").inc()
            log.info("now serving model %s (was %s): window %d, stride %d, lag %d",
                     version, old, g.window, g.stride, g.lag)
            return True

    def _load(self, directory: Path) -> Served:
        m = self.settings.model
        bundle: Bundle = load_bundle(directory, threads=m.threads, verify=True, device=m.device)
        channels = self.scorer.served.geometry.channels
        if bundle.channels != channels:
            raise BundleError(f"bundle has {bundle.channels} channel(s), the series served have {channels}")
        try:
            return serve(bundle, self.settings.scoring.score_lag, self.settings.scoring.stride)
        except ValueError as e:
            raise BundleError(f"scoring.score_lag / scoring.stride: {e}") from e

    async def poll(self) -> None:
        """Timer body: the fallback when an announcement was missed."""
        await self.check()

    async def follow_announcements(self) -> None:
        """Read `model-updates` from its end, with no consumer group, for as long as the worker runs."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        from stream.kafka import client_options

        topic = self.settings.kafka.topics.model_updates
        consumer = AIOKafkaConsumer(topic, **client_options(self.settings.kafka), group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="latest")
        try:
            await consumer.start()
            async for msg in consumer:
                await self.check(_announced_uri(msg.value))
        except KafkaError as e:  # polling still covers reloads
            log.warning("stopped following %s (%s); relying on polling", topic, e)
        finally:
            await consumer.stop()


def _announced_uri(raw: bytes | None) -> str | None:
    try:
        body: Any = json.loads(raw or b"")
        return str(body["uri"]) if isinstance(body, dict) and "uri" in body else None
    except ValueError:
        return None
