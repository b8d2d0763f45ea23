"""Synthetic series with labelled anomalies: a random normal signal in, values plus labels out.

Eight scenarios, each a randomized base signal (level, amplitude, seasonality, drift, noise) with one
kind of anomaly injected at random positions. `inject_anomalies` applies the same injectors to any
given normal signal (real telemetry included), for self-supervised retraining.

Labels: `probability` in [0, 1] says how much a point contributes to an anomaly (1 inside an anomalous
segment; after a trend shift it decays, because the new level soon becomes the normal one).
`anomaly_tag` is the binary truth used for evaluation: 1 where `probability >= 0.5`, else 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SCENARIOS: tuple[str, ...] = (
    "point_anomaly",
    "contextual_anomaly",
    "collective_anomaly",
    "seasonal_with_anomaly",
    "trend_shift",
    "noise_burst",
    "frequency_change",
    "flat_signal",
)
# Scenarios whose anomaly only makes sense on a signal with a clear period.
_PERIODIC = {"contextual_anomaly", "seasonal_with_anomaly", "frequency_change"}
TAG_THRESHOLD = 0.5
MIN_SAMPLES = 16
START = np.datetime64("2026-01-01T00:00:00")
STEP = np.timedelta64(60, "s")


@dataclass
class SyntheticSeries:
    """One generated series: timestamps, values and labels, all of length T."""

    scenario: str
    timestamps: np.ndarray  # (T,) datetime64[s]
    values: np.ndarray  # (T,) float64
    probability: np.ndarray  # (T,) float64 in [0, 1]

    @property
    def anomaly_tag(self) -> np.ndarray:
        return (self.probability >= TAG_THRESHOLD).astype(np.int8)

    def to_csv(self, path: str | Path) -> Path:
        """Write `timestamp, value, probability, anomaly_tag` (timestamps as `YYYY-MM-DD HH:MM:SS`, floats with
        10 significant digits). The standard library's csv: `generate` needs no pandas."""
        import csv

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamps = np.char.replace(np.datetime_as_string(self.timestamps, unit="s"), "T", " ")
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["timestamp", "value", "probability", "anomaly_tag"])
            writer.writerows((t, f"{v:.10g}", f"{p:.10g}", int(a)) for t, v, p, a in
                             zip(stamps.tolist(), self.values.tolist(), np.round(self.probability, 4).tolist(),
                                 self.anomaly_tag.tolist(), strict=True))
        return path


# ---------------------------------------------------------------- base signals


def base_signal(n: int, rng: np.random.Generator, periodic: bool = False) -> np.ndarray:
    """A random normal signal: level + amplitude * shape, the shape classic or telemetry-like.

    Half the signals are the classic mix (seasonality + drift + trend + Gaussian noise); the other half
    look like real telemetry (`_telemetry_shape`): several seasonalities, mean-reverting wander,
    heavy-tailed noise, recurring bursts, clipping, quantized values or sparse counts. All of it is
    normal: a model must learn not to fire on it. Level and amplitude span several orders of magnitude
    so that models see series of any scale.
    """
    shape = _telemetry_shape(n, rng, periodic) if rng.random() < 0.5 else _classic_shape(n, rng, periodic)
    amplitude = 10 ** rng.uniform(-1, 2.5)
    level = rng.normal(0, 50) if rng.random() < 0.7 else 0.0
    return level + amplitude * shape


def _seasonal(t: np.ndarray, period: float, rng: np.random.Generator, max_harmonics: int = 3) -> np.ndarray:
    out = np.zeros(len(t))
    for harmonic in range(1, int(rng.integers(1, max_harmonics + 1)) + 1):
        weight = 1.0 if harmonic == 1 else rng.uniform(0.1, 0.5)
        out += weight * np.sin(2 * np.pi * harmonic * t / period + rng.uniform(0, 2 * np.pi))
    return out


def _classic_shape(n: int, rng: np.random.Generator, periodic: bool) -> np.ndarray:
    t = np.arange(n, dtype=np.float64)
    shape = np.zeros(n)
    if periodic or rng.random() < 0.75:
        shape += _seasonal(t, rng.uniform(10, 40) if periodic else rng.uniform(12, 300), rng)
    if not periodic and rng.random() < 0.5:
        walk = np.cumsum(rng.normal(size=n))
        shape += rng.uniform(0.3, 1.5) * (walk - walk.mean()) / (walk.std() + 1e-9)
    if rng.random() < 0.3:
        shape += rng.uniform(-1.5, 1.5) * t / n
    noise = rng.uniform(0.02, 0.25) if periodic else rng.uniform(0.02, 0.4)
    return shape + noise * rng.normal(size=n)


