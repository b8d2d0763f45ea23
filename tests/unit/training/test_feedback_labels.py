"""Operators' verdicts as training labels: alert spans, labelled segments, true spans in injected copies."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from evaluation.series import Series
from training.feedback import (
    FeedbackPrecision,
    Verdict,
    feedback_segments,
    integer_ts,
    label_true_spans,
    matched,
)
from training.retrain import RetrainPlan, prepare_data


def series(name: str = "pump-7", n: int = 400) -> Series:
    v = np.sin(np.arange(n) / 5.0)
    return Series(name, v, timestamps=1000 * np.arange(n, dtype=np.int64))


def test_a_span_runs_from_opening_to_closing_or_to_the_end_while_open() -> None:
    ts = 1000 * np.arange(10, dtype=np.int64)
    assert np.flatnonzero(Verdict("p:2000", "p", 2000, 4000, False).mask(ts)).tolist() == [2, 3, 4]
    assert np.flatnonzero(Verdict("p:7000", "p", 7000, None, True).mask(ts)).tolist() == [7, 8, 9]


def test_verdicts_outside_the_data_are_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    s = series()
    inside = Verdict("pump-7:100000", "pump-7", 100_000, 110_000, False)
    other = Verdict("fan:100000", "fan", 100_000, 110_000, False)
    later = Verdict("pump-7:9000000", "pump-7", 9_000_000, None, True)
    with caplog.at_level(logging.WARNING):
        assert matched([s], [inside, other, later]) == {"pump-7": [inside]}
    assert "2 verdict(s)" in caplog.text and "fan:100000" in caplog.text
    text = Series("t", np.zeros(3), timestamps=np.array(["2026-01-01", "2026-01-02", "2026-01-03"]))
    assert integer_ts(text) is None and matched([text], [Verdict("t:1", "t", 1, None, True)]) == {}


def test_each_fed_back_alert_becomes_labelled_segments_with_context() -> None:
    s = series()
    true = Verdict("pump-7:100000", "pump-7", 100_000, 104_000, True)
    false = Verdict("pump-7:300000", "pump-7", 300_000, 309_000, False)
    segs = feedback_segments([s], {"pump-7": [true, false]}, context=16, copies=3)
    assert len(segs) == 6
    t = segs[0]
    assert len(t) == 5 + 32 and np.array_equal(t.values, s.values[84:121])
    assert t.probability.tolist() == [0.0] * 16 + [1.0] * 5 + [0.0] * 16 and t.labels.sum() == 5
    f = segs[3]
    assert len(f) == 10 + 32 and not f.probability.any() and "false-alarm" in f.name
    mask = label_true_spans(s, [true, false])
    assert mask is not None and np.flatnonzero(mask).tolist() == list(range(100, 105))
    assert label_true_spans(s, [false]) is None


def test_retraining_data_carry_the_verdicts() -> None:
    s = series(n=600)
    true = Verdict("pump-7:100000", "pump-7", 100_000, 104_000, True)
    false = Verdict("pump-7:550000", "pump-7", 550_000, 559_000, False)  # in the gate slice: still learnt from
    plan = RetrainPlan(copies=2, gate_fraction=0.2)
    train, gate = prepare_data([s], plan, 16, {"pump-7": [true, false]})
    injected = [x for x in train if "#inj" in x.name]
    assert len(injected) == 2 and all((x.probability[100:105] == 1.0).all() for x in injected)
    assert sum("false-alarm" in x.name for x in train) == 2 and sum("true-alarm" in x.name for x in train) == 2
    assert len(gate) == 1
    plain, _ = prepare_data([s], plan, 16)
    assert len(plain) == 2


def test_precision_on_the_fed_back_alerts() -> None:
    assert FeedbackPrecision(3, 1, 4, 2).precision == 0.75
    assert FeedbackPrecision(0, 0, 4, 2).precision is None
