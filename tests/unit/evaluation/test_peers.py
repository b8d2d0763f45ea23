"""Peers of `evaluate --peers`: the period finder, the discord, TSB-AD's detectors (where installed), the
names that mark them not causal, and the one-line error where their packages are missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation import peers
from evaluation.datasets import Series
from evaluation.scoring import EvalConfig, evaluate_series
from tests.bundles import tiny_bundle

ROOT = Path(__file__).resolve().parents[3]
HAS_STUMPY = importlib.util.find_spec("stumpy") is not None
HAS_TSB_AD = importlib.util.find_spec("TSB_AD") is not None
needs_stumpy = pytest.mark.skipif(not HAS_STUMPY, reason="stumpy is not installed (the optional 'peers' extra)")
needs_tsb_ad = pytest.mark.skipif(not (HAS_TSB_AD and HAS_STUMPY),
                                  reason="tsb-ad is not installed (optional: 'peers' extra, then "
                                         "pip install --no-deps tsb-ad==1.5)")


def periodic(n: int = 3000, period: int = 50, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / period) + np.random.default_rng(seed).normal(0, 0.05, n)


@pytest.mark.parametrize("period", [7, 24, 50, 288])
def test_dominant_period_of_a_noisy_sine(period: int) -> None:
    assert abs(peers.dominant_period(periodic(20 * period + 500, period)) - period) <= 1


def test_dominant_period_prefers_the_fundamental_to_its_multiples() -> None:
    t = np.arange(4000)
    x = np.sin(2 * np.pi * t / 40) + 0.5 * np.sin(2 * np.pi * t / 120)  # period 120, strong 40-point cycle
    assert peers.dominant_period(x) == 120


def test_dominant_period_falls_back_without_a_period() -> None:
    assert peers.dominant_period(np.full(500, 3.0)) == peers.DEFAULT_PERIOD
    assert peers.dominant_period(np.arange(5.0)) == peers.DEFAULT_PERIOD
    assert peers.dominant_period(np.arange(2000.0), default=77) == 77  # a ramp: no local maximum


def test_parse_peers_accepts_commas_repeats_and_all() -> None:
    assert peers.parse_peers(("sub-pca,poly", "POLY", " discord ")) == ("sub-pca", "poly", "discord")
    assert peers.parse_peers(("all",)) == tuple(peers.PEERS)
    assert peers.parse_peers(()) == ()
    with pytest.raises(ValueError, match="unknown peer 'lstm'"):
        peers.parse_peers(("sub-pca,lstm",))


def test_every_peer_is_named_not_causal() -> None:
    for peer in peers.PEERS.values():
        assert peer.name.startswith("peer:") and peer.name.endswith("(not causal)")
    assert len({p.name for p in peers.PEERS.values()}) == len(peers.PEERS)


def test_unknown_peer_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from tools.cli import cli

    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "nab", "--path", ".", "--peers", "nope"])
    assert result.exit_code == 2 and "unknown peer 'nope'" in result.output


# The CLI in a fresh interpreter where the peers' packages cannot be imported, as where they are not installed.
HIDE = (
    "import sys\n"
    "class Hide:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('TSB_AD', 'stumpy'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Hide())\n"
    "from tools.cli import main\n"
    "sys.argv = ['anomalybert'] + sys.argv[1:]\n"
    "main()\n"
)


@pytest.mark.parametrize(("peer", "module"), [("sub-pca", "TSB_AD"), ("discord", "stumpy")])
def test_missing_peer_package_is_one_line_naming_the_extra(tmp_path: Path, peer: str, module: str) -> None:
    out = subprocess.run([sys.executable, "-c", HIDE, "evaluate", "--dataset", "nab", "--path", str(tmp_path),
                          "--peers", peer], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr
    assert len(lines) == 1 and "needs the 'peers' extra" in lines[0] and f"({module} is not installed)" in lines[0]
    assert "pip install --no-deps tsb-ad==1.5" in lines[0]


@pytest.mark.slow  # numba compiles stumpy's kernels on first use (about a minute)
@needs_stumpy
def test_discord_finds_an_anomaly_injected_into_a_periodic_series() -> None:
    x = periodic(4000, 50, seed=1)
    x[3000:3030] = x[3000:3030] * 0.2  # a damped stretch of cycles: no test subsequence is like it
    s = peers.discord_scores(x, seen_end=1500)
    assert s.shape == x.shape
    assert 2950 <= int(np.argmax(s)) <= 3080
    assert np.all(s[:1500] == s[1500:].min())  # the seen part is never scored above the test part
    # the same window as the seen part's period, and the train part is not in the join
    assert peers.dominant_period(x[:1500]) == 50
    y = x.copy()
    y[200:230] *= 0.2  # the same damping in the seen part changes no test-part score
    np.testing.assert_allclose(peers.discord_scores(y, seen_end=1500, window=50)[1500:],
                               peers.discord_scores(x, seen_end=1500, window=50)[1500:])


@pytest.mark.slow
@needs_stumpy
def test_discord_on_a_test_part_shorter_than_three_windows_scores_zero() -> None:
    assert not peers.discord_scores(periodic(1600, 50), seen_end=1500).any()


@pytest.mark.slow  # TSB-AD's tslearn and stumpy kernels compile on first use
@needs_tsb_ad
@pytest.mark.parametrize("key", ["sub-pca", "poly", "pca", "kmeans"])
def test_tsb_ad_peers_flag_an_injected_anomaly(key: str) -> None:
    x = periodic(3000, 50, seed=2)
    x[2200:2230] += 2.0
    s = peers.peer_scores(x, seen_end=1000, key=key, seed=0)
    assert s.shape == x.shape and s.min() == 0.0 and s.max() == 1.0
    assert 2150 <= int(np.argmax(s)) <= 2280
    np.testing.assert_array_equal(s, peers.peer_scores(x, seen_end=1000, key=key, seed=0))  # repeatable


@pytest.mark.slow
@needs_tsb_ad
def test_univariate_peer_on_multichannel_data_reduces_the_varying_channels() -> None:
    x = np.stack([periodic(3000, 50, seed=3), periodic(3000, 30, seed=4), np.full(3000, 7.0)], axis=1)
    x[2200:2230, 1] += 2.0
    one = [peers.peer_scores(x[:, c], 1000, "sub-pca") for c in (0, 1)]
    np.testing.assert_allclose(peers.peer_scores(x, 1000, "sub-pca", reduce="max"),
                               peers._unit(np.maximum(*one)))  # the constant channel is skipped
    np.testing.assert_allclose(peers.peer_scores(x, 1000, "sub-pca", reduce="mean"), peers._unit((one[0] + one[1]) / 2))
    assert not peers.peer_scores(np.full((500, 2), 1.0), 100, "sub-pca").any()


@pytest.mark.slow
@needs_tsb_ad
def test_peers_run_in_the_harness_and_are_described_as_not_causal(tmp_path: Path) -> None:
    from model.bundle import load_bundle

    bundle = load_bundle(tiny_bundle(tmp_path / "b"))
    x = periodic(2000, 40, seed=5)
    x[1500:1520] += 3.0
    labels = np.zeros(2000, dtype=np.int8)
    labels[1500:1520] = 1
    series = Series("s", x.reshape(-1, 1), labels, seen_end=800)
    out = evaluate_series(bundle, series, EvalConfig((), baselines=False, peers=("sub-pca", "discord")))
    names = [peers.PEERS[k].name for k in ("sub-pca", "discord")]
    assert list(out.detectors) == names
    for name in names:
        scored = out.detectors[name]
        assert scored.lag == 0 and scored.seconds > 0
        np.testing.assert_array_equal(scored.scores, scored.detections)
    about = peers.describe(("sub-pca", "discord"))
    assert all(a["causal"] is False for a in about.values())
    assert about[names[0]]["hyper_parameters"] == {"periodicity": 1, "n_components": None}


@pytest.mark.slow
@needs_tsb_ad
def test_a_peer_that_fails_on_a_series_scores_zero_and_says_why() -> None:
    x = np.random.default_rng(6).normal(size=(60, 2))  # shorter than PCA's 100-point window
    found = peers.score_series("short", x, 20, ("pca",), "max", seed=0)
    scores, seconds, failed = found[peers.PEERS["pca"].name]
    assert failed is not None and not scores.any() and scores.shape == (60,)