def _ar1(n: int, phi: float, rng: np.random.Generator) -> np.ndarray:
    """Mean-reverting wander (AR(1)), unit standard deviation."""
    e = rng.normal(size=n)
    x = np.empty(n)
    acc = 0.0
    for i in range(n):  # a plain loop: a few thousand points, and synth stays numpy-only
        acc = phi * acc + e[i]
        x[i] = acc
    return (x - x.mean()) / (x.std() + 1e-9)


def _telemetry_shape(n: int, rng: np.random.Generator, periodic: bool) -> np.ndarray:
    """Normal behaviour of real telemetry: what a detector must not flag."""
    t = np.arange(n, dtype=np.float64)
    if not periodic and rng.random() < 0.15:  # sparse counts (errors per minute, requests of a rare kind)
        rate = rng.uniform(0.05, 3.0) * (1 + 0.5 * _seasonal(t, rng.uniform(50, 400), rng, 1))
        return rng.poisson(np.clip(rate, 0.0, None)).astype(np.float64)
    shape = np.zeros(n)
    if periodic or rng.random() < 0.6:
        p1 = rng.uniform(10, 40) if periodic else rng.uniform(20, 300)
        shape += _seasonal(t, p1, rng)
        if rng.random() < 0.4:  # a second, slower seasonality (day and week)
            shape += rng.uniform(0.2, 0.8) * _seasonal(t, p1 * rng.uniform(3, 8), rng, 1)
    if rng.random() < 0.6:
        shape += rng.uniform(0.2, 1.2 if not periodic else 0.4) * _ar1(n, rng.uniform(0.9, 0.999), rng)
    noise = rng.uniform(0.03, 0.3)
    if rng.random() < 0.5:  # heavy-tailed noise: occasional large but normal deviations
        shape += noise * rng.standard_t(rng.uniform(2.5, 6), size=n) / 1.5
    else:
        shape += noise * rng.normal(size=n)
    if rng.random() < 0.3:  # recurring short bursts (cron jobs, GC pauses, batch traffic)
        every = rng.uniform(15, 120)
        hits = rng.random(n) < 1.0 / every
        shape += hits * rng.lognormal(np.log(rng.uniform(0.3, 1.2)), 0.3, size=n)
    if rng.random() < 0.25:  # a utilisation-like floor: values clipped at a low percentile
        shape = np.maximum(shape, np.quantile(shape, rng.uniform(0.02, 0.3)))
    if rng.random() < 0.3:  # quantized readings (integer counters, coarse sensors)
        step = rng.uniform(0.02, 0.25) * (shape.std() + 1e-9)
        shape = np.round(shape / step) * step
    return shape


# ---------------------------------------------------------------- injectors
# Each injector edits `x` in place from `start` (a segment of `length` points) and returns the
# probability labels of the points it touched. `scale` is the signal's spread, so that magnitudes
# follow the series' own units.

Injector = Callable[[np.ndarray, int, int, float, np.random.Generator], np.ndarray]


def _local_mean(x: np.ndarray, start: int, length: int) -> float:
    lo, hi = max(0, start - length), min(len(x), start + 2 * length)
    return float(x[lo:hi].mean())


