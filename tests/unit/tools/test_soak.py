"""The soak's pure parts: its fuzzed input is all refused by the worker's own parser (so a dead letter of
any other message is a good point refused), its good points all pass, and its latency arithmetic."""

from __future__ import annotations

import random

import numpy as np
import pytest
from click.testing import CliRunner

from stream.errors import InvalidRecord
from stream.records import parse_telemetry
from stream.settings import ScoringSettings
from tools.soak import TS0, Result, _latency, bad_messages, series_id, soak, value


def test_every_fuzzed_message_is_refused_by_the_worker_and_the_kinds_are_varied() -> None:
    sids = [series_id("tok", s) for s in range(5)]
    codes = set()
    for key, raw in bad_messages(random.Random(0), 300, 3, sids):
        with pytest.raises(InvalidRecord) as e:
            parse_telemetry(raw, key, 1, ScoringSettings().max_series_id_length)
        codes.add(e.value.code)
    assert {"empty", "invalid_json", "invalid_field", "series_id_too_long", "key_mismatch"} <= codes
    huge = [raw for _, raw in bad_messages(random.Random(0), 3, 3, sids)]
    assert all(700_000 < len(raw) < 1_000_000 for raw in huge)  # below the broker's 1 MB limit


def test_the_good_points_pass_the_worker_parser() -> None:
    import json

    sid = series_id("tok", 7)
    raw = json.dumps({"series_id": sid, "ts": TS0 + 3000, "value": value(7, 3)}).encode()
    p = parse_telemetry(raw, sid.encode(), 1, ScoringSettings().max_series_id_length)
    assert p.series_id == sid and p.channels == (value(7, 3),)


def test_latency_is_measured_from_the_point_that_makes_a_score_final() -> None:
    r = Result("x", series=2, points=4, expected_scores=6)
    sent = [1000.0, 2000.0, 3000.0, 4000.0]  # point i of every series sent at these epoch ms
    published = np.array([[2500, 3500, 4600], [2600, 3600, 9000]], np.int64)  # 3 final points at lag 1
    scored = np.array([[True, True, True], [True, True, False]])
    _latency(r, published, scored, sent, lag=1, window=1)
    waits = np.array([0.5, 0.5, 0.6, 0.6, 0.6])  # e.g. point 0 is final once point 1 was sent (2000)
    assert r.latency_p50_s == pytest.approx(np.percentile(waits, 50))
    assert r.latency_max_s == pytest.approx(0.6)
    assert r.points_per_s == pytest.approx(5 / 3.6)
    first = Result("x", series=1, points=4, expected_scores=4)  # window 3, lag 0: points 0-2 final at point 2
    _latency(first, np.array([[3100, 3100, 3100, 4200]]), np.ones((1, 4), bool), sent, lag=0, window=3)
    assert first.latency_max_s == pytest.approx(0.2) and first.latency_p50_s == pytest.approx(0.1)


def test_an_unknown_scenario_is_a_one_line_usage_error() -> None:
    out = CliRunner().invoke(soak, ["--scenarios", "kill,explode"])
    assert out.exit_code == 2 and "choose from kill, churn" in out.output and "explode" in out.output


def test_an_external_broker_cannot_be_frozen() -> None:
    out = CliRunner().invoke(soak, ["--scenarios", "kill,freeze", "--bootstrap", "127.0.0.1:9092"])
    assert out.exit_code == 2 and "--bootstrap" in out.output and "freeze" in out.output
