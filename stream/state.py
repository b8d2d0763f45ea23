"""The per-series core, pure: points in -> windows to score; window scores in -> final points out.

Follows `model.windows` exactly, so a stream of points gives the scores that `aggregate()` computes
offline: windows end at `W-1 + k*stride` (at a stride above 1 the first at W-1 and the others at
`W-1 + phase + k*stride`, the phase taken from the series id by the worker, `SeriesState.phase`, so that a
fleet's series do not all complete their windows on the same point); window k's scores go to the offsets
`included_offsets(W, lag, first=(k == 0))`; point i is final once point `max(i + lag, W-1)` has arrived,
i.e. the final points are all i < n - lag once n >= W (none before the first window fills).

Kept per series: the last W points the windows are cut from (the raw values, or the model inputs with
point-by-point normalization), the point count n, the last accepted ts, the ts, raw values, score sums and
window counts of the points not yet final (at most max(lag, W-1) of them), the alert state, and the
model version (with its threshold) whose window scores the pending sums hold, and, when the model is
served calibrated (`Geometry.calibrated`), the series' tail sketch (`model.surprise`, 264 bytes): each
point's raw score (the mean of its window scores) becomes its surprise against the series' own past raw
scores as the point is finalized, in order, exactly as `Geometry.calibrate` does offline; a swap starts the
sketch anew. With shape novelty (`Geometry.novel`, `model.novelty`) the state also keeps the last
`history - 1` model inputs as float16, a second sketch for the novelty, and each pending point's novelty
surprise (computed on arrival, in order); a final point serves the larger of its two surprises, as
`Geometry.calibrate` does offline; a swap starts them anew too. `encode()`/`decode()` give a compact
binary form for Redis whose first 8 bytes are n (big-endian), the compare-and-set token.

Model swaps: pending sums are never mixed across versions. `swap()` finalizes the pending points that
have at least one window score, with the old version's partial average (n_windows tells how many
windows), then starts a new "era" for the new geometry: the buffered points are kept, and the era's
first window ends at `era_end = max(base + W' - 1, n)`, playing the role that the first full window
(W-1) plays for a new series. Offline parity holds within an era.

Point-by-point normalization (`Geometry.pointwise`, a bundle whose normalizer runs point by point): the
state also keeps the normalizer's running statistics (`model.normalize.RunningStats`) and, beside the raw
buffer, the model inputs (float32, `Geometry.input_channels` wide, what ONNX Runtime receives); windows are
cut from those, and the raw values are kept only for the pending points (a final point's message carries its
value; nothing else reads them). Each accepted point is turned into inputs once, on arrival, by `Geometry.standardize`,
exactly as `Normalizer.prepare_series` does offline; what the inputs mean (and which extra input features
the normalizer adds) is the normalizer's business. A swap to such a model from one without it starts the
statistics from the buffered points; a swap between two of them whose input width differs carries the
statistics over (`Geometry.carry`). A swap from such a model to one without it has no raw window to cut
from: the new era's first window ends W' - 1 points after the oldest pending point, as for a new series.

What Redis holds (format 9: format 8 and, at a stride above 1, the windows' phase), for the shipped
single-channel bundle at window 64 and lag 0: the model inputs (64 x 2, 3 bytes each: 384 bytes), the
calibration sketch (16 bytes and 4 per bin its scores visited: 272 at most), the header, the running statistics
and the model version (146), and no ts or raw value at all (nothing is pending between batches at lag 0):
586-758 bytes at the end of the NAB dev files, against 960 in format 7 (float32 inputs, every bin of the
sketch, a longer header) and 1,732 in format 6, which kept every buffered point's ts (u32 deltas) and float64
raw value besides its inputs.
The inputs lose nothing in 3 bytes: `RunningStats.standardize` puts every standardized value on the
`model.normalize.INPUT_STEP` grid (2**-18, offline too): within +-SERIES_CLIP, 24-bit integers times the step,
exact in float32.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from model.normalize import INPUT_STEP, SERIES_CLIP, RunningStats
from model.novelty import as_history, lowered
from model.serving import Geometry
from model.surprise import SIZE as SKETCH_SIZE
from model.surprise import TailSketch, calibrate_series, calibrate_values
from model.windows import ends_after, finalizing_windows, included_offsets
from stream.alerts import AlertState
from stream.errors import CorruptState

FORMAT = 9
# format 9 adds the phase of the era's windows (`SeriesState.phase`, only when not 0: _FLAG_PHASE, _PHASE);
# format 8 keeps the model inputs as 24-bit multiples of INPUT_STEP and the sketches' visited bins only (their
# float32 values are format 7's), and a shorter header (_BODY);
# format 7 keeps ts only for the pending points, and raw values only for them when the geometry is pointwise;
# format 2 (before point-by-point normalization) is read as halflife 0, format 3 (before deviation channels)
# as deviation_halflife 0, format 4 (before per-series calibration) as uncalibrated, format 5 (before shape
# novelty) as without novelty
_READS = (2, 3, 4, 5, 6, 7, 8, 9)
_HEAD = struct.Struct(">Q")  # n: also the compare-and-set token, so it comes first
# format, flags, W, stride, lag, C, buffered, pending, last_ts, era_end, alert run/start/peak_ts/peak,
# model threshold, version length (the version's UTF-8 bytes follow)
_BODY2 = struct.Struct("<BBHHHHHHqqIqqddB")
# format 3 appends: halflife, running-statistics count
_BODY3 = struct.Struct("<BBHHHHHHqqIqqddBdQ")
# format 4 appends: deviation half-life
_BODY4 = struct.Struct("<BBHHHHHHqqIqqddBdQd")
# format 5 appends: the per-series calibration's half-life and minimum history (its sketch follows the counts)
_BODY5 = struct.Struct("<BBHHHHHHqqIqqddBdQddI")
# format 6 appends: the novelty's length, history, kept points and rarity (its sketch, history and pending
# surprises follow the calibration sketch); format 7 has the same fields ("buffered": the window source's rows)
_BODY7 = struct.Struct("<BBHHHHHHqqIqqddBdQddIHHHd")
# format 8: format 7's fields less the alert's start, peak ts and peak, which follow (_ALERT) only while an alert
# is open or a run of hot points is under way, and less the novelty's, which follow (_NOVEL) only with novelty
_BODY = struct.Struct("<BBHHHHHHqqIdBdQddI")
_ALERT = struct.Struct("<qqd")
_NOVEL = struct.Struct("<HHHd")
_PHASE = struct.Struct("<H")
_FLAG_OPEN = 1
_FLAG_TS_DELTA32 = 2
_FLAG_HAS_TS = 4
_FLAG_SKETCH = 8
_FLAG_NOVELTY = 16
_FLAG_ALERT = 32
_FLAG_PHASE = 64


@dataclass
class Step:
    """The windows one `push` produced, awaiting their scores. `ends` are point indices."""

    ends: np.ndarray
    windows: np.ndarray  # (K, W, C)
    accepted: int
    duplicates: int
    # From `peek`: what the push will do (the accepted points' last ts, ts, values, model inputs and the running
    # statistics after them), and the state it was peeked from, as `_basis` tells it apart.
    plan: tuple[int | None, np.ndarray, np.ndarray, np.ndarray | None, RunningStats | None] | None = None
    basis: tuple | None = None


@dataclass(frozen=True)
class FinalPoint:
    """A point whose score will not change any more."""

    index: int
    ts: int
    values: tuple[float, ...]
    score: float  # what is served: the raw score, or its per-series surprise when the model is calibrated
    n_windows: int
    raw_score: float | None = None  # the mean window score, when `score` is its calibration
    # Each channel's share of the score, from the window that finalized the point (`finalizing_windows`),
    # when the graph gives contributions and that window is in the batch.
    contrib: tuple[float, ...] | None = None


def _with_contrib(finals: list[FinalPoint], ends: np.ndarray, contrib: np.ndarray, window: int,
                  lag: int) -> list[FinalPoint]:
    rows = finalizing_windows(ends, window, lag, np.array([p.index for p in finals]))
    out = []
    for p, k in zip(finals, rows, strict=True):
        row = contrib[k, p.index - (int(ends[k]) - window + 1)] if k >= 0 else None
        ok = row is not None and bool(np.isfinite(row).all())
        out.append(replace(p, contrib=tuple(float(x) for x in row) if ok else None))  # type: ignore[union-attr]
    return out


def token(n: int) -> bytes:
    """The compare-and-set token stored at the head of an encoded state with point count n."""
    return _HEAD.pack(n)


@dataclass
class SeriesState:
    """Rolling buffer plus pending scores of one series. `push` then `apply`, then `encode`."""

    geometry: Geometry
    n: int = 0
    last_ts: int | None = None
    ts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # of the pending points (as `sums`)
    # (k, C) float64 raw values of the last k points: k = min(n, W) between steps, or, when the geometry is
    # pointwise (windows are cut from `inputs`), only the pending points
    values: np.ndarray | None = None
    sums: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
    counts: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    alert: AlertState = field(default_factory=AlertState)
    version: str = ""  # the model version whose scores `sums` hold
    threshold: float = 0.5  # that model's own threshold (overrides are applied by the caller)
    era_end: int = -1  # index where the current era's first window ends; -1: W-1 (a new series)
    stats: RunningStats | None = None  # pointwise geometry only
    inputs: np.ndarray | None = None  # (k, input_channels) float32 standardized `values`; pointwise only
    sketch: TailSketch | None = None  # the per-series calibration's history; calibrated geometry only
    shape: np.ndarray | None = None  # (h, C) float16 last model inputs, h < novelty history; novel only
    shape_sketch: TailSketch | None = None  # the novelty's own calibration; novel geometry only
    novelty: np.ndarray | None = None  # (pending,) novelty surprise of each pending point; novel only
    # Where the era's windows fall after its first, at a stride above 1: `ends_after`'s phase (0: every stride
    # points from the first). A new series and a swap take it from `stagger`; kept (format 9) until the next swap.
    phase: int = 0
    # A number of the series' id (`model.windows.series_stagger`) whose remainder by the stride is the phase of its
    # next era; set by the worker for each state it serves (derived from the id, not stored)
    stagger: int = field(default=0, compare=False)
    _open_step: bool = False
    _catch_up: int | None = None  # set by swap(): the next push also yields era windows ending before n
    # `inputs` as `encode` packs them (`_pack_inputs`), and the array they pack: kept up to date by `push` and
    # `_trim` (a row packed once, not at every encode); anything else that sets `inputs` leaves it stale
    _packed: tuple[np.ndarray, bytes] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.values is None:
            self.values = np.empty((0, self.geometry.channels), np.float64)
        if self.era_end < 0:
            self.era_end = self.geometry.window - 1
        if self.geometry.pointwise and self.stats is None:
            self._restart_stats()
        if self.sketch is None:
            self.sketch = self.geometry.new_sketch()
        if self.geometry.novel and self.shape is None:
            self._restart_novelty()

    def _restart_novelty(self) -> None:
        """No shape seen yet: the pending points have no novelty (NaN: served on their model surprise alone, as a
        series' first points are)."""
        g = self.geometry
        self.shape = np.empty((0, g.channels), np.float16)
        self.shape_sketch = g.new_sketch()
        self.novelty = np.full(len(self.sums), np.nan)

    def _restart_stats(self) -> None:
        """Running statistics from the buffered points on (a new series: from its first point)."""
        assert self.values is not None
        g = self.geometry
        self.stats = g.new_stats()
        self.inputs = g.standardize(self.stats, self.values)

    @property
    def first_pending(self) -> int:
        """Index of the oldest point not yet final."""
        return self.n - len(self.sums)

    @property
    def base(self) -> int:
        """Index of the oldest point the windows can be cut from."""
        return self.n - len(self._source)

    @property
    def _source(self) -> np.ndarray:
        """What windows are cut from: the model inputs (pointwise geometry) or the raw values."""
        assert self.values is not None
        return self.inputs if self.inputs is not None else self.values

    def _accepted(self, ts: Sequence[int], values: np.ndarray) -> tuple[int | None, np.ndarray, np.ndarray]:
        """The last ts, the ts and the values (m, C) of the points `push` accepts."""
        keep, last = [], self.last_ts
        for j, t in enumerate(ts):
            if last is None or t > last:
                keep.append(j)
                last = int(t)
        vals = np.asarray(values, dtype=np.float64).reshape(len(ts), self.geometry.channels)
        kept_ts = np.asarray(ts, dtype=np.int64)
        if len(keep) < len(ts):
            vals, kept_ts = vals[keep], kept_ts[keep]
        return last, kept_ts, vals

    def _first_end(self) -> int:
        """Where the next windows may end: after a swap, the new era's windows that end at points already
        buffered are due with the next points as well."""
        return min(self.n, self._catch_up if self._catch_up is not None else self.n)

    def _basis(self) -> tuple:
        """What the windows of the next points depend on, besides the window source's last rows (which only a
        push or a swap changes, and either changes this too)."""
        stats = self.stats
        return (self.n, self.last_ts, self.era_end, self.phase, self._catch_up, self.geometry,
                None if stats is None else (stats.count, stats.mean.tobytes(), stats.var.tobytes()))

    def push(self, ts: Sequence[int], values: np.ndarray, peeked: Step | None = None) -> Step:
        """Append points (ts strictly increasing after the last accepted; others are counted and dropped).
        Returns the windows that became complete, oldest first. `peeked`: this state's `peek` of the same points,
        taken before the open step was applied; its work is reused when nothing the windows depend on changed
        since (else it is done again)."""
        if self._open_step:
            raise RuntimeError("push() called again before apply()")
        g = self.geometry
        reuse = peeked is not None and peeked.plan is not None and peeked.basis == self._basis()
        if reuse:
            assert peeked is not None and peeked.plan is not None
            last, kept_ts, vals, z, stats = peeked.plan
        else:
            last, kept_ts, vals = self._accepted(ts, values)
            z, stats = None, None
            if self.stats is not None and len(kept_ts):
                stats = self.stats
                z = g.standardize(stats, vals)
        m = len(kept_ts)
        if m == 0:
            return Step(np.empty(0, np.int64), np.empty((0, g.window, g.input_channels)), 0, len(ts))
        n_old = self.n
        start, self._catch_up = self._first_end(), None
        self.ts = np.concatenate([self.ts, kept_ts])
        self.values = np.concatenate([self.values, vals])
        if stats is not None and z is not None and self.inputs is not None:
            self.stats = stats
            inputs = np.concatenate([self.inputs, z])
            if self._packed is not None and self._packed[0] is self.inputs:
                self._packed = (inputs, self._packed[1] + _pack_inputs(z))
            self.inputs = inputs
            if g.novel:
                self._push_novelty(z)
        self.sums = np.concatenate([self.sums, np.zeros(m)])
        self.counts = np.concatenate([self.counts, np.zeros(m, np.int64)])
        self.n, self.last_ts = n_old + m, last
        self._open_step = True
        if reuse:
            assert peeked is not None
            return Step(peeked.ends, peeked.windows, m, len(ts) - m)
        ends = ends_after(self.era_end, start, self.n, g.stride, self.phase)
        return Step(ends, self._windows(ends), m, len(ts) - m)

    def peek(self, ts: Sequence[int], values: np.ndarray) -> Step:
        """The step `push(ts, values)` will give once this state's open step is applied, without changing the state:
        the windows depend on the points and the window source alone, which `apply` does not change. So the
        pipeline can queue a batch's windows before the previous batch's scores are in, and hand the step to
        that push, which then does not do its work again."""
        g = self.geometry
        last, kept_ts, vals = self._accepted(ts, values)
        m = len(kept_ts)
        if m == 0:
            return Step(np.empty(0, np.int64), np.empty((0, g.window, g.input_channels)), 0, len(ts))
        z = stats = None
        if self.stats is not None and self.inputs is not None:
            stats = RunningStats(self.stats.count, self.stats.mean.copy(), self.stats.var.copy())
            z = g.standardize(stats, vals)
            source = np.concatenate([self.inputs, z])
        else:
            assert self.values is not None
            source = np.concatenate([self.values, vals])
        n = self.n + m
        ends = ends_after(self.era_end, self._first_end(), n, g.stride, self.phase)
        return Step(ends, _cut(source, n - len(source), ends, g.window), m, len(ts) - m,
                    (last, kept_ts, vals, z, stats), self._basis())

    def _push_novelty(self, inputs: np.ndarray) -> None:
        """Each new point's shape novelty against the kept history, as a surprise of the series' own."""
        assert self.shape is not None and self.novelty is not None
        g = self.geometry
        history = np.concatenate([self.shape, as_history(inputs, g.channels)])
        surprise = calibrate_series(g.novelty(history, start=len(self.shape)), self.shape_sketch)
        self.novelty = np.concatenate([self.novelty, surprise])
        self.shape = history[max(0, len(history) - (g.novelty_history - 1)) :]

    def _windows(self, ends: np.ndarray) -> np.ndarray:
        return _cut(self._source, self.base, ends, self.geometry.window)

    def apply(self, step: Step, scores: np.ndarray, contrib: np.ndarray | None = None) -> list[FinalPoint]:
        """Add the step's window scores (K, W) to the pending points; return the points now final. A row
        that is not all finite is a window the model failed on: it adds to no point, and a point that no
        window scored is final with `n_windows` 0. `contrib` (K, W, C), the graph's per-channel contributions,
        gives each final point those of the window that finalized it (kept nowhere: no state)."""
        if not self._open_step and step.accepted:
            raise RuntimeError("apply() without a matching push()")
        g = self.geometry
        if len(scores) != len(step.ends):
            raise ValueError(f"{len(scores)} window scores for {len(step.ends)} windows")
        p0 = self.first_pending
        scored = np.isfinite(scores).all(axis=1) if len(scores) else np.empty(0, bool)
        for k, e in enumerate(step.ends):
            if not scored[k]:
                continue  # a window the model could not score (`stream.scorer`): its points go without it
            sl = included_offsets(g.window, g.lag, first=(e == self.era_end))
            lo = int(e) - g.window + 1 + sl.start - p0
            hi = int(e) - g.window + 1 + sl.stop - p0
            if lo < 0:
                # Only after a swap: the window also covers points the swap finalized; they keep their score.
                sl, lo = slice(sl.start - lo, sl.stop), 0
            self.sums[lo:hi] += scores[k, sl]
            self.counts[lo:hi] += 1
        finals = self._finalize(p0)
        self._open_step = False
        if contrib is not None and finals and len(step.ends):
            finals = _with_contrib(finals, step.ends[scored], contrib[scored], g.window, g.lag)
        return finals

    def _finalize(self, p0: int) -> list[FinalPoint]:
        g = self.geometry
        n_final = self.n - g.lag if self.n > self.era_end else p0
        return self._emit(p0, n_final)

    def _emit(self, p0: int, n_final: int) -> list[FinalPoint]:
        """Finalize the pending points p0..n_final-1 and trim the buffer to the last W points."""
        g = self.geometry
        out: list[FinalPoint] = []
        m = max(n_final - p0, 0)
        if m == 0:
            self._trim()
            return out
        # In plain floats: a point or a few at a time, numpy's overhead would cost more than the work.
        counts = self.counts[:m].tolist()
        raw = [x / c if c > 0 else math.nan for x, c in zip(self.sums[:m].tolist(), counts, strict=True)]
        served = calibrate_values(raw, self.sketch)  # the raw scores themselves when uncalibrated
        if self.novelty is not None:
            served = np.fmax(served, lowered(self.novelty[:m], g.novelty_rarity)).tolist()
        calibrated = self.sketch is not None
        vbase = self.n - len(self.values)
        values = self.values[p0 - vbase : n_final - vbase].tolist()
        for j, (t, c, v, sv, r) in enumerate(zip(self.ts[:m].tolist(), counts, values, served, raw, strict=True)):
            out.append(FinalPoint(p0 + j, t, tuple(v), sv if c else 0.0, c, r if calibrated and c else None))
        self.sums, self.counts, self.ts = self.sums[m:], self.counts[m:], self.ts[m:]
        if self.novelty is not None:
            self.novelty = self.novelty[m:]
        self._trim()
        return out

    def _trim(self) -> None:
        """Keep the last W rows of the window source, and raw values only as long as anything reads them."""
        assert self.values is not None
        w = self.geometry.window
        if self.inputs is None:
            self.values = self.values[max(len(self.values) - w, 0) :]
            return
        drop = max(len(self.inputs) - w, 0)
        if drop:
            inputs = self.inputs[drop:]
            if self._packed is not None and self._packed[0] is self.inputs:
                self._packed = (inputs, self._packed[1][3 * drop * self.inputs.shape[1] :])
            self.inputs = inputs
        self._drop_final_values()

    def _drop_final_values(self) -> None:
        """Windows cut from the model inputs: only the pending points' messages read their raw values."""
        assert self.values is not None
        self.values = self.values[max(len(self.values) - len(self.sums), 0) :]

    def swap(self, geometry: Geometry, version: str, threshold: float) -> list[FinalPoint]:
        """Move to another model. Returns the pending points finalized under the old one (to be published
        with the old version); points that no window has covered yet stay pending for the new model."""
        if self._open_step:
            raise RuntimeError("swap() between push() and apply()")
        if geometry.channels != self.geometry.channels:
            raise ValueError(f"channel count changes from {self.geometry.channels} to {geometry.channels}")
        p0 = self.first_pending
        covered = np.flatnonzero(self.counts > 0)
        # Pending points without a window are the newest ones (or all, before the first window).
        n_final = p0 + int(covered[-1]) + 1 if len(covered) else p0
        finals = self._emit(p0, n_final)
        old = self.geometry
        self.geometry, self.version, self.threshold = geometry, version, threshold
        # The sketch learnt the old model's raw scores, which another model's need not resemble: it starts anew
        # (a calibrated series reports surprise 0 for its first min_history points under the new model).
        self.sketch = geometry.new_sketch()
        if not geometry.pointwise:
            self.stats = self.inputs = None
        elif not old.pointwise:
            self._restart_stats()
        elif old.input_channels != geometry.input_channels:
            assert self.stats is not None and self.inputs is not None
            self.stats, self.inputs = geometry.carry(self.stats, self.inputs)
        # pointwise to pointwise: the statistics go on (new half-lives apply from the next point)
        # The era's first window lies in the buffer and covers the oldest point still pending (it then
        # counts for all of its points, as a new series' first window does). The buffer: the last min(n, W_old)
        # points, or only the pending ones when a pointwise model's raw values were not kept.
        base = self.base
        self.era_end = max(base + geometry.window - 1, self.first_pending)
        self.phase = self.stagger % geometry.stride
        self._catch_up = self.era_end if self.era_end < self.n else None
        self.sums, self.counts = np.zeros(len(self.sums)), np.zeros(len(self.counts), np.int64)
        # The novelty starts anew with the calibration (offline parity holds within an era).
        self.shape = self.shape_sketch = self.novelty = None
        if geometry.novel:
            self._restart_novelty()
        if self.inputs is not None:  # the raw window was needed for the new statistics only
            self._drop_final_values()
        return finals

    def encode(self) -> bytes:
        """Compact bytes: header, the pending points' ts (u32 deltas when they fit), float64 raw values, the
        model inputs (24-bit, `_pack_inputs`) and statistics of a pointwise geometry, float64 sums and u16
        counts, sketches (their visited bins). What is stored at a lower precision than it is held (the
        sketches' counts, the novelty) is rounded in this state too, so that the state goes on exactly as
        `decode` of the bytes would: a worker may keep it in memory instead of decoding it again."""
        if self._open_step:
            raise RuntimeError("encode() between push() and apply()")
        assert self.values is not None and len(self.ts) == len(self.sums)
        g, a = self.geometry, self.alert
        version = self.version.encode()[:255]
        flags = (_FLAG_OPEN if a.is_open else 0) | (_FLAG_HAS_TS if self.last_ts is not None else 0)
        sketch_bytes = b""
        if self.sketch is not None:
            flags |= _FLAG_SKETCH
            sketch_bytes = self.sketch.encode_sparse()
        novelty_bytes, kept = b"", 0
        if self.shape is not None and self.shape_sketch is not None and self.novelty is not None:
            flags |= _FLAG_NOVELTY
            kept = len(self.shape)
            novelty = self.novelty.astype("<f4")
            self.novelty = novelty.astype(np.float64)  # as `decode` reads it back
            novelty_bytes = b"".join([self.shape_sketch.encode_sparse(), self.shape.astype("<f2").tobytes(),
                                      novelty.tobytes()])
        stats_bytes = b""
        if self.stats is not None and self.inputs is not None:
            if self._packed is None or self._packed[0] is not self.inputs:
                self._packed = (self.inputs, _pack_inputs(self.inputs))
            stats_bytes = b"".join([self.stats.mean.astype("<f8").tobytes(), self.stats.var.astype("<f8").tobytes(),
                                    self._packed[1]])
        ts_bytes = b""
        if 0 < len(self.ts) <= 8:  # a few pending points (the usual case): plain ints cost less than numpy
            ts = self.ts.tolist()
            deltas = [b - a for a, b in zip(ts[:-1], ts[1:], strict=True)]
            if not deltas or 0 <= min(deltas) and max(deltas) < 2**32:
                flags |= _FLAG_TS_DELTA32
                ts_bytes = struct.pack(f"<q{len(deltas)}I", ts[0], *deltas)
            else:
                ts_bytes = struct.pack(f"<{len(ts)}q", *ts)
        elif len(self.ts):
            deltas = np.diff(self.ts)
            if 0 <= int(deltas.min()) and int(deltas.max()) < 2**32:
                flags |= _FLAG_TS_DELTA32
                ts_bytes = struct.pack("<q", int(self.ts[0])) + deltas.astype("<u4").tobytes()
            else:
                ts_bytes = self.ts.astype("<i8").tobytes()
        alert_bytes = b""
        if a.is_open or a.run:
            flags |= _FLAG_ALERT
            alert_bytes = _ALERT.pack(a.start_ts, a.peak_ts, a.peak_score)
        novel_bytes = b""
        if flags & _FLAG_NOVELTY:
            novel_bytes = _NOVEL.pack(g.novelty_length, g.novelty_history, kept, g.novelty_rarity)
        phase_bytes = b""
        if self.phase:
            flags |= _FLAG_PHASE
            phase_bytes = _PHASE.pack(self.phase)
        body = _BODY.pack(
            FORMAT,
            flags,
            g.window,
            g.stride,
            g.lag,
            g.channels,
            len(self._source),
            len(self.sums),
            self.last_ts or 0,
            self.era_end,
            a.run,
            self.threshold,
            len(version),
            g.halflife,
            self.stats.count if self.stats is not None else 0,
            g.deviation_halflife,
            g.surprise_halflife,
            g.surprise_min_history,
        )
        return b"".join(
            [
                token(self.n),
                body,
                alert_bytes,
                novel_bytes,
                phase_bytes,
                version,
                ts_bytes,
                self.values.astype("<f8").tobytes(),
                stats_bytes,
                self.sums.astype("<f8").tobytes(),
                self.counts.astype("<u2").tobytes(),
                sketch_bytes,
                novelty_bytes,
            ]
        )

    @classmethod
    def decode(cls, blob: bytes) -> SeriesState:
        """Inverse of `encode`, in the geometry and model version the state was written with (compare them
        with the model being served and `swap()` when they differ); raises CorruptState on damage."""
        try:
            return _decode(blob)
        except (struct.error, ValueError) as e:
            raise CorruptState(f"undecodable series state ({len(blob)} bytes): {e}") from e


def _decode(blob: bytes) -> SeriesState:
    (n,) = _HEAD.unpack_from(blob, 0)
    (fmt,) = struct.unpack_from("<B", blob, _HEAD.size)
    if fmt not in _READS:
        raise CorruptState(f"state format {fmt}, this worker reads {_READS}")
    halflife, stats_count, deviation_halflife, surprise_halflife, surprise_min_history = 0.0, 0, 0.0, 0.0, 0
    novelty_length, novelty_history, kept, novelty_rarity = 0, 0, 0, 1.0
    phase = 0
    if fmt == 2:
        (fmt, flags, w, stride, lag, c, k, p, last_ts, era_end, run, start_ts, peak_ts, peak, threshold,
         vlen) = _BODY2.unpack_from(blob, _HEAD.size)
        pos = _HEAD.size + _BODY2.size
    elif fmt == 3:
        (fmt, flags, w, stride, lag, c, k, p, last_ts, era_end, run, start_ts, peak_ts, peak, threshold,
         vlen, halflife, stats_count) = _BODY3.unpack_from(blob, _HEAD.size)
        pos = _HEAD.size + _BODY3.size
    elif fmt == 4:
        (fmt, flags, w, stride, lag, c, k, p, last_ts, era_end, run, start_ts, peak_ts, peak, threshold,
         vlen, halflife, stats_count, deviation_halflife) = _BODY4.unpack_from(blob, _HEAD.size)
        pos = _HEAD.size + _BODY4.size
    elif fmt == 5:
        (fmt, flags, w, stride, lag, c, k, p, last_ts, era_end, run, start_ts, peak_ts, peak, threshold,
         vlen, halflife, stats_count, deviation_halflife, surprise_halflife,
         surprise_min_history) = _BODY5.unpack_from(blob, _HEAD.size)
        pos = _HEAD.size + _BODY5.size
    elif fmt < 8:
        (fmt, flags, w, stride, lag, c, k, p, last_ts, era_end, run, start_ts, peak_ts, peak, threshold,
         vlen, halflife, stats_count, deviation_halflife, surprise_halflife,
         surprise_min_history, novelty_length, novelty_history, kept,
         novelty_rarity) = _BODY7.unpack_from(blob, _HEAD.size)
        pos = _HEAD.size + _BODY7.size
    else:
        (fmt, flags, w, stride, lag, c, k, p, last_ts, era_end, run, threshold, vlen, halflife, stats_count,
         deviation_halflife, surprise_halflife, surprise_min_history) = _BODY.unpack_from(blob, _HEAD.size)
        pos = _HEAD.size + _BODY.size
        start_ts = peak_ts = 0
        peak = 0.0
        if flags & _FLAG_ALERT:
            start_ts, peak_ts, peak = _ALERT.unpack_from(blob, pos)
            pos += _ALERT.size
        if flags & _FLAG_NOVELTY:
            novelty_length, novelty_history, kept, novelty_rarity = _NOVEL.unpack_from(blob, pos)
            pos += _NOVEL.size
        if fmt >= 9 and flags & _FLAG_PHASE:
            (phase,) = _PHASE.unpack_from(blob, pos)
            pos += _PHASE.size
            if not 0 < phase < stride:
                raise CorruptState(f"state holds window phase {phase} at stride {stride}")
    g = Geometry(w, stride, lag, c, halflife, deviation_halflife, surprise_halflife, surprise_min_history,
                 novelty_length, novelty_history, novelty_rarity)
    version = blob[pos:pos + vlen].decode()
    pos += vlen
    # Format 7 keeps the pending points' ts, and their raw values alone when the windows are cut from the inputs;
    # earlier formats kept both for every buffered point (the extra ones are dropped below).
    if fmt < 7 and p > k:
        raise CorruptState(f"state holds {p} pending points but only {k} buffered ones")
    n_ts = p if fmt >= 7 else k
    n_values = p if fmt >= 7 and g.pointwise else k
    if flags & _FLAG_TS_DELTA32 and n_ts:
        (t0,) = struct.unpack_from("<q", blob, pos)
        deltas = np.frombuffer(blob, "<u4", n_ts - 1, pos + 8).astype(np.int64)
        ts = np.concatenate([[t0], t0 + np.cumsum(deltas)]).astype(np.int64)
        pos += 8 + 4 * (n_ts - 1)
    else:
        ts = np.frombuffer(blob, "<i8", n_ts, pos).astype(np.int64)
        pos += 8 * n_ts
    values = np.frombuffer(blob, "<f8", n_values * c, pos).reshape(n_values, c).astype(np.float64)
    pos += 8 * n_values * c
    stats = inputs = None
    if g.pointwise:
        ci = g.input_channels
        mean = np.frombuffer(blob, "<f8", ci, pos).astype(np.float64)
        var = np.frombuffer(blob, "<f8", ci, pos + 8 * ci).astype(np.float64)
        stats = RunningStats(stats_count, mean, var)
        pos += 16 * ci
        if fmt >= 8:
            inputs = _unpack_inputs(blob, pos, k, ci)
            pos += 3 * k * ci
        else:
            inputs = np.frombuffer(blob, "<f4", k * ci, pos).reshape(k, ci).astype(np.float32)
            pos += 4 * k * ci
    sums = np.frombuffer(blob, "<f8", p, pos).astype(np.float64)
    counts = np.frombuffer(blob, "<u2", p, pos + 8 * p).astype(np.int64)
    pos += 10 * p
    sketch = None
    if flags & _FLAG_SKETCH:
        if not g.calibrated:
            raise CorruptState("state holds a calibration sketch but its geometry is uncalibrated")
        sketch, pos = _decode_sketch(blob, fmt, g, pos)
    elif g.calibrated:
        raise CorruptState("state of a calibrated geometry holds no calibration sketch")
    shape = shape_sketch = novelty = None
    if flags & _FLAG_NOVELTY:
        if not g.novel or kept >= g.novelty_history:
            raise CorruptState(f"state holds {kept} novelty points but its geometry's history is "
                               f"{g.novelty_history}")
        shape_sketch, pos = _decode_sketch(blob, fmt, g, pos)
        shape = np.frombuffer(blob, "<f2", kept * c, pos).reshape(kept, c).astype(np.float16)
        novelty = np.frombuffer(blob, "<f4", p, pos + 2 * kept * c).astype(np.float64)
        pos += 2 * kept * c + 4 * p
    elif g.novel:
        raise CorruptState("state of a geometry with novelty holds no novelty")
    if pos != len(blob):
        raise CorruptState(f"state length {len(blob)} disagrees with its header (n={n})")
    alert = AlertState(bool(flags & _FLAG_OPEN), run, start_ts, peak_ts, peak)
    state = SeriesState(g, n, last_ts if flags & _FLAG_HAS_TS else None, ts[len(ts) - p :], values, sums, counts,
                        alert, version, threshold, era_end, stats, inputs, sketch, shape, shape_sketch, novelty, phase)
    if fmt < 7:
        state._trim()  # what format 7 keeps of what an earlier format kept
    return state


def _cut(source: np.ndarray, base: int, ends: np.ndarray, window: int) -> np.ndarray:
    """The windows (K, W, C') ending at point indices `ends` of `source` (L, C'), whose first row is point `base`."""
    if len(ends) == 0:
        return np.empty((0, window, source.shape[1]))
    starts = ends - (window - 1) - base
    if len(starts) <= 4:  # the usual case under load: one to a few new windows per series per batch
        return np.stack([source[int(s) : int(s) + window] for s in starts])
    # (L-W+1, W, C) view of every window, then the ones asked for (a copy). sliding_window_view does the
    # same with more checks: per series and batch they cost more than the copy.
    source = np.ascontiguousarray(source)
    step, col = source.strides
    view = np.lib.stride_tricks.as_strided(
        source, (len(source) - window + 1, window, source.shape[1]), (step, step, col), writeable=False
    )
    return view[starts]


def _pack_inputs(inputs: np.ndarray) -> bytes:
    """Model inputs (k, C') as 3-byte little-endian multiples of INPUT_STEP (where standardize puts them)."""
    if inputs.size <= 8:  # a point's new rows (`push`): plain ints cost less than numpy's calls
        out = []
        for x in inputs.reshape(-1).tolist():
            q = 0 if x != x else round(min(max(x, -SERIES_CLIP), SERIES_CLIP) / INPUT_STEP)  # as np.rint
            out.append((q & 0xFFFFFF).to_bytes(3, "little"))
        return b"".join(out)
    q = np.rint(np.clip(inputs, -SERIES_CLIP, SERIES_CLIP).astype(np.float64) / INPUT_STEP).astype("<i4")
    return q.reshape(-1).view(np.uint8).reshape(-1, 4)[:, :3].tobytes()


def _unpack_inputs(blob: bytes, pos: int, k: int, width: int) -> np.ndarray:
    """Inverse of `_pack_inputs`: the float32 values `Geometry.standardize` gave (q * step is exact in float32)."""
    b = np.frombuffer(blob, np.uint8, 3 * k * width, pos).reshape(-1, 3).astype(np.int32)
    q = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    q = (q ^ 0x800000) - 0x800000  # sign-extend the 24 bits
    return (q.reshape(k, width) * INPUT_STEP).astype(np.float32)


def _decode_sketch(blob: bytes, fmt: int, g: Geometry, pos: int) -> tuple[TailSketch, int]:
    if fmt >= 8:
        return TailSketch.decode_sparse(blob, g.surprise_halflife, g.surprise_min_history, pos)
    return TailSketch.decode(blob, g.surprise_halflife, g.surprise_min_history, pos), pos + SKETCH_SIZE