def _spike(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    width = min(length, int(rng.integers(1, 3)))
    x[start:start + width] += rng.choice([-1, 1]) * rng.uniform(4, 8) * scale
    p = np.zeros(length)
    p[:width] = 1.0
    return p


def _mirror(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Contextual: values that are normal for the series but wrong for their time (reflected about the
    local mean, which for a seasonal signal is a phase flip); a small offset keeps it visible where the
    segment was flat."""
    seg = x[start:start + length]
    center = _local_mean(x, start, length)
    x[start:start + length] = 2 * center - seg + rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * scale
    return np.ones(length)


def _collective(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A group of points with a foreign shape: a bump, a ramp or a fast oscillation added on top."""
    u = np.linspace(0, 1, length)
    kind = rng.integers(3)
    if kind == 0:
        pattern = np.sin(np.pi * u)
    elif kind == 1:
        pattern = u
    else:
        pattern = np.sin(2 * np.pi * rng.uniform(3, 6) * u)
    x[start:start + length] += rng.choice([-1, 1]) * rng.uniform(1.5, 5) * scale * pattern
    return np.ones(length)


def _amplitude(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Seasonal: the swings of a segment grow or collapse around their local mean."""
    factor = rng.uniform(2.0, 3.5) if rng.random() < 0.5 else rng.uniform(0.0, 0.25)
    center = _local_mean(x, start, length)
    x[start:start + length] = center + factor * (x[start:start + length] - center)
    return np.ones(length)


def _shift(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Trend shift: the level jumps and/or the slope changes for good; only the first points after the
    change are anomalous (probability decays with a time constant of a few points)."""
    n_after = len(x) - start
    t = np.arange(n_after, dtype=np.float64)
    jump = rng.choice([-1, 1]) * rng.uniform(2, 5) * scale
    slope = rng.choice([0.0, rng.uniform(-1, 1) * 4 * scale / max(n_after, 1)])
    x[start:] += jump + slope * t
    tau = rng.uniform(3, 8)
    return np.exp(-t[:length] / tau)


def _noise(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    x[start:start + length] += rng.uniform(0.6, 2.0) * scale * rng.normal(size=length)
    return np.ones(length)


def _warp(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Frequency change: the segment replays the signal around it faster (or slower), so its period
    changes while its range stays the same."""
    factor = rng.uniform(2.5, 4.0) if rng.random() < 0.6 else rng.uniform(0.25, 0.4)
    src = x.copy()
    pos = start + np.arange(length) * factor
    # Fold positions that run past the end back into the series: the content stays signal-like.
    pos = np.where(pos > len(x) - 1, start - (pos - (len(x) - 1)), pos).clip(0, len(x) - 1)
    x[start:start + length] = np.interp(pos, np.arange(len(x)), src)
    return np.ones(length)


def _flat(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Flat signal: the sensor gets stuck at its last value (or drops to the local minimum)."""
    stuck = x[start] if rng.random() < 0.7 else x[max(0, start - length):start + length].min()
    x[start:start + length] = stuck
    return np.ones(length)


# scenario -> (injector, range of the segment length in points, mean anomalies per 1000 points)
# Segments stay shorter than the default window (64) so that a window sees the anomaly beside normal
# points: a window wholly inside a long anomaly cannot tell it from a normal regime. Spikes are short,
# so a series gets more of them; the share of anomalous points stays in the few-percent range.
INJECTORS: dict[str, tuple[Injector, tuple[int, int], float]] = {
    "point_anomaly": (_spike, (1, 2), 6.0),
    "contextual_anomaly": (_mirror, (6, 30), 2.0),
    "collective_anomaly": (_collective, (16, 48), 1.5),
    "seasonal_with_anomaly": (_amplitude, (16, 48), 1.5),
    "trend_shift": (_shift, (24, 24), 1.5),
    "noise_burst": (_noise, (10, 40), 1.5),
    "frequency_change": (_warp, (24, 56), 1.5),
    "flat_signal": (_flat, (10, 48), 1.5),
}


def signal_scale(values: np.ndarray) -> float:
    """Spread of a signal used to size anomalies: its standard deviation, or 1 for a constant one."""
    s = float(np.std(values))
    return s if s > 1e-12 * (1.0 + float(np.abs(values).max(initial=0.0))) else 1.0


def injection_scale(values: np.ndarray, block: int = 32) -> float:
    """Unit of anomaly magnitudes: the signal's spread as a window sees it.

    The global standard deviation overstates it for wandering or slowly seasonal signals (an anomaly of
    a few global deviations would be trivially large inside a window), so it is capped at twice the
    median spread of short blocks; the floor of a quarter of the global spread keeps anomalies visible
    on signals that are flat most of the time.
    """
    g = signal_scale(values)
    n = len(values) // block * block
    if n < 2 * block:
        return g
    local = float(np.median(np.std(np.asarray(values[:n], np.float64).reshape(-1, block), axis=1)))
    return float(np.clip(2.0 * local, 0.25 * g, g))


def _find_room(n: int, length: int, taken: list[tuple[int, int]], rng: np.random.Generator) -> int | None:
    """A random start for a segment that keeps a gap of normal points to the segments already taken."""
    for _ in range(50):
        s = int(rng.integers(0, max(1, n - length)))
        if all(s + length + 8 <= o or o + ol + 8 <= s for o, ol in taken):
            return s
    return None


def inject_anomalies(values: np.ndarray, rng: np.random.Generator, kinds: Sequence[str] = SCENARIOS,
                     n_anomalies: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Inject anomalies of the given kinds (scenario names) into a normal signal.

    Returns a new values array and the probability labels (both (T,)); `values` is left unchanged.
    Without `n_anomalies`, the count is random around the kinds' usual rate per 1000 points (at least one).
    """
    unknown = set(kinds) - set(SCENARIOS)
    if unknown or not kinds:
        raise ValueError(f"unknown or no anomaly kinds {sorted(unknown)}; choose from {SCENARIOS}")
    x = np.asarray(values, dtype=np.float64).copy()
    n = len(x)
    if n < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} points to inject anomalies, got {n}")
    if n_anomalies is None:
        rate = float(np.mean([INJECTORS[k][2] for k in kinds]))
        n_anomalies = int(rng.integers(1, max(1, round(2 * rate * n / 1000)) + 1))
    scale = injection_scale(x)
    probability = np.zeros(n)
    taken: list[tuple[int, int]] = []
    for i in rng.integers(len(kinds), size=n_anomalies):
        injector, (lo, hi), _ = INJECTORS[kinds[int(i)]]
        length = min(int(rng.integers(lo, hi + 1)), max(1, n // 4))
        start = _find_room(n, length, taken, rng)
        if start is None:  # the series is full; fewer anomalies than asked for
            continue
        taken.append((start, length))
        p = injector(x, start, min(length, n - start), scale, rng)
        probability[start:start + len(p)] = np.maximum(probability[start:start + len(p)], p)
    return x, probability


def generate(scenario: str, n_samples: int, rng: np.random.Generator) -> SyntheticSeries:
    """One series of `scenario`: a fresh random base signal with anomalies of that kind."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
    if n_samples < MIN_SAMPLES:
        raise ValueError(f"n_samples must be at least {MIN_SAMPLES}, got {n_samples}")
    base = base_signal(n_samples, rng, periodic=scenario in _PERIODIC)
    values, probability = inject_anomalies(base, rng, kinds=(scenario,))
    timestamps = START + STEP * np.arange(n_samples)
    return SyntheticSeries(scenario, timestamps, values, probability)


def scenario_rng(seed: int, scenario: str, index: int = 0) -> np.random.Generator:
    """The generator for one (seed, scenario, series index): a file does not depend on which other
    scenarios were generated in the same call."""
    return np.random.default_rng([seed, SCENARIOS.index(scenario), index])


def write_scenarios(output_dir: str | Path, n_samples: int, seed: int,
                    scenarios: Sequence[str] = SCENARIOS, n_series: int = 1) -> list[Path]:
    """Generate and write `n_series` CSV files per scenario: `<scenario>.csv` or `<scenario>_<k>.csv`."""
    out = Path(output_dir)
    paths = []
    for scenario in scenarios:
        for k in range(n_series):
            series = generate(scenario, n_samples, scenario_rng(seed, scenario, k))
            name = f"{scenario}.csv" if n_series == 1 else f"{scenario}_{k:03d}.csv"
            paths.append(series.to_csv(out / name))
    log.info("wrote %d synthetic series to %s (seed %d)", len(paths), out, seed)
    return paths


def window_share(touched: np.ndarray, window_size: int, stride: int) -> float:
    """The share of the training windows (`window_size` every `stride` points) that hold a `touched` point."""
    n = len(touched)
    starts = range(0, n - window_size + 1, stride)
    if not len(starts):
        return 0.0
    csum = np.concatenate([[0], np.cumsum(touched.astype(np.int64))])
    return float(np.mean([csum[s + window_size] > csum[s] for s in starts]))


# What `contaminate` hides in training data: every kind but the trend shift, whose level change lasts to the end
# of the series (it would move the normal data rather than hide an anomaly in it).
CONTAMINANTS = tuple(k for k in SCENARIOS if k != "trend_shift")


def contaminate(values: np.ndarray, share: float, window_size: int, stride: int, rng: np.random.Generator,
                kinds: Sequence[str] = CONTAMINANTS, max_channels: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled training data with anomalies hidden in it: inject anomalies (of `kinds`, each on 1 to
    `max_channels` random channels at once) into `values` (T,) or (T, C) until at least `share` of the
    training windows (`window_size` every `stride` points) hold one. Returns the new values and the (T,) mask
    of touched points; `values` is left unchanged. `share` 0 returns a copy."""
    x = np.array(values, dtype=np.float64, copy=True)
    flat = x.ndim == 1
    x2 = x[:, None] if flat else x
    n, channels = x2.shape
    touched = np.zeros(n, dtype=bool)
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share must be in [0, 1), got {share}")
    scales = [injection_scale(x2[:, c]) for c in range(channels)]
    taken: list[tuple[int, int]] = []
    while window_share(touched, window_size, stride) < share:
        injector, (lo, hi), _ = INJECTORS[kinds[int(rng.integers(len(kinds)))]]
        length = min(int(rng.integers(lo, hi + 1)), max(1, n // 4))
        start = _find_room(n, length, taken, rng)
        if start is None:
            break  # no room left for another anomaly
        taken.append((start, length))
        for c in rng.choice(channels, size=int(rng.integers(1, min(max_channels, channels) + 1)), replace=False):
            column = np.ascontiguousarray(x2[:, c])
            p = injector(column, start, min(length, n - start), scales[c], rng)
            x2[:, c] = column
            touched[start:start + len(p)] |= p > 0
    return (x2[:, 0] if flat else x2), touched
