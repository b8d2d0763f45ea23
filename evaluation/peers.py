"""Peer baselines for `evaluate --peers`: the published top performers of TSB-AD and a matrix-profile discord.

TSB-AD (Liu and Paparrizos, NeurIPS 2024; the `tsb-ad` package) ranks these among the best on its own
benchmark: Sub-PCA, KShapeAD, POLY and MatrixProfile on univariate series, PCA and KMeansAD on
multivariate ones. Each runs here as TSB-AD runs it: unsupervised, on the whole series at once (the seen
part and the part being scored), with the hyper-parameters TSB-AD recommends
(`Optimal_Uni_algo_HP_dict` / `Optimal_Multi_algo_HP_dict`, read from the installed package), and its
scores min-max scaled to [0, 1] per series, as TSB-AD scales them before its metrics.

None of them is causal: the score of point t depends on points after t (a window centred on t, a fit on
the whole series, the matrix profile's nearest neighbour anywhere). They are the published state of the
art to read the causal detectors against, not detectors under the stream worker's rules; every name says
so ("not causal"), and the report marks them `causal: false`.

The discord is the UCR archive's classical detector, written here with stumpy: the window is the dominant
period of the seen (train) part; the matrix profile is a self-join of the unseen (test) part only, so a
point's score is the z-normalized distance from the test subsequence centred on it to its nearest
non-trivial neighbour elsewhere in the test part.

Univariate peers on multichannel data (SMD) run on each channel that is not constant, then the channel
scores (each min-max scaled) are reduced like the model's (`reduce_channels`). tsb-ad 1.5 pins numpy<2;
installed without its dependencies it runs on numpy 2 once the names numpy 2 removed are put back
(`_numpy_shims`), which happens only when it is imported here.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from evaluation.baselines import reduce_channels
from model.errors import DataError

# What `pip install` needs besides the `peers` extra (tsb-ad 1.5 declares numpy<2 and a deep-learning stack
# that none of the peers here imports, so it goes in without its dependencies).
TSB_AD_INSTALL = "pip install --no-deps tsb-ad==1.5"
DEFAULT_PERIOD = 125  # TSB-AD's fallback window when no period is found (`find_length_rank`)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Peer:
    """One peer: its command-line key, its TSB-AD name, how it treats channels and what it imports."""

    key: str
    label: str
    multivariate: bool  # True: all channels at once; False: each channel, then `reduce_channels`
    modules: tuple[str, ...]  # imported before any scoring, so a missing package fails at once
    hp_table: str | None  # TSB-AD's table of recommended hyper-parameters, None for the discord
    hp_key: str | None
    runner: str  # the function of `TSB_AD.model_wrapper` (or "discord")
    about: str

    @property
    def name(self) -> str:
        """The detector's name in the report and the tables: marked as not causal."""
        return f"peer:{self.label} (not causal)"


PEERS: dict[str, Peer] = {p.key: p for p in (
    Peer("sub-pca", "Sub-PCA", False, ("TSB_AD.model_wrapper", "TSB_AD.models.PCA"),
         "Optimal_Uni_algo_HP_dict", "Sub_PCA", "Sub_PCA",
         "PCA on sliding windows of one period; score: weighted distance to the principal components"),
    Peer("kshape", "KShapeAD", False, ("TSB_AD.model_wrapper", "TSB_AD.models.SAND"),
         "Optimal_Uni_algo_HP_dict", "KShapeAD", "KShapeAD",
         "SAND offline: k-Shape clusters of subsequences (4 periods); score: distance to the weighted clusters"),
    Peer("poly", "POLY", False, ("TSB_AD.model_wrapper", "TSB_AD.models.POLY"),
         "Optimal_Uni_algo_HP_dict", "POLY", "POLY",
         "a polynomial (power 4) fitted around each window of one period; score: Fourier distance to the fit"),
    Peer("matrix-profile", "MatrixProfile", False, ("TSB_AD.model_wrapper", "TSB_AD.models.MatrixProfile"),
         "Optimal_Uni_algo_HP_dict", "MatrixProfile", "MatrixProfile",
         "stumpy self-join of the whole series, window one period of the whole series"),
    Peer("pca", "PCA", True, ("TSB_AD.model_wrapper", "TSB_AD.models.PCA"),
         "Optimal_Multi_algo_HP_dict", "PCA", "PCA",
         "PCA on 100-point windows of all channels, keeping 25 % of the variance"),
    Peer("kmeans", "KMeansAD", True, ("TSB_AD.model_wrapper", "TSB_AD.models.KMeansAD"),
         "Optimal_Multi_algo_HP_dict", "KMeansAD", "KMeansAD",
         "k-means (k=10) of z-normalized 40-point windows of all channels; score: distance to the centroid"),
    Peer("discord", "MP discord", False, ("stumpy",), None, None, "discord",
         "stumpy self-join of the test part, window = dominant period of the seen (train) part"),
)}


