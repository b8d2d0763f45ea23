"""Redis persistence: series ids in -> stored states; (state, outbox entries) in -> atomic write per series.

Keys (prefix P, `{series_id}` as the Redis Cluster hash tag, so a series' keys share one slot):

    P{sid}:st    the encoded `SeriesState`; its first 8 bytes (n) are the compare-and-set token
    P{sid}:ob    the outbox: a list of finalized but not yet acknowledged output messages, oldest first
    P{sid}:cl    the outbox claim: hash {owner, until (ms, Redis clock), marks (JSON, see stream.publish)}
    P{sid}:thr   optional per-series threshold override (set by operators; never expires)
    Poutbox:<p>  set of series ids of telemetry partition p that may have a non-empty outbox

One Lua script writes a series' state and appends its outbox entries atomically, only if the stored n
is still the one this worker loaded (two workers racing on one series during a rebalance cannot both
apply), and in the same step tries to claim the outbox. Only the claim holder publishes; it deletes what
it published, by count, after the broker acknowledged it, and drops the claim.

On a single Redis (not a cluster) a batch's loads are one MGET, and its writes and releases one script call
each for all of its series (the same per-series steps in a loop), up to `SERIES_PER_COMMAND` series a command
and all of a batch's commands in one round trip: per command, both redis-py and the server pay a fixed cost
(packing, dispatch, a script call's set-up, a reply to parse) that at 1000 series was about a third of the
worker's event loop, and a script runs to its end before Redis serves anyone else, so a batch of 16,384 series
in one script would hold up other workers' commands for tens of milliseconds. A cluster cannot run one script
over keys of many slots, so there every series is its own command, pipelined, as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from stream.settings import RedisSettings

log = logging.getLogger(__name__)

# Most series in one MGET or script call on a single Redis (see the module docstring).
SERIES_PER_COMMAND = 1024

try:
    import hiredis
except ImportError:  # pragma: no cover - hiredis comes with the stream extra
    hiredis = None


class _HiredisPacking:
    """Packs commands with hiredis, as redis-py's blocking client does. redis-py's asyncio connection packs
    in Python, argument by argument: about a seventh of the worker's CPU at 1000 series, where a batch sends
    two or three commands of about nine arguments per series. Arguments hiredis refuses (bool, None,
    memoryview, ...) go through redis-py's own packing, which accepts or rejects them as before."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])  # 'SCRIPT LOAD' is two arguments
        elif isinstance(first, bytes) and b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return super().pack_command(*args)  # type: ignore[misc]


@functools.cache
def _with_hiredis_packing(base: type) -> type:
    return type(f"HiredisPacking{base.__name__}", (_HiredisPacking, base), {})

# Shared by the write and the claim script: take the claim when it is free, ours, expired, or held by an
# earlier incarnation of this worker id (that process is gone: ids are unique among live workers).
# Any claim found in place means a publish did not finish, so its marks are returned for read-back.
_CLAIM = """
local function claim(ob, cl, owner, wid, claim_ms, marks, ttl_ms)
  if redis.call('LLEN', ob) == 0 then return {0, false} end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local c = redis.call('HMGET', cl, 'owner', 'until', 'marks')
  if c[1] and c[1] ~= owner and tonumber(c[2]) > now
     and string.sub(c[1], 1, #wid + 1) ~= wid .. '#' then
    return {-1, false}
  end
  local prev = false
  if c[1] then
    prev = c[3] or '{}'
    local merged = cjson.decode(prev)
    for k, v in pairs(cjson.decode(marks)) do
      if merged[k] == nil or v < merged[k] then merged[k] = v end
    end
    marks = cjson.encode(merged)
  end
  redis.call('HSET', cl, 'owner', owner, 'until', now + tonumber(claim_ms), 'marks', marks)
  redis.call('PEXPIRE', cl, ttl_ms)
  return {1, prev}
end
"""

# One series' write: compare-and-set of its state, its outbox entries ARGV[first..last] appended, the claim.
# Returns {0} on a lost compare-and-set, else {1, claimed (1 / 0 nothing / -1 held), prev marks, outbox
# entries when claimed...}.
_WRITE_ONE = """
local function write(st, ob, cl, expected, blob, ttl_ms, owner, wid, claim_ms, marks, first, last)
  local cur = redis.call('GET', st)
  if expected == '' then
    if cur then return {0} end
  elseif (not cur) or string.sub(cur, 1, #expected) ~= expected then
    return {0}
  end
  redis.call('SET', st, blob, 'PX', ttl_ms)
  for i = first, last, 500 do
    redis.call('RPUSH', ob, unpack(ARGV, i, math.min(i + 499, last)))
  end
  if last >= first or redis.call('EXISTS', ob) == 1 then redis.call('PEXPIRE', ob, ttl_ms) end
  local r = claim(ob, cl, owner, wid, claim_ms, marks, ttl_ms)
  local out = {1, r[1], r[2]}
  if r[1] == 1 then
    for _, e in ipairs(redis.call('LRANGE', ob, 0, -1)) do out[#out + 1] = e end
  end
  return out
end
"""

