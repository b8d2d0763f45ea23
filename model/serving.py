"""What a worker serves (numpy only): a bundle turned into its serving geometry, in one place.

`serve(bundle)` is the one function that turns a loaded bundle into what is served: the stream worker's
start-up and hot reload, `detect`, `evaluate`, `bench` and the demo all call it, so the lag and the
point-by-point normalization a bundle is served with cannot differ between them.

The score lag comes from, in order: an explicit override (the operator's setting), the manifest's
`score_lag`, the calibration's `score_lag` (bundles written before it was a manifest field), and
`window_size - 1` (every covering window averaged).

The stride (a window every `stride` points) is the manifest's unless the operator serves another: a larger
one trades accuracy for speed (a window costs the same whatever the stride), and the lag is then raised to
at least stride - 1, so that every point is covered by a window when it becomes final: it is scored by the
first window ending at or after it, from the newest points' side. A bundle that scores only the last N
points of each window (the masked autoencoder's `score_last`) cannot be served at a stride above N.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from model.normalize import RunningStats
from model.novelty import as_history, combine_surprise, novelty
from model.surprise import TailSketch, calibrate_series
from model.windows import check_lag

if TYPE_CHECKING:
    from model.bundle import Bundle, Manifest


@dataclass(frozen=True)
class Geometry:
    """What a series' stored state must agree with: window size, stride, aggregation lag, channel count, and
    the point-by-point normalization the bundle's normalizer declares (`halflife` of its running statistics,
    0: none; `deviation_halflife` of the extra input features it adds, 0: none). The worker's state keeps the
    statistics and the model inputs; what they mean is the normalizer's (`model.normalize`)."""

    window: int
    stride: int
    lag: int
    channels: int
    halflife: float = 0.0
    deviation_halflife: float = 0.0
    # per-series calibration (`model.surprise.TailSketch`): half-life in points, 0: none (raw scores served)
    surprise_halflife: float = 0.0
    surprise_min_history: int = 0
    # shape novelty beside the model's score (`model.novelty`): subsequence length and history, 0: none
    novelty_length: int = 0
    novelty_history: int = 0
    novelty_rarity: float = 1.0  # the novelty counts when this many times rarer (`model.novelty.discount`)

    def __post_init__(self) -> None:
        check_lag(self.window, self.stride, self.lag)
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.halflife and self.halflife < 1.0:
            raise ValueError(f"halflife must be 0 (none) or >= 1, got {self.halflife}")
        if self.deviation_halflife and (not self.halflife or self.deviation_halflife < 1.0):
            raise ValueError(f"deviation_halflife must be 0 (none), or >= 1 with a halflife; got "
                             f"{self.deviation_halflife} with halflife {self.halflife}")
        if self.surprise_halflife and self.surprise_halflife < 1.0:
            raise ValueError(f"surprise_halflife must be 0 (none) or >= 1, got {self.surprise_halflife}")
        if not 0 <= self.surprise_min_history < 2**32:
            raise ValueError(f"surprise_min_history must be in [0, 2**32), got {self.surprise_min_history}")
        if self.novelty_length or self.novelty_history:
            if not (self.calibrated and self.pointwise):
                raise ValueError("novelty needs a per-series calibration and point-by-point normalization")
            if not (4 <= self.novelty_length and 2 * self.novelty_length <= self.novelty_history < 2**16):
                raise ValueError(f"novelty needs 4 <= length and 2 * length <= history < 65536, got "
                                 f"{self.novelty_length}/{self.novelty_history}")
        if not self.novelty_rarity >= 1.0:
            raise ValueError(f"novelty_rarity must be >= 1, got {self.novelty_rarity}")

    @property
    def calibrated(self) -> bool:
        """Served scores are per-series surprise (`model.surprise`), not the raw aggregated scores."""
        return self.surprise_halflife > 0

    def new_sketch(self) -> TailSketch | None:
        """An empty per-series sketch, or None when the raw scores are served."""
        return TailSketch(self.surprise_halflife, self.surprise_min_history) if self.calibrated else None

    @property
    def novel(self) -> bool:
        """The served score is the larger of the model's surprise and the shape novelty's (`model.novelty`)."""
        return self.novelty_length > 0

    def novelty(self, history: np.ndarray, start: int = 0) -> np.ndarray:
        """Shape novelty of the points start.. of `history` (`model.novelty.as_history` of the inputs)."""
        return novelty(history, self.novelty_length, self.novelty_history, start)

    def calibrate(self, scores: np.ndarray, inputs: np.ndarray | None = None) -> np.ndarray:
        """The served scores (T,) of one series' raw point scores, in arrival order, from a new series' state:
        exactly what the worker publishes. NaN (points no window scored) stays NaN and teaches the sketch
        nothing. A `novel` geometry also needs the series' model inputs (T, input_channels)."""
        if not self.novel:
            return calibrate_series(scores, self.new_sketch())
        if inputs is None:
            raise ValueError("a geometry with novelty calibrates from the model inputs too")
        return combine_surprise(scores, self.novelty(as_history(inputs, self.channels)),
                                (self.surprise_halflife, self.surprise_min_history), self.novelty_rarity)

    @property
    def pointwise(self) -> bool:
        """Inputs are normalized point by point on arrival, with running statistics kept per series."""
        return self.halflife > 0

    @property
    def input_channels(self) -> int:
        """Width of the model input: the channels, then the normalizer's extra features if any."""
        return 2 * self.channels if self.deviation_halflife else self.channels

    def new_stats(self) -> RunningStats:
        return RunningStats.empty(self.input_channels)

    def standardize(self, stats: RunningStats, values: np.ndarray) -> np.ndarray:
        """Model inputs (T, input_channels) float32 of raw values (T, channels), continuing `stats` in place:
        exactly `Normalizer.prepare_series` offline."""
        return stats.standardize(values, self.halflife, self.deviation_halflife).astype(np.float32)

    def carry(self, stats: RunningStats, inputs: np.ndarray) -> tuple[RunningStats, np.ndarray]:
        """Statistics and buffered inputs of another pointwise geometry of the same channels, carried over to
        this one (`RunningStats.resized`), so that a model upgrade does not start every history anew."""
        return stats.resized(self.channels, bool(self.deviation_halflife), inputs)


