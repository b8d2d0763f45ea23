"""A model that fails on some windows (its run raises, or it scores NaN or outside [0, 1]) stops nothing: the
scorer isolates those windows, the series' state averages its points without them, and a point that no
window scored is final with n_windows 0 (the processor publishes no score for it and counts it)."""

from __future__ import annotations

import asyncio

import numpy as np

from model.bundle import load_bundle
from model.serving import Geometry, Served
from stream.scorer import Scorer
from stream.state import SeriesState
from tests.stream_support import spike_bundle


def test_the_windows_a_model_fails_on_are_isolated_and_the_rest_scored_as_alone(tmp_path) -> None:
    bundle = load_bundle(spike_bundle(tmp_path / "b", window=16, fail_above=1000.0))
    scorer = Scorer(Served(bundle, Geometry(16, 1, 0, 1)), max_inference_batch=8)
    x = np.random.default_rng(0).normal(size=(37, 16, 1))
    x[[3, 20, 21], 7, 0] = 5000.0  # the graph raises on any batch holding one of these
    x[30, 2, 0] = np.nan  # scores NaN: not a number in [0, 1]
    out = scorer.score(bundle, x)
    bad = np.isnan(out.scores).all(axis=1)
    assert np.flatnonzero(bad).tolist() == [3, 20, 21, 30]
    assert out.failed == {"error": 3, "invalid": 1} and "out of data bounds" in (out.error or "")
    good = ~bad
    np.testing.assert_allclose(out.scores[good], bundle.score_windows(x[good]), atol=1e-6, rtol=0)

    async def through_the_executor():
        return await scorer.submit(x, bundle)

    again = asyncio.run(through_the_executor())
    np.testing.assert_array_equal(np.isnan(again.scores), np.isnan(out.scores))
    scorer.close()


def test_a_healthy_batch_reports_no_failure(tmp_path) -> None:
    bundle = load_bundle(spike_bundle(tmp_path / "b", window=16, fail_above=1000.0))
    out = Scorer(Served(bundle, Geometry(16, 1, 0, 1))).score(bundle, np.zeros((5, 16, 1)))
    assert out.failed == {} and out.error is None and np.isfinite(out.scores).all()


def test_a_failed_window_adds_to_no_point_and_a_point_no_window_scored_has_n_windows_0() -> None:
    g = Geometry(8, 1, 3, 1)  # window 8, score lag 3: a point takes the scores of up to 4 windows
    ts = 1000 + np.arange(14)
    values = np.zeros((14, 1))
    good, holed = SeriesState(g, version="v"), SeriesState(g, version="v")
    step_a, step_b = good.push(ts, values), holed.push(ts, values)
    scores = np.random.default_rng(1).uniform(size=(len(step_a.windows), 8)).astype(np.float32)
    holed_scores = scores.copy()
    holed_scores[3] = np.nan  # the 4th window (ending at point 10) failed
    a, b = good.apply(step_a, scores), holed.apply(step_b, holed_scores)
    assert [p.index for p in a] == [p.index for p in b]
    for pa, pb in zip(a, b, strict=True):
        # the failed window ends at point 10 and covers points 7..10 (lag 3)
        assert pb.n_windows == pa.n_windows - (7 <= pa.index <= 10)
    # point 7..9's remaining windows give their mean without the failed one
    p8 = next(p for p in b if p.index == 8)
    ends = [e for e in step_b.ends if 8 <= e <= 8 + 3 and e != 10]
    k = {int(e): i for i, e in enumerate(step_b.ends)}
    np.testing.assert_allclose(p8.score, np.mean([scores[k[e], 8 - (e - 7)] for e in ends]), atol=1e-6)

    lag0, holed0 = Geometry(8, 1, 0, 1), SeriesState(Geometry(8, 1, 0, 1), version="v")
    step = holed0.push(ts, values)
    s0 = np.full((len(step.windows), lag0.window), 0.25, np.float32)
    s0[2] = np.nan  # at lag 0 a point takes only its own window's score
    finals = holed0.apply(step, s0)
    assert [p.n_windows for p in finals if p.index == int(step.ends[2])] == [0]
    assert all(p.n_windows >= 1 for p in finals if p.index != int(step.ends[2]))


def test_the_scorer_reports_each_onnx_runtime_run_as_it_ends(tmp_path) -> None:
    bundle = load_bundle(spike_bundle(tmp_path / "b", window=16, fail_above=1000.0))
    runs: list[float] = []
    scorer = Scorer(Served(bundle, Geometry(16, 1, 0, 1)), max_inference_batch=8, busy=runs.append)
    out = scorer.score(bundle, np.zeros((37, 16, 1)))
    assert len(runs) == 5 and all(t >= 0 for t in runs)  # 8 + 8 + 8 + 8 + 5 windows
    assert sum(runs) <= out.seconds
    x = np.zeros((8, 16, 1))
    x[3, 0, 0] = 5000.0  # the run raises: halves until it is alone, each run counted
    scorer.score(bundle, x)
    assert len(runs) == 5 + 7  # 8 -> 4 + 4 -> (2 + 2) + 4 -> (1 + 1) + 2 + 4