# KEYS: st ob cl; ARGV: expected token ('' = must not exist), blob, ttl_ms, owner, wid, claim_ms, marks,
# entries... Returns `write`'s result.
_WRITE = (
    _CLAIM
    + _WRITE_ONE
    + """
return write(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], 8, #ARGV)
"""
)

# Many series in one call (a single Redis only). KEYS: st ob cl of each series; ARGV: ttl_ms, owner, wid,
# claim_ms, then per series: expected, blob, marks, entry count, entries... Returns each series' `write` result.
_WRITE_MANY = (
    _CLAIM
    + _WRITE_ONE
    + """
local out, a = {}, 5
for s = 1, #KEYS, 3 do
  local n = tonumber(ARGV[a + 3])
  out[#out + 1] = write(KEYS[s], KEYS[s + 1], KEYS[s + 2], ARGV[a], ARGV[a + 1], ARGV[1], ARGV[2], ARGV[3],
                        ARGV[4], ARGV[a + 2], a + 4, a + 3 + n)
  a = a + 4 + n
end
return out
"""
)

# KEYS: ob cl; ARGV: owner, wid, claim_ms, marks, ttl_ms. Returns {claimed, prev marks, entries...}.
_CLAIM_ONLY = (
    _CLAIM
    + """
local r = claim(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
local out = {r[1], r[2]}
if r[1] == 1 then
  for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do out[#out + 1] = e end
end
return out
"""
)

_RELEASE_ONE = """
local function release(ob, cl, owner, count)
  if redis.call('HGET', cl, 'owner') ~= owner then return -1 end
  redis.call('LTRIM', ob, count, -1)
  redis.call('DEL', cl)
  return redis.call('LLEN', ob)
end
"""

# KEYS: ob cl; ARGV: owner, count published. Returns what is left in the outbox, or -1 if the claim was lost.
_RELEASE = _RELEASE_ONE + """
return release(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""

# Many series in one call (a single Redis only). KEYS: ob cl of each series; ARGV: owner, then each one's count.
_RELEASE_MANY = _RELEASE_ONE + """
local out = {}
for s = 1, #KEYS, 2 do out[#out + 1] = release(KEYS[s], KEYS[s + 1], ARGV[1], ARGV[(s + 1) / 2 + 1]) end
return out
"""


@dataclass(frozen=True)
class Loaded:
    """What Redis holds for one series: the encoded state (None if new) and the threshold override."""

    blob: bytes | None
    threshold: float | None


@dataclass(frozen=True)
class WriteResult:
    """Outcome of one series write: `written` False means another worker won the compare-and-set.

    `claimed` is 1 when this worker now owns the outbox (`entries` is all of it, oldest first; `prev_marks`
    is set when an earlier publish did not finish), 0 when the outbox is empty, -1 when another live
    worker owns it (it or the sweep will publish).
    """

    written: bool
    claimed: int = 0
    prev_marks: str | None = None
    entries: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class Write:
    """One series' write: the token its state was loaded with, the new state, the new outbox entries."""

    series_id: str
    expected: bytes
    blob: bytes
    entries: Sequence[bytes]
    partition: int
    marks: str = "{}"


def connect(cfg: RedisSettings, read_timeout: bool = True) -> Redis:
    """A redis.asyncio client from the settings (password and TLS included): a `RedisCluster` when
    `cfg.is_cluster` (it discovers the nodes from the one in the url and routes each key to its slot).

    `read_timeout=False` leaves reads without redis-py's own timeout: it arms one timer per reply, i.e.
    per series in a pipelined batch (~5 % of the worker's event loop at 1000 series). `Store` bounds each
    round trip with one timer instead; a cancelled read drops its connection, so none is reused mid-reply."""
    kwargs: dict = {"socket_timeout": cfg.socket_timeout_s if read_timeout else None,
                    "socket_connect_timeout": cfg.socket_timeout_s}
    if cfg.username:
        kwargs["username"] = cfg.username
    if cfg.password is not None:
        kwargs["password"] = cfg.password.get_secret_value()
    url = cfg.client_url
    if cfg.tls or url.startswith("rediss://"):
        kwargs["ssl_ca_certs"] = str(cfg.ssl_ca_certs) if cfg.ssl_ca_certs else None
        if url.startswith("redis://"):
            kwargs["ssl"] = True
    if cfg.is_cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, **kwargs)  # type: ignore[return-value]
    client = Redis.from_url(url, **kwargs)
    pool = client.connection_pool  # connections are made on first use, so the class can still change
    if hiredis is not None and hasattr(pool, "connection_class"):
        pool.connection_class = _with_hiredis_packing(pool.connection_class)
    return client