def geometry_of(manifest: Manifest, lag: int, stride: int | None = None) -> Geometry:
    """The geometry a bundle with this manifest is served with at `lag` (and `stride`, None: the manifest's)."""
    norm, cal = manifest.normalizer, manifest.calibration.per_series
    stride = manifest.stride if stride is None else stride
    surprise = (cal.halflife, cal.min_history) if cal is not None else (0.0, 0)
    shape = ((cal.novelty.length, cal.novelty.history, cal.novelty.rarity) if cal is not None and cal.novelty
             else (0, 0, 1.0))
    if not norm.pointwise:
        return Geometry(manifest.window_size, stride, lag, manifest.channels, 0.0, 0.0, *surprise, *shape)
    return Geometry(manifest.window_size, stride, lag, manifest.channels, norm.halflife,
                    norm.deviation_halflife, *surprise, *shape)


def scored_per_window(manifest: Manifest) -> int:
    """How many of a window's newest points the graph scores: all of them, or a family's `score_last`."""
    return int(manifest.model.get("score_last") or manifest.window_size)


def default_lag(manifest: Manifest) -> int:
    """The lag a bundle is served with when nobody says otherwise (see the module's docstring)."""
    if manifest.score_lag is not None:
        return manifest.score_lag
    calibrated = manifest.calibration.details.get("score_lag")
    return manifest.window_size - 1 if calibrated is None else int(calibrated)


@dataclass(frozen=True)
class Served:
    """A bundle and the geometry it is served with: swapped together, read together."""

    bundle: Bundle
    geometry: Geometry

    @property
    def lag(self) -> int:
        return self.geometry.lag

    @property
    def threshold(self) -> float:
        return self.bundle.threshold


def serve(bundle: Bundle, score_lag: int | None = None, stride: int | None = None) -> Served:
    """What `bundle` is served as, at `score_lag` (None: the bundle's own, `default_lag`, raised to stride - 1)
    and `stride` (None: the manifest's). A lag or stride the bundle's window cannot serve is a ValueError."""
    m = bundle.manifest
    if stride is not None and not 1 <= stride <= scored_per_window(m):
        raise ValueError(f"stride must be in [1, {scored_per_window(m)}] for bundle {bundle.version} (its graph "
                         f"scores the last {scored_per_window(m)} points of a window), got {stride}")
    lag = max(default_lag(m), (stride or 1) - 1) if score_lag is None else int(score_lag)
    try:
        return Served(bundle, geometry_of(m, lag, stride))
    except ValueError as e:
        raise ValueError(f"{e} (bundle {bundle.version}: window_size={bundle.window_size}, "
                         f"stride={stride or bundle.stride})") from e
