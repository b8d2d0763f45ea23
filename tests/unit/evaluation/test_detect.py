"""Detection: the documented composition, top-N ordering, scale-free scores, torch-free bundles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.detect import Detector, top_n
from evaluation.series import Series
from model.bundle import load_bundle
from model.errors import BundleError, DataError
from model.families.anomalybert.modules import AnomalyBERT
from model.families.checkpoint import Checkpoint
from model.normalize import Normalizer
from model.windows import aggregate, make_windows
from tests.bundles import TINY, tiny_bundle

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", seed=7)


def _series(n: int = 120, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    values = np.sin(np.arange(n) / 5) + 0.1 * rng.normal(size=n)
    values[n // 2] += 4
    return Series("s", values, timestamps=np.arange(n, dtype=np.int64) * 1000)


def test_scores_are_make_windows_then_bundle_then_aggregate(bundle_dir: Path) -> None:
    s = _series()
    bundle = load_bundle(bundle_dir)
    expected, _ = aggregate(bundle.score_windows(make_windows(s.values, 16, 1)), len(s), 16, 1, 15)
    np.testing.assert_allclose(Detector(bundle_dir).score(s.values), expected, rtol=0, atol=1e-7)
    lag0, _ = aggregate(bundle.score_windows(make_windows(s.values, 16, 1)), len(s), 16, 1, 0)
    np.testing.assert_allclose(Detector(bundle_dir, score_lag=0).score(s.values), lag0, atol=1e-7)


def test_long_series_are_scored_in_batches_without_changing_scores(bundle_dir: Path) -> None:
    s = _series(n=700)  # more windows than one inference batch
    bundle = load_bundle(bundle_dir)
    expected, _ = aggregate(bundle.score_windows(make_windows(s.values, 16, 1)), len(s), 16, 1)
    np.testing.assert_allclose(Detector(bundle_dir).score(s.values), expected, atol=1e-6)


def test_top_n_is_sorted_and_plain(bundle_dir: Path) -> None:
    results = Detector(bundle_dir).detect(_series(), 5)
    assert len(results) == 5 and list(results[0]) == ["timestamp", "value", "score"]
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert all(type(r["timestamp"]) is int and type(r["score"]) is float for r in results)


def test_top_n_skips_unscored_points_and_breaks_ties_by_time() -> None:
    s = Series("s", np.arange(4.0), timestamps=np.array(["a", "b", "c", "d"], dtype=object))
    got = top_n(s, np.array([0.5, np.nan, 0.9, 0.5]), 10)
    assert [r["timestamp"] for r in got] == ["c", "a", "d"]


def test_checkpoint_and_bundle_rank_the_same_points(tmp_path: Path) -> None:
    torch.manual_seed(7)
    ckpt = Checkpoint(AnomalyBERT(TINY).eval(), Normalizer(scope="window"))
    ckpt.save(tmp_path / "m.pt")
    from model.families.export import export_bundle

    export_bundle(ckpt, tmp_path / "b")
    s = _series()
    a, b = Detector(tmp_path / "m.pt").score(s.values), Detector(tmp_path / "b").score(s.values)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_window_scope_gives_affine_invariant_scores(bundle_dir: Path) -> None:
    det = Detector(bundle_dir)
    x = _series().values
    np.testing.assert_allclose(det.score(250.0 * x + 1e4), det.score(x), atol=1e-4)


def test_short_series_bad_lag_and_missing_model(bundle_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="shorter than the model's window of 16"):
        Detector(bundle_dir).detect(_series(n=10))
    with pytest.raises(ValueError, match="score_lag"):
        Detector(bundle_dir, score_lag=16)
    with pytest.raises(BundleError):
        Detector(tmp_path / "nothing")
    with pytest.raises(BundleError, match="not found"):
        Detector(tmp_path / "nothing.pt")


def test_bundle_detection_never_imports_torch(bundle_dir: Path, tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("timestamp,value\n" + "".join(f"{i},{np.sin(i / 4):.4f}\n" for i in range(50)))
    code = ("import sys; from evaluation.detect import Detector; "
            f"r = Detector({str(bundle_dir)!r}).detect_file({str(csv)!r}, 3); "
            "assert len(r) == 3; assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_series_scope_bundle_is_standardized_point_by_point(tmp_path: Path) -> None:
    from dataclasses import replace

    from model.normalize import Normalizer
    from tests.bundles import TINY, tiny_bundle

    directory = tiny_bundle(tmp_path / "series", cfg=replace(TINY, window_features=True),
                            normalizer=Normalizer("zscore", "series", halflife=40.0))
    s = _series(n=300)
    bundle = load_bundle(directory)
    prepared = bundle.normalizer.prepare_series(s.values)
    expected, _ = aggregate(bundle.score_windows(make_windows(prepared, 16, 1)), len(s), 16, 1, 15)
    got = Detector(directory).score(s.values)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
    raw, _ = aggregate(bundle.score_windows(make_windows(s.values, 16, 1)), len(s), 16, 1, 15)
    assert np.abs(got - raw).max() > 1e-3  # the raw windows would not give these scores


def test_a_series_id_puts_the_windows_where_the_worker_puts_them(tmp_path: Path) -> None:
    """At a stride above 1 the worker staggers each series' windows by its id; `score(values, series_id)` and
    `detect --series-id` give what it serves for that series, without the id every stride points from the first."""
    import json
    from dataclasses import replace

    from click.testing import CliRunner

    from model.windows import series_phase
    from tools.cli import cli

    d = tiny_bundle(tmp_path / "b4", seed=3, cfg=replace(TINY, stride=4))
    det, s = Detector(d), _series()
    sid = next(f"pump-{i}" for i in range(100) if series_phase(f"pump-{i}", 4) == 2)
    bundle = load_bundle(d)
    want, _ = aggregate(bundle.score_windows(make_windows(s.values, 16, 4, 2)), len(s), 16, 4, det.score_lag, 2)
    np.testing.assert_allclose(det.score(s.values, sid), want, rtol=0, atol=1e-7)
    assert np.abs(np.nan_to_num(det.score(s.values)) - np.nan_to_num(want)).max() > 1e-3  # phase 0 differs
    csv = tmp_path / "s.csv"
    csv.write_text("timestamp,value\n" + "".join(f"{t},{v}\n" for t, v in zip(s.timestamps, s.values, strict=True)))
    res = CliRunner().invoke(cli, ["detect", "--model", str(d), "--input", str(csv), "--series-id", sid,
                                   "--top-n", "3", "--format", "json"])
    assert res.exit_code == 0, res.output
    top = [r["score"] for r in json.loads(res.output)]
    np.testing.assert_allclose(top, np.sort(want[~np.isnan(want)])[::-1][:3], rtol=0, atol=1e-6)
