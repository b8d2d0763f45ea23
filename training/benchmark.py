"""The self-distilled masked autoencoder's reference benchmark, rebuilt on the project's injectors: sine-based
series with five anomaly kinds (spike, noise, drift, trend, frequency change), a small share of anomalous
points in training (3 %) and a large one in test (25 %).

`drift` and `trend` are kinds of their own here, confined to their segment (the series comes back after it):
`drift` wanders away as a random walk, `trend` ramps away linearly. The other three are the generator's
`point_anomaly`, `noise_burst` and `frequency_change` injectors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from training.synth import INJECTORS, injection_scale

KINDS = ("spike", "noise", "drift", "trend", "frequency")
_LENGTHS = {"spike": (1, 3), "noise": (10, 40), "drift": (30, 80), "trend": (30, 80), "frequency": (24, 56)}


def _drift(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    steps = rng.normal(0.0, 1.0, length).cumsum()
    steps -= steps[0]
    peak = float(np.abs(steps).max()) or 1.0
    x[start:start + length] += rng.uniform(2.0, 4.0) * scale * steps / peak
    return np.ones(length)


def _trend(x: np.ndarray, start: int, length: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    x[start:start + length] += rng.choice([-1, 1]) * rng.uniform(2.0, 4.0) * scale * np.linspace(0, 1, length)
    return np.ones(length)


_INJECT: dict[str, Callable[..., np.ndarray]] = {
    "spike": INJECTORS["point_anomaly"][0], "noise": INJECTORS["noise_burst"][0], "drift": _drift,
    "trend": _trend, "frequency": INJECTORS["frequency_change"][0]}


def sine_series(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two sines of random periods (20-200 points), phases and amplitudes, plus 5 % Gaussian noise."""
    t = np.arange(n, dtype=np.float64)
    out = np.zeros(n)
    for amplitude in (1.0, rng.uniform(0.2, 0.6)):
        out += amplitude * np.sin(2 * np.pi * t / rng.uniform(20, 200) + rng.uniform(0, 2 * np.pi))
    return out + rng.normal(0.0, 0.05, n)


def benchmark_series(n: int, anomaly_share: float, rng: np.random.Generator,
                     kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, np.ndarray]:
    """A sine series with anomalies of `kinds` (chosen in turn at random) until `anomaly_share` of its points are
    labelled; returns the values and the 0/1 labels (T,). Segments keep 8 normal points between them."""
    if not 0.0 <= anomaly_share < 0.6:
        raise ValueError(f"anomaly_share must be in [0, 0.6), got {anomaly_share}")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown or no kinds {sorted(unknown)}; choose from {KINDS}")
    x = sine_series(n, rng)
    scale = injection_scale(x)
    labels = np.zeros(n, dtype=np.int8)
    for _ in range(10_000):
        if labels.mean() >= anomaly_share:
            break
        kind = kinds[int(rng.integers(len(kinds)))]
        lo, hi = _LENGTHS[kind]
        length = int(rng.integers(lo, hi + 1))
        start = int(rng.integers(8, n - length - 8))
        if labels[start - 8:start + length + 8].any():
            continue
        p = _INJECT[kind](x, start, length, scale, rng)
        labels[start:start + length] = (p > 0).astype(np.int8)
    return x, labels