class Store:
    """Per-series state and outbox in Redis. `owner` is '<worker id>#<incarnation>'."""

    def __init__(self, redis: Redis, cfg: RedisSettings, worker_id: str, incarnation: str, claim_ms: int) -> None:
        self.redis = redis
        self.prefix = cfg.key_prefix
        self.ttl_ms = cfg.series_ttl_s * 1000
        self.worker_id = worker_id
        self.owner = f"{worker_id}#{incarnation}"
        self.claim_ms = claim_ms
        self.timeout = cfg.socket_timeout_s  # per round trip (see `connect`)
        from redis.asyncio.cluster import RedisCluster

        # A cluster pipeline cannot load scripts itself: they are loaded on every primary up front (and again
        # after a NOSCRIPT, e.g. a failover to a replica that never saw them) and called by their sha1.
        self.cluster = isinstance(redis, RedisCluster)
        self._scripts_loaded = False
        self._write = redis.register_script(_WRITE)
        self._claim = redis.register_script(_CLAIM_ONLY)
        self._release = redis.register_script(_RELEASE)
        self._write_many = redis.register_script(_WRITE_MANY)
        self._release_many = redis.register_script(_RELEASE_MANY)

    async def _run(self, script: Any, pipe: Any, keys: list[str], args: list[Any]) -> None:
        """Queue a script call on the pipeline."""
        if self.cluster:
            pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
        else:
            await script(keys=keys, args=args, client=pipe)

    async def _execute(self, pipe: Any) -> list:
        """One round trip, bounded by the Redis timeout (see `connect`)."""
        from redis.exceptions import NoScriptError

        async with asyncio.timeout(self.timeout):
            if self.cluster and not self._scripts_loaded:
                for script in (self._write, self._claim, self._release):
                    await self.redis.script_load(script.script)  # every primary
                self._scripts_loaded = True
            try:
                return await pipe.execute()
            except NoScriptError:
                self._scripts_loaded = False  # loaded again when the caller retries the batch
                raise

    def key(self, series_id: str, kind: str) -> str:
        return f"{self.prefix}{{{series_id}}}:{kind}"

    def index_key(self, partition: int) -> str:
        return f"{self.prefix}outbox:{partition}"

    async def load(self, series_ids: Sequence[str]) -> dict[str, Loaded]:
        """States and threshold overrides of many series in one round trip."""
        if not series_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        if not self.cluster:
            for part in _parts(series_ids):
                pipe.execute_command("MGET", *[self.key(sid, kind) for sid in part for kind in ("st", "thr")])
            flat = [v for reply in await self._execute(pipe) for v in reply]
            raw = zip(flat[0::2], flat[1::2], strict=True)
        else:
            for sid in series_ids:
                # one slot: the keys share the hash tag (MGET as a raw command: a cluster pipeline refuses `mget`)
                pipe.execute_command("MGET", self.key(sid, "st"), self.key(sid, "thr"))
            raw = await self._execute(pipe)
        return {sid: Loaded(st, _float_or_none(thr, sid)) for sid, (st, thr) in zip(series_ids, raw, strict=True)}

    async def save(self, writes: Sequence[Write]) -> dict[str, WriteResult]:
        """Compare-and-set every series' state and append its outbox entries, one round trip for all.

        The index entry goes first in the same pipeline so that a crash cannot leave a non-empty outbox
        that no sweep would find."""
        if not writes:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        indexed: dict[int, list[str]] = {}
        for w in writes:
            if w.entries:
                indexed.setdefault(w.partition, []).append(w.series_id)
        for partition, sids in indexed.items():
            pipe.sadd(self.index_key(partition), *sids)
        if not self.cluster:
            for part in _parts(writes):
                keys, args = [], [self.ttl_ms, self.owner, self.worker_id, self.claim_ms]
                for w in part:
                    keys += [self.key(w.series_id, "st"), self.key(w.series_id, "ob"), self.key(w.series_id, "cl")]
                    args += [w.expected, w.blob, w.marks, len(w.entries), *w.entries]
                await self._write_many(keys=keys, args=args, client=pipe)
            raw = [r for reply in (await self._execute(pipe))[len(indexed) :] for r in reply]
            return {w.series_id: _write_result(r) for w, r in zip(writes, raw, strict=True)}
        for w in writes:
            keys = [self.key(w.series_id, "st"), self.key(w.series_id, "ob"), self.key(w.series_id, "cl")]
            args = [
                w.expected,
                w.blob,
                self.ttl_ms,
                self.owner,
                self.worker_id,
                self.claim_ms,
                w.marks,
                *w.entries,
            ]
            await self._run(self._write, pipe, keys, args)
        raw = (await self._execute(pipe))[len(indexed) :]
        return {w.series_id: _write_result(r) for w, r in zip(writes, raw, strict=True)}

    async def claim(self, marks: dict[str, str]) -> dict[str, WriteResult]:
        """Try to claim the outboxes of series (sid -> marks; used by the sweep); same results as `save`."""
        pipe = self.redis.pipeline(transaction=False)
        series_ids = list(marks)
        for sid in series_ids:
            keys = [self.key(sid, "ob"), self.key(sid, "cl")]
            args = [self.owner, self.worker_id, self.claim_ms, marks[sid], self.ttl_ms]
            await self._run(self._claim, pipe, keys, args)
        raw = await self._execute(pipe)
        return {sid: _write_result([1, *r]) for sid, r in zip(series_ids, raw, strict=True)}

    async def release(self, published: dict[str, int]) -> dict[str, int]:
        """Delete the first `count` outbox entries of each series and drop the claim; returns what is left
        (-1 where the claim had been taken over, which leaves the entries to the new holder)."""
        if not published:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        if not self.cluster:
            for part in _parts(list(published)):
                keys = [self.key(sid, kind) for sid in part for kind in ("ob", "cl")]
                await self._release_many(keys=keys, args=[self.owner, *(published[sid] for sid in part)],
                                         client=pipe)
            raw = [r for reply in await self._execute(pipe) for r in reply]
        else:
            for sid, count in published.items():
                await self._run(self._release, pipe, [self.key(sid, "ob"), self.key(sid, "cl")],
                                [self.owner, count])
            raw = await self._execute(pipe)
        return {sid: int(r) for sid, r in zip(published, raw, strict=True)}

    async def indexed(self, partitions: Sequence[int]) -> dict[int, list[str]]:
        """Series that may have an outbox, per telemetry partition."""
        pipe = self.redis.pipeline(transaction=False)
        for p in partitions:
            pipe.smembers(self.index_key(p))
        raw = await self._execute(pipe)
        return {p: sorted(m.decode() for m in members) for p, members in zip(partitions, raw, strict=True)}

    async def unindex(self, partition: int, series_ids: Sequence[str]) -> None:
        await self.unindex_many({partition: series_ids})

    async def unindex_many(self, series_ids: dict[int, Sequence[str]]) -> None:
        """Drop series from the outbox index of their telemetry partitions, one round trip for all."""
        todo = {p: sids for p, sids in series_ids.items() if sids}
        if not todo:
            return
        pipe = self.redis.pipeline(transaction=False)
        for p, sids in todo.items():
            pipe.srem(self.index_key(p), *sids)
        await self._execute(pipe)

    async def set_threshold(self, series_id: str, threshold: float | None) -> None:
        """Operators' per-series override (also settable with redis-cli SET P{sid}:thr 0.7)."""
        async with asyncio.timeout(self.timeout):
            if threshold is None:
                await self.redis.delete(self.key(series_id, "thr"))
            else:
                await self.redis.set(self.key(series_id, "thr"), repr(float(threshold)))


def _parts(items: Sequence[Any]) -> list[Sequence[Any]]:
    """`items` in runs of at most SERIES_PER_COMMAND, one command each."""
    return [items[i : i + SERIES_PER_COMMAND] for i in range(0, len(items), SERIES_PER_COMMAND)]


def _write_result(r: list) -> WriteResult:
    if int(r[0]) == 0:
        return WriteResult(False)
    prev = r[2].decode() if isinstance(r[2], bytes) else None
    return WriteResult(True, int(r[1]), prev, tuple(r[3:]))


def _float_or_none(raw: bytes | None, sid: str) -> float | None:
    if raw is None:
        return None
    try:
        v = float(raw)
    except ValueError:
        log.warning("series %r: ignoring threshold override %r (not a number)", sid, raw[:40])
        return None
    if not 0.0 <= v <= 1.0:
        log.warning("series %r: ignoring threshold override %r (outside [0, 1])", sid, v)
        return None
    return v
