"""Per-series surprise: a raw score (any family's, in [0, 1]) in, how rare it is for *this* series out.

`TailSketch` keeps an exponentially decayed histogram of one series' past raw scores (`BINS` bins on
[0, 1], half-life `halflife` points). A new score's tail probability is the decayed share of past scores
at or above it (linear within its bin), never less than half a recent score's weight, and the
surprise reported is `-log10(p) / DECADES`, clipped to [0, 1]: 0.5 means "as rare as 1 in 1,000 of this
series' recent scores", whatever the level the raw scores sit at on this series. The score is compared with
the history *before* it is added (causal), and nothing is reported until `min_history` scores were seen
(0 then).

Numpy only, so that the worker (which ships `model/*.py`) and the offline evaluation run the same code.
State: `BINS` float64 counts and the count seen; `encode()` packs the counts as float32 relative to their
sum (`SIZE` bytes in all) and leaves the sketch's own counts rounded the same way, as its decoded copy holds
them; `encode_sparse()` packs the same numbers but only the bins that hold any (a 64-bit mask says which): a
series' scores seldom visit every bin, and the worker keeps this form in Redis.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field

import numpy as np

BINS = 64
DECADES = 6.0  # surprise 1.0 = a tail probability of 1e-6
_HEAD = struct.Struct("<If")  # seen (capped), scale of the counts
SIZE = _HEAD.size + 4 * BINS  # bytes of an encoded sketch
_MASK_BYTES = BINS // 8  # encode_sparse: bit k (little-endian bit order) set = bin k is stored


@dataclass
class TailSketch:
    halflife: float = 5000.0
    min_history: int = 200
    counts: np.ndarray = field(default_factory=lambda: np.zeros(BINS))
    seen: int = 0

    def surprise(self, scores: np.ndarray) -> np.ndarray:
        """Surprise of each score in order, each against the history before it; absorbs them."""
        return np.array(self._absorb(np.asarray(scores, dtype=np.float64).tolist(), False), dtype=np.float64)

    def _absorb(self, values: list[float], skip: bool) -> list[float]:
        """`surprise` of plain floats, as plain floats (the worker finalizes a point or a few at a time: numpy's
        overhead would cost more than the loop). `skip`: a value that is not finite is not absorbed and its
        surprise is NaN (`calibrate_series`); else NaN counts as 0 and infinities are clipped."""
        out = [0.0] * len(values)
        keep = 0.5 ** (1.0 / self.halflife)
        counts = self.counts
        total, w = float(counts.sum()), 1.0
        ready = self.seen
        for t, x in enumerate(values):
            if skip and not math.isfinite(x):
                out[t] = math.nan
                continue
            # NaN counts as 0 and the score is clipped to [0, 1]; then its bin and the share of the bin below it
            pos = (0.0 if x != x else min(max(x, 0.0), 1.0)) * BINS
            k = min(int(pos), BINS - 1)
            f = pos - k
            if ready >= self.min_history and total > 0:
                above = float(counts[k + 1:].sum()) + float(counts[k]) * (1.0 - f)
                p = max(above, 0.5 * w) / total  # never rarer than half a point of what was seen
                if p < 1.0 - 1e-12:  # (at or below everything seen: 0, not float rounding's 1e-17)
                    out[t] = min(1.0, -math.log10(p) / DECADES)
            w /= keep
            counts[k] += w
            total += w
            ready += 1
            if w > 1e150:  # rescale before the weights overflow
                counts /= w
                total /= w
                w = 1.0
        counts /= w
        self.seen = ready
        return out

    def _relative(self) -> tuple[bytes, np.ndarray]:
        """The head (count seen, scale) and the counts relative to the scale, as float32: what both encodings
        hold. The counts are left as a decoder reads them back (float32 relative counts times the float32
        scale), so that a sketch kept in memory after its encoding goes on exactly as its decoded copy would."""
        total = float(self.counts.sum())
        head = _HEAD.pack(min(self.seen, 2**32 - 1), total if total > 0 else 1.0)
        (_, scale) = _HEAD.unpack(head)
        rel = (self.counts / scale).astype("<f4")
        self.counts = rel.astype(np.float64) * scale
        return head, rel

    @classmethod
    def _restored(cls, seen: int, counts: np.ndarray, halflife: float, min_history: int) -> TailSketch:
        if not (np.isfinite(counts).all() and (counts >= 0).all()):
            raise ValueError("tail sketch counts are not finite and non-negative")
        return cls(halflife, min_history, counts, seen)

    def encode(self) -> bytes:
        head, rel = self._relative()
        return head + rel.tobytes()

    @classmethod
    def decode(cls, blob: bytes, halflife: float, min_history: int, offset: int = 0) -> TailSketch:
        seen, scale = _HEAD.unpack_from(blob, offset)
        counts = np.frombuffer(blob, "<f4", BINS, offset + _HEAD.size).astype(np.float64) * scale
        return cls._restored(seen, counts, halflife, min_history)

    def encode_sparse(self) -> bytes:
        """`encode()`'s numbers, only the bins that are not zero in float32: `SIZE` + 8 - 4 per empty bin."""
        head, rel = self._relative()
        held = rel != 0
        return b"".join([head, np.packbits(held, bitorder="little").tobytes(), rel[held].tobytes()])

    @classmethod
    def decode_sparse(cls, blob: bytes, halflife: float, min_history: int, offset: int = 0) -> tuple[TailSketch, int]:
        """Inverse of `encode_sparse`: the sketch and the offset just after it."""
        seen, scale = _HEAD.unpack_from(blob, offset)
        mask = np.frombuffer(blob, np.uint8, _MASK_BYTES, offset + _HEAD.size)
        held = np.unpackbits(mask, bitorder="little").astype(bool)
        k = int(held.sum())
        at = offset + _HEAD.size + _MASK_BYTES
        counts = np.zeros(BINS)
        counts[held] = np.frombuffer(blob, "<f4", k, at).astype(np.float64) * scale
        return cls._restored(seen, counts, halflife, min_history), at + 4 * k


def surprise_of(probability: float) -> float:
    """The surprise (the served score) of a tail probability: the threshold that alerts on points rarer than
    `probability` among their series' own scores (1e-3 -> 0.5)."""
    if not 0.0 < probability < 1.0:
        raise ValueError(f"a tail probability must be in (0, 1), got {probability}")
    return min(1.0, -math.log10(probability) / DECADES)


def calibrate_series(scores: np.ndarray, sketch: TailSketch | None) -> np.ndarray:
    """`scores` (T,) in arrival order through `sketch` (None: returned as they are): the finite ones become
    their surprise, each against the history before it, and are absorbed; NaN (a point no window scored)
    stays NaN and is not absorbed. The offline path calls this for a whole series, the worker's state
    `calibrate_values` (the same loop) for the points it finalizes, so both give the same scores."""
    s = np.asarray(scores, dtype=np.float64)
    if sketch is None:
        return s
    return np.array(calibrate_values(s.tolist(), sketch), dtype=np.float64)


def calibrate_values(scores: list[float], sketch: TailSketch | None) -> list[float]:
    """`calibrate_series` of plain floats, as plain floats: what the worker's state calls for the few points it
    finalizes at a time."""
    return scores if sketch is None else sketch._absorb(scores, True)
