"""Redis cost of the stream: a geometry and a Redis in -> bytes per active series out.

N series in steady state are written with the worker's own code (`SeriesState` push/apply/encode and
`Store.save`, i.e. the same Lua write, key names and TTL), under a unique key prefix that is deleted
afterwards. Two figures: the growth of `INFO memory` `used_memory` divided by N (what the server as a
whole pays, allocator overhead included; other clients of the same Redis add noise), and the mean of
`MEMORY USAGE` over a sample of the keys (per key, immune to other clients). A series in steady state
has a full buffer of W points and `score_lag` pending score sums (and, with shape novelty, a full history of
`history - 1` inputs); its outbox is empty between batches.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import numpy as np

from model.serving import Geometry
from stream.state import SeriesState

CHUNK = 500  # series per pipeline
SAMPLE = 200  # keys asked for MEMORY USAGE


def steady_state(geometry: Geometry, rng: np.random.Generator, version: str = "", threshold: float = 0.5,
                 ts0: int = 1_700_000_000_000) -> bytes:
    """The encoded state of a series that has seen W + lag points (buffer full, lag points pending), as the
    worker serving model `version` writes it."""
    g = geometry
    n = g.window + g.lag
    state = SeriesState(g, version=version, threshold=threshold)
    step = state.push([ts0 + 1000 * i for i in range(n)], rng.normal(size=(n, g.channels)))
    state.apply(step, rng.uniform(size=(len(step.ends), g.window)))
    if g.novel:  # a full novelty history (its content does not change its size; computing it would take long)
        state.shape = rng.normal(size=(g.novelty_history - 1, g.channels)).astype(np.float16)
    return state.encode()


async def _used_memory(redis: Any) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def _measure(redis_url: str, geometry: Geometry, version: str, n_series: int, prefix: str) -> dict[str, Any]:
    from redis.asyncio import Redis

    from stream.settings import RedisSettings
    from stream.store import Store, Write

    redis = Redis.from_url(redis_url)
    store = Store(redis, RedisSettings(url=redis_url, key_prefix=prefix), "bench", "mem", 30_000)
    rng = np.random.default_rng(0)
    sids = [f"bench-mem-{s:06d}" for s in range(n_series)]
    try:
        before = await _used_memory(redis)
        blob_bytes = 0
        for i in range(0, n_series, CHUNK):
            writes = []
            for sid in sids[i : i + CHUNK]:
                blob = steady_state(geometry, rng, version)
                blob_bytes += len(blob)
                writes.append(Write(sid, b"", blob, [], 0))
            results = await store.save(writes)
            if not all(r.written for r in results.values()):
                raise RuntimeError("bench keys already existed under a fresh prefix")
        after = await _used_memory(redis)
        sample = sids[:: max(1, n_series // SAMPLE)][:SAMPLE]
        pipe = redis.pipeline(transaction=False)
        for sid in sample:
            pipe.memory_usage(store.key(sid, "st"), samples=0)
        usage = [int(u or 0) for u in await pipe.execute()]
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
    finally:
        await _delete(redis, prefix)
        await redis.aclose()
    return {
        "series": n_series,
        "score_lag": geometry.lag,
        "window_size": geometry.window,
        "channels": geometry.channels,
        "keys_per_series": len(keys) / n_series,
        "key_name_example": store.key(sids[0], "st"),
        "state_bytes": blob_bytes / n_series,
        "used_memory_per_series": (after - before) / n_series,
        "memory_usage_per_series": float(np.mean(usage)) * len(keys) / n_series,
    }


async def _delete(redis: Any, prefix: str) -> None:
    batch = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await redis.unlink(*batch)
            batch.clear()
    if batch:
        await redis.unlink(*batch)


def measure_memory(redis_url: str, geometry: Geometry, n_series: int, version: str = "") -> dict[str, Any]:
    """Bytes of Redis per active series in steady state (see the module docstring); `version` is the
    model version the states carry (its length counts)."""
    prefix = f"bench-mem-{uuid.uuid4().hex[:8]}:"
    return asyncio.run(_measure(redis_url, geometry, version, n_series, prefix))
