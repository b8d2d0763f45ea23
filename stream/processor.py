"""One batch of telemetry events in -> state and outbox written to Redis, scores / alerts / dead letters out.

The order is what makes a crash at any moment harmless: (1) dead letters are sent, (2) states and
outboxes are written atomically per series (compare-and-set on the point count), (3) claimed outboxes are
published and deleted. Only then are the events committed (the aiokafka consumer) or acknowledged to faust
(the agent stream, `kafka.consumer = "faust"`). A batch interrupted
anywhere is redelivered and re-applied: points already in a state are duplicates by the `ts` rule, and
outbox entries already written are published by whoever holds the claim.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from model.serving import Served
from model.windows import series_phase, series_stagger
from stream import alerts
from stream.errors import CorruptState, InvalidRecord, StateConflict
from stream.metrics import Metrics, observe_many
from stream.publish import ALERT, SCORE, Publisher
from stream.records import (
    DEFAULT_MAX_KEPT_BYTES,
    AlertMessage,
    DeadLetter,
    ScoreMessage,
    Telemetry,
    parse_telemetry,
    to_json,
    top_contributors,
)
from stream.scorer import Scorer
from stream.settings import AlertSettings, ScoringSettings
from stream.state import FinalPoint, SeriesState, Step
from stream.store import Loaded, Store, Write

log = logging.getLogger(__name__)

MAX_CAS_ATTEMPTS = 20


@dataclass(frozen=True)
class RawEvent:
    """A consumed message as the processor needs it (faust's Event reduced to plain data)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None


@dataclass
class _Series:
    """One series' share of a batch."""

    partition: int
    points: list[Telemetry]
    state: SeriesState | None = None
    expected: bytes = b""
    threshold: float = 0.5
    step: Step | None = None
    # Points finalized by a model swap, with the version and model threshold that scored them.
    swapped: tuple[str, float, list[FinalPoint]] | None = None
    # Pushed only once the previous batch has applied its scores (`Processor.settle`); `peeked`: the step the
    # push will give, taken from that batch's state before its scores were in (None: not peeked).
    waiting: bool = False
    peeked: Step | None = None
    peeked_from: SeriesState | None = None


def _values(points: list[Telemetry]) -> np.ndarray:
    return np.array([p.channels for p in points], dtype=np.float64)


def _handed(chained: dict[str, Chained], sid: str) -> tuple[SeriesState, bytes] | None:
    """The state and compare-and-set token an earlier batch handed over for `sid`, if any."""
    c = chained.get(sid)
    return (c.state, c.expected) if c is not None else None


def _fresh(sid: str, served: Served) -> SeriesState:
    """The state of a series not seen before (or whose state was unusable), on the served model."""
    return SeriesState(served.geometry, version=served.bundle.version, threshold=served.bundle.threshold,
                       phase=series_phase(sid, served.geometry.stride), stagger=series_stagger(sid))


class KeptStates:
    """Decoded series states a worker keeps between batches, each beside the bytes it was written as: at
    10,000 series a series comes back to a worker only every few batches, its state is loaded from Redis
    again, and decoding it was about a sixth of the worker's work outside the model.

    `take(sid, blob)` gives the kept state when `blob` (what Redis holds now) is byte for byte the one it
    was encoded to; the state goes on exactly as its decoded copy would (`SeriesState.encode`). Anything
    else (another worker wrote the series since, a write that did not apply) differs in its bytes and is
    decoded. A state is handed out once (`take` and `drop` remove it): no batch may push onto an object the
    cache still holds. At most `size` states, the least recently kept going first; 0 keeps none."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._states: OrderedDict[str, tuple[bytes, SeriesState]] = OrderedDict()
        self.hits = self.misses = 0  # since the last `counted()`

    def __len__(self) -> int:
        return len(self._states)

    def take(self, sid: str, blob: bytes) -> SeriesState | None:
        kept = self._states.pop(sid, None)
        if kept is not None and kept[0] == blob:
            self.hits += 1
            return kept[1]
        self.misses += 1
        return None

    def drop(self, sid: str) -> None:
        self._states.pop(sid, None)

    def keep(self, sid: str, blob: bytes, state: SeriesState) -> None:
        """Keep `state`, which `blob` encodes and which nothing will change unless handed out again."""
        if self.size <= 0:
            return
        self._states[sid] = (blob, state)
        self._states.move_to_end(sid)
        if len(self._states) > self.size:
            self._states.popitem(last=False)

    def counted(self) -> tuple[int, int]:
        """Hits and misses since the last call."""
        out, self.hits, self.misses = (self.hits, self.misses), 0, 0
        return out


@dataclass
class Chained:
    """A series' state as an earlier batch of the pipeline left it in memory, and the compare-and-set token
    that batch's write leaves in Redis: the next batch pushes onto it instead of loading it."""

    state: SeriesState
    expected: bytes


@dataclass
class Staged:
    """One batch on its way through the stages: parsed, loaded, pushed (inference queued), finished, written."""

    events: Sequence[RawEvent]
    groups: dict[str, list[tuple[int, Telemetry]]]
    dead: list[tuple[bytes | None, DeadLetter]]
    served: Served | None = None
    loaded: dict[str, Loaded] = field(default_factory=dict)
    series: dict[str, _Series] = field(default_factory=dict)
    # The queued inference calls: each the series whose windows it scores and how many, in order, and the
    # future `Scored`; and which call's rows each series takes (its latest step's; -1: no windows): `settle`
    # may queue a series' windows again.
    inference: list[tuple[list[tuple[str, int]], asyncio.Future]] = field(default_factory=list)
    rows_from: dict[str, int] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    produced_at: float | None = None  # when `write` handed the outputs to the producer (their Kafka timestamps)


class Processor:
    """Applies batches; Redis holds the series states between batches (the processor keeps decoded copies
    of what it wrote, `KeptStates`, used only while Redis still holds exactly those bytes).

    A batch goes through `parse`, `load`, `start` (push points, queue windows for inference), `finish`
    (scores in, final points and encoded states out) and `write` (state + outbox, publish). `redo` runs
    them one after the other; `stream.pipeline` overlaps one batch's inference with the next one's parse,
    load and push, handing states over in memory (`Chained`): the next batch's windows of the series the two
    share are taken from the states as this batch pushed them (`start`'s `ahead`) and its points pushed once
    this batch has applied its scores (`settle`)."""

    def __init__(
        self,
        store: Store,
        scorer: Scorer,
        publisher: Publisher,
        scoring: ScoringSettings,
        alert_cfg: AlertSettings,
        metrics: Metrics,
        worker_id: str,
        dead_letter_max_bytes: int = DEFAULT_MAX_KEPT_BYTES,
    ) -> None:
        self.store, self.scorer, self.publisher = store, scorer, publisher
        self.scoring, self.alert_cfg = scoring, alert_cfg
        self.metrics, self.worker_id = metrics, worker_id
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.kept = KeptStates(scoring.state_cache)

    async def redo(self, staged: Staged) -> None:
        """Apply a parsed batch from what Redis holds; series that lose the compare-and-set are reloaded and
        redone. Raises only on Redis / broker errors."""
        pending, dead = staged.groups, staged.dead
        for _ in range(MAX_CAS_ATTEMPTS):
            if not pending and not dead:
                break
            attempt = Staged(staged.events, pending, dead)
            dead = []
            await self.load(attempt)
            self.start(attempt, {})
            await self.finish(attempt)
            lost = await self.write(attempt)
            self.metrics.state_conflicts.inc(len(lost))
            pending = {sid: staged.groups[sid] for sid in lost}
        else:
            raise StateConflict(f"{len(pending)} series kept losing the compare-and-set; retrying the batch")
        self.observe_end_to_end(staged.events)

    def observe_in_worker(self, arrived: Sequence[float], produced_at: float | None = None) -> None:
        """Each point's time from its arrival in the worker (`time.time()` stamps) to its outputs handed to the
        producer (`produced_at`; None: now, its batch written)."""
        if arrived:
            end = time.time() if produced_at is None else produced_at
            observe_many(self.metrics.in_worker, np.maximum(0.0, end - np.array(arrived, np.float64)))

    def observe_end_to_end(self, events: Sequence[RawEvent]) -> None:
        now = time.time()
        stamps = [ev.timestamp_ms for ev in events if ev.timestamp_ms]
        if stamps:
            observe_many(self.metrics.end_to_end, np.maximum(0.0, now - np.array(stamps, np.float64) / 1000))

    def parse(self, events: Sequence[RawEvent]) -> Staged:
        """Validate and group by series (in arrival order); invalid messages become dead letters."""
        self.metrics.batch_size.observe(len(events))
        self.metrics.points_in.inc(len(events))
        groups, dead = self._parse(events, self.scorer.served.geometry.channels)
        return Staged(events, groups, dead)

    def _parse(
        self, events: Sequence[RawEvent], channels: int
    ) -> tuple[dict[str, list[tuple[int, Telemetry]]], list[tuple[bytes | None, DeadLetter]]]:
        groups: dict[str, list[tuple[int, Telemetry]]] = {}
        dead = []
        for ev in events:
            try:
                point = parse_telemetry(ev.value, ev.key, channels, self.scoring.max_series_id_length)
            except InvalidRecord as e:
                log.info("dead letter %s[%d]@%d: %s", ev.topic, ev.partition, ev.offset, e.reason)
                dead.append(
                    (
                        ev.key,
                        DeadLetter.of(
                            e,
                            topic=ev.topic,
                            partition=ev.partition,
                            offset=ev.offset,
                            timestamp_ms=ev.timestamp_ms,
                            key=ev.key,
                            value=ev.value,
                            worker=self.worker_id,
                            max_bytes=self.dead_letter_max_bytes,
                        ),
                    )
                )
                continue
            groups.setdefault(point.series_id, []).append((ev.partition, point))
        return groups, dead

    async def load(self, staged: Staged) -> None:
        """Stored states and threshold overrides of the batch's series, one round trip. (A chained series'
        stored state is not used, but its threshold override is: operators may change it at any time.)"""
        if staged.groups:
            staged.loaded = await self.store.load(list(staged.groups))

    def start(self, staged: Staged, chained: dict[str, Chained], ahead: dict[str, SeriesState] | None = None) -> None:
        """Push every series' points onto its state (`chained` ones: the in-memory state an earlier batch
        left) and queue the completed windows for inference in one call, all on one model.

        `ahead`: the states of the batch before this one as it pushed them, its scores perhaps not in yet. The
        points of those series are not pushed now: their windows are peeked (`SeriesState.peek`) and queued
        with the others, and `settle` pushes them once that batch has applied its scores."""
        served = staged.served = self.scorer.served  # one model for the whole batch, even if a swap happens
        queue: list[tuple[str, Step | None]] = []
        for sid, pts in staged.groups.items():
            early = ahead.get(sid) if ahead is not None else None
            if early is not None:
                s = staged.series[sid] = _Series(partition=pts[-1][0], points=[p for _, p in pts], waiting=True)
                if early.version == served.bundle.version and early.geometry == served.geometry:
                    s.peeked, s.peeked_from = early.peek([p.ts for p in s.points], _values(s.points)), early
                    queue.append((sid, s.peeked))
                continue
            s = staged.series[sid] = self._prepare(sid, pts, staged.loaded[sid], served, _handed(chained, sid))
            queue.append((sid, s.step))
        self._submit(staged, queue)

    def settle(self, staged: Staged, chained: dict[str, Chained]) -> None:
        """Push the points `start` left waiting onto the states the previous batch left (`chained`; the stored
        ones for series it did not write), and queue the windows of those whose push differs from its peek
        (a state the previous batch did not write, a model swap in between) or was not peeked."""
        assert staged.served is not None
        queue: list[tuple[str, Step | None]] = []
        for sid, waiting in staged.series.items():
            if not waiting.waiting:
                continue
            hand_over, peeked = _handed(chained, sid), waiting.peeked
            # The state peeked from, as the previous batch left it: its push takes the peek's work (`push`).
            same = peeked is not None and hand_over is not None and hand_over[0] is waiting.peeked_from
            s = staged.series[sid] = self._prepare(sid, staged.groups[sid], staged.loaded[sid], staged.served,
                                                   hand_over, peeked if same else None)
            assert s.step is not None
            if same:
                continue
            if peeked is None or not (np.array_equal(peeked.ends, s.step.ends)
                                      and np.array_equal(peeked.windows, s.step.windows)):
                if peeked is not None:
                    log.debug("series %r: its windows differ from the ones peeked; scoring them again", sid)
                queue.append((sid, s.step))
        self._submit(staged, queue)

    def _submit(self, staged: Staged, steps: Sequence[tuple[str, Step | None]]) -> None:
        """Queue the windows of these series' steps for inference as one call."""
        assert staged.served is not None
        scored = [(sid, st) for sid, st in steps if st is not None and len(st.windows)]
        for sid, st in steps:
            staged.rows_from[sid] = len(staged.inference) if st is not None and len(st.windows) else -1
        if scored:
            windows = np.concatenate([st.windows for _, st in scored])
            self.metrics.windows_per_batch.observe(len(windows))
            staged.inference.append(([(sid, len(st.windows)) for sid, st in scored],
                                     self.scorer.submit(windows, staged.served.bundle)))

    async def finish(self, staged: Staged) -> dict[str, Chained]:
        """Scores in -> final points, outbox entries and encoded states (`staged.writes`). Returns the series
        states as the next batch may chain them (those that this batch writes)."""
        assert staged.served is not None
        bundle = staged.served.bundle
        none = np.empty((0, staged.served.geometry.window))
        # each series' rows of the scores (and contributions) of the call that scored its windows
        rows: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for i, (sids, call) in enumerate(staged.inference):
            scored = await call
            self.metrics.inference_latency.observe(scored.seconds)
            if scored.failed:
                for reason, n in scored.failed.items():
                    self.metrics.windows_failed.labels(reason).inc(n)
                log.error("model %s could not score %s of %d windows; their points go without them (first "
                          "error: %s)", bundle.version, scored.failed, len(scored.scores), scored.error or "none")
            pos = 0
            for sid, k in sids:
                if staged.rows_from[sid] == i:
                    rows[sid] = (scored.scores[pos : pos + k],
                                 None if scored.contrib is None else scored.contrib[pos : pos + k])
                pos += k
        chained = {}
        for sid, s in staged.series.items():
            if s.step is None or s.state is None or s.step.accepted == 0:
                continue
            scores, contrib = rows.get(sid, (none, None))
            entries = self._finalize(sid, s, scores, bundle.version, staged.loaded[sid].threshold, contrib)
            blob = s.state.encode()
            staged.writes.append(Write(sid, s.expected, blob, entries, s.partition, self.publisher.marks(sid)))
            chained[sid] = Chained(s.state, blob[:8])
            # Kept for a later batch that loads this series from Redis; the next batch, which may push onto it
            # in memory (`chained`), drops it first.
            self.kept.keep(sid, blob, s.state)
        hits, misses = self.kept.counted()
        if hits:
            self.metrics.state_cache.labels("hit").inc(hits)
        if misses:
            self.metrics.state_cache.labels("miss").inc(misses)
        return chained

    async def write(self, staged: Staged) -> list[str]:
        """Dead letters, then every series' state and outbox (compare-and-set), then the claimed outboxes
        published. Returns the series that lost the compare-and-set (their writes did not apply)."""
        if staged.dead:
            await self.publisher.dead_letters(staged.dead)
        writes = staged.writes
        if not writes:
            return []
        results = await self.store.save(writes)
        lost = [sid for sid, r in results.items() if not r.written]
        scored = sum(self._count(w.entries) for w in writes if results[w.series_id].written)
        if scored:
            self.metrics.points_scored.inc(scored)
        staged.produced_at = time.time()
        await self.publisher.publish(
            {sid: r for sid, r in results.items() if r.written},
            {sid: staged.series[sid].partition for sid in results},
        )
        return lost

    def _count(self, entries: Sequence[bytes]) -> int:
        """Alerts of a written series counted (once, even when a lost compare-and-set redid the batch); returns
        its scores, which the caller counts for the whole batch."""
        scores = 0
        for e in entries:
            if e[:1] == SCORE:
                scores += 1
            else:
                self.metrics.alerts.labels("open" if b'"state":"open"' in e else "closed").inc()
        return scores

    def _prepare(self, sid: str, pts: list[tuple[int, Telemetry]], loaded: Loaded, served: Served,
                 chained: tuple[SeriesState, bytes] | None = None, peeked: Step | None = None) -> _Series:
        s = _Series(partition=pts[-1][0], points=[p for _, p in pts])
        if chained is not None:
            s.state, s.expected = chained
            self.kept.drop(sid)  # the object this batch now changes
        else:
            s.expected = loaded.blob[:8] if loaded.blob else b""
            s.state = self._decode(sid, loaded.blob, served)
        s.threshold = self._threshold(sid, loaded.threshold, served.bundle.threshold)
        ts, values = [p.ts for p in s.points], _values(s.points)
        try:
            self._push(sid, s, served, ts, values, peeked)
        except Exception as e:  # noqa: BLE001 - a stored state that decodes but cannot be used
            if chained is not None:
                raise  # this process's own state from the previous batch: a bug, not bad data
            # One series' unusable state must not stop the partition (the batch would fail on every
            # redelivery): start the series anew, as for an undecodable one, and count it.
            log.error("series %r: stored state unusable (%s: %s); starting it anew", sid, type(e).__name__, e)
            self.metrics.states_reset.labels("unusable").inc()
            s.state, s.swapped = _fresh(sid, served), None
            self._push(sid, s, served, ts, values)
        assert s.step is not None
        self.metrics.points_accepted.inc(s.step.accepted)
        if s.step.duplicates:
            self.metrics.late_or_duplicate.inc(s.step.duplicates)
        return s

    def _push(self, sid: str, s: _Series, served: Served, ts: list[int], values: np.ndarray,
              peeked: Step | None = None) -> None:
        """Move the state onto the served model if it is on another one, then push the batch's points."""
        assert s.state is not None
        version, g = served.bundle.version, served.geometry
        if s.state.version != version or s.state.geometry != g:
            old = (s.state.version, s.state.threshold)
            s.swapped = (*old, s.state.swap(g, version, served.bundle.threshold))
            log.info("series %r moves from model %s to %s (%d pending points finalized under the old one)",
                     sid, old[0], version, len(s.swapped[2]))
        s.step = s.state.push(ts, values, peeked)

    def _decode(self, sid: str, blob: bytes | None, served: Served) -> SeriesState:
        if blob is None:
            self.kept.drop(sid)
            return _fresh(sid, served)
        state = self.kept.take(sid, blob)
        if state is None:
            try:
                state = SeriesState.decode(blob)
            except CorruptState as e:
                # Starting the series anew loses only its pending points; refusing would stop it for good.
                log.error("series %r: %s; starting it anew", sid, e)
                self.metrics.states_reset.labels("undecodable").inc()
                return _fresh(sid, served)
            state.stagger = series_stagger(sid)  # the phase of its next era (a swap's)
        if state.geometry.channels != served.geometry.channels:
            log.error("series %r: state has %d channels, the model %d; starting it anew",
                      sid, state.geometry.channels, served.geometry.channels)
            self.metrics.states_reset.labels("channels").inc()
            return _fresh(sid, served)
        return state

    def _threshold(self, sid: str, redis_override: float | None, bundle_thr: float) -> float:
        """Redis key > per-series setting > global setting > the bundle's calibrated threshold."""
        for t in (redis_override, self.scoring.thresholds.get(sid), self.scoring.threshold):
            if t is not None:
                return t
        return bundle_thr

    def _finalize(self, sid: str, s: _Series, scores: np.ndarray, version: str,
                  redis_threshold: float | None, contrib: np.ndarray | None = None) -> list[bytes]:
        """Score and alert messages: first the points a swap finalized (old version), then this batch's."""
        assert s.state is not None and s.step is not None
        entries = []
        if s.swapped is not None:
            old_version, old_model_threshold, old_finals = s.swapped
            old_threshold = self._threshold(sid, redis_threshold, old_model_threshold)
            entries += self._messages(sid, s, old_finals, old_version, old_threshold)
        if s.state.geometry.channels == 1 or not self.scoring.top_contributors:
            contrib = None  # a single channel has all of its score: the message stays as it is
        return entries + self._messages(sid, s, s.state.apply(s.step, scores, contrib), version, s.threshold)

    def _messages(self, sid: str, s: _Series, finals: list[FinalPoint], version: str,
                  threshold: float) -> list[bytes]:
        assert s.state is not None
        policy = alerts.AlertPolicy(
            threshold, self.alert_cfg.min_points, self.alert_cfg.cooldown_points, self.alert_cfg.close_ratio
        )
        entries = []
        single = s.state.geometry.channels == 1
        for p in finals:
            if p.n_windows == 0:  # every window over this point failed in the model: nothing to publish
                self.metrics.points_unscored.inc()
                log.debug("series %r: point ts=%d not scored (the model failed on its windows)", sid, p.ts)
                continue
            msg = ScoreMessage(
                series_id=sid,
                ts=p.ts,
                value=p.values[0] if single else None,
                values=None if single else list(p.values),
                score=p.score,
                n_windows=p.n_windows,
                is_anomaly=p.score >= threshold,
                threshold=threshold,
                model_version=version,
                raw_score=p.raw_score,
                contrib=None if p.contrib is None else top_contributors(p.contrib, self.scoring.top_contributors),
            )
            entries.append(SCORE + to_json(msg))
            if not self.alert_cfg.enabled:
                continue
            ev = alerts.update(s.state.alert, policy, p.ts, p.score)
            if ev is not None:
                entries.append(
                    ALERT
                    + to_json(
                        AlertMessage(
                            series_id=sid,
                            alert_id=f"{sid}:{ev.opened_ts}",
                            state=ev.state,
                            opened_ts=ev.opened_ts,
                            peak_ts=ev.peak_ts,
                            peak_score=ev.peak_score,
                            threshold=threshold,
                            closed_ts=ev.closed_ts,
                            model_version=version,
                        )
                    )
                )
        return entries