def parse_peers(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Keys from `--peers` values (each may hold several, comma separated; `all` is every peer), in order,
    without repeats; ValueError naming the unknown ones."""
    keys: list[str] = []
    for item in names:
        for key in (k.strip().lower() for k in item.split(",")):
            if not key:
                continue
            for k in (PEERS if key == "all" else (key,)):
                if k not in PEERS:
                    raise ValueError(f"unknown peer {k!r}; choose from {', '.join(PEERS)} or all")
                if k not in keys:
                    keys.append(k)
    return tuple(keys)


def _numpy_shims() -> None:
    """Names numpy 2 removed that tsb-ad 1.5 still uses (`np.Inf` in KShapeAD's SAND, `np.NaN` in its
    feature module); the values are numpy's own, so nothing else changes."""
    for old, value in (("Inf", np.inf), ("NaN", np.nan)):
        if old not in np.__dict__:
            setattr(np, old, value)


def require(keys: tuple[str, ...]) -> None:
    """Import what the chosen peers need now: a missing package raises ModuleNotFoundError (the CLI turns
    it into one line naming the `peers` extra) before minutes of scoring, not after."""
    if any(PEERS[k].hp_table for k in keys):
        _numpy_shims()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in keys:
            for module in PEERS[key].modules:
                importlib.import_module(module)


def _tsb_ad() -> ModuleType:
    _numpy_shims()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("TSB_AD.model_wrapper")


def hyper_parameters(key: str) -> dict[str, Any]:
    """TSB-AD's recommended hyper-parameters of a peer (an empty dict for the discord)."""
    peer = PEERS[key]
    if peer.hp_table is None:
        return {}
    _numpy_shims()
    table = getattr(importlib.import_module("TSB_AD.HP_list"), peer.hp_table)
    return dict(table[peer.hp_key])


def dominant_period(x: np.ndarray, min_period: int = 3, max_period: int = 1000,
                    default: int = DEFAULT_PERIOD) -> int:
    """The lag of the highest local maximum of the (biased, linear) autocorrelation within
    [min_period, min(max_period, len/3)]; `default` when there is none (a constant or too short series).

    The biased estimator shrinks with the lag, so on a clean periodic signal the fundamental beats its
    multiples. As TSB-AD's `find_length_rank`, but computed with an FFT over any length and searched up to
    1000 lags (TSB-AD: 400, and 125 for periods above 300).
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    v = v - v.mean()
    max_lag = min(max_period, len(v) // 3)
    if max_lag <= min_period or not np.any(v):
        return default
    spectrum = np.fft.rfft(v, 2 * len(v))  # zero-padded to 2n: the linear, not circular, autocorrelation
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[: max_lag + 2]
    acf = acf / acf[0]
    lags = np.arange(min_period, max_lag + 1)
    peaks = lags[(acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1])]
    return int(peaks[np.argmax(acf[peaks])]) if len(peaks) else default


def discord_scores(x: np.ndarray, seen_end: int, window: int | None = None) -> np.ndarray:
    """Matrix-profile discord of one channel: a stumpy self-join of the unseen part `x[seen_end:]` with the
    seen part's dominant period as window (the whole series' if the seen part is shorter than 64 points).

    Each subsequence's nearest-neighbour distance goes to its centre point; the seen part and the test
    part's edges get the lowest distance. A test part shorter than three windows scores 0 everywhere.
    """
    import stumpy

    v = np.asarray(x, dtype=np.float64).ravel()
    m = window or dominant_period(v[:seen_end] if seen_end >= 64 else v)
    test = v[seen_end:]
    if len(test) < 3 * m:
        return np.zeros(len(v))
    profile = np.asarray(stumpy.stump(test, m)[:, 0], dtype=np.float64)
    finite = np.isfinite(profile)
    profile = np.where(finite, profile, profile[finite].max() if finite.any() else 0.0)
    out = np.full(len(v), profile.min())
    start = seen_end + m // 2
    out[start:start + len(profile)] = profile
    return out


def _unit(scores: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] over the whole series (TSB-AD's scaling); a constant score becomes 0."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    span = s.max() - s.min() if len(s) else 0.0
    return (s - s.min()) / span if span > 0 else np.zeros(len(s))


def _one_channel(peer: Peer) -> Callable[[np.ndarray, int], np.ndarray]:
    """A function of (channel values (T,), seen_end) -> raw scores (T,)."""
    if peer.runner == "discord":
        return discord_scores
    run = getattr(_tsb_ad(), f"run_{peer.runner}")
    hp = hyper_parameters(peer.key)
    return lambda x, seen_end: run(x.reshape(-1, 1), **hp)


def peer_scores(values: np.ndarray, seen_end: int, key: str, reduce: str = "max", seed: int = 0) -> np.ndarray:
    """One peer's per-point scores (T,) in [0, 1] over the whole series `values` (T,) or (T, C).

    numpy's global generator is seeded first (TSB-AD's k-means and SAND draw from it), so a run repeats;
    TSB-AD's progress prints and warnings are silenced.
    """
    peer = PEERS[key]
    v = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    np.random.seed(seed % (2**32))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if peer.multivariate:
            run = getattr(_tsb_ad(), f"run_{peer.runner}")
            raw = run(v, **hyper_parameters(key))
            return _checked(_unit(raw), len(v), peer)
        one = _one_channel(peer)
        channels = [c for c in range(v.shape[1]) if np.ptp(v[:, c]) > 0]
        if not channels:
            return np.zeros(len(v))
        per_channel = [_checked(_unit(one(v[:, c], seen_end)), len(v), peer) for c in channels]
    return _unit(reduce_channels(np.stack(per_channel, axis=1), reduce))


def _checked(scores: np.ndarray, n: int, peer: Peer) -> np.ndarray:
    if scores.shape != (n,):
        raise DataError(f"peer {peer.label} returned {scores.shape[0]} scores for {n} points")
    return scores


def score_series(name: str, values: np.ndarray, seen_end: int, keys: tuple[str, ...], reduce: str,
                 seed: int) -> dict[str, tuple[np.ndarray, float, str | None]]:
    """Every chosen peer on one series: display name -> (scores (T,), seconds it took, why it failed).

    A peer whose library fails on a series (TSB-AD's KShapeAD on a series too short for its sample, say)
    scores 0 everywhere there, as a detector that gave no answer, and the one-line reason is kept for the
    report; a missing package still raises ModuleNotFoundError."""
    out: dict[str, tuple[np.ndarray, float, str | None]] = {}
    for key in keys:
        started = time.perf_counter()
        failed = None
        try:
            scores = peer_scores(values, seen_end, key, reduce, seed)
        except ModuleNotFoundError:
            raise
        except Exception as e:  # any library error deep in TSB-AD or stumpy
            first = (str(e).strip().splitlines() or [""])[0]
            failed = f"{type(e).__name__}: {first}"
            log.warning("%s: peer %s failed (%s); it scores 0 on this series", name, PEERS[key].label, failed)
            scores = np.zeros(len(values))
        out[PEERS[key].name] = (scores, time.perf_counter() - started, failed)
    return out


def describe(keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """What the report records of each peer: causal (never), its source, settings and what it is."""
    out = {}
    for key in keys:
        peer = PEERS[key]
        source = "stumpy (this project's wrapper)" if peer.hp_table is None else "tsb-ad"
        out[peer.name] = {"causal": False, "key": key, "source": source, "hyper_parameters": hyper_parameters(key),
                          "channels": "jointly" if peer.multivariate else "each, then reduced", "about": peer.about}
    return out
