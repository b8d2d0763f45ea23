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
    # when each point of each series was sent (epoch ms): series 1 is sent 100 ms after series 0
    sent = np.array([[1000.0, 2000.0, 3000.0, 4000.0], [1100.0, 2100.0, 3100.0, 4100.0]])
    published = np.array([[2500, 3500, 4600], [2600, 3600, 9000]], np.int64)  # 3 final points at lag 1
    scored = np.array([[True, True, True], [True, True, False]])
    _latency(r, published, scored, sent, lag=1, window=1)
    waits = np.array([0.5, 0.5, 0.6, 0.5, 0.5])  # e.g. point 0 is final once point 1 was sent (2000, 2100)
    assert r.latency_p50_s == pytest.approx(np.percentile(waits, 50))
    assert r.latency_max_s == pytest.approx(0.6)
    assert r.points_per_s == pytest.approx(5 / 3.6)  # from the first point sent (1000) to the last score
    first = Result("x", series=1, points=4, expected_scores=4)  # window 3, lag 0: points 0-2 final at point 2
    _latency(first, np.array([[3100, 3100, 3100, 4200]]), np.ones((1, 4), bool), sent[:1], lag=0, window=3)
    assert first.latency_max_s == pytest.approx(0.2) and first.latency_p50_s == pytest.approx(0.1)


def test_a_point_delayed_within_a_round_of_many_series_counts_from_its_own_send() -> None:
    """At 100,000 series a round of points takes minutes: a score delayed by a kill early in a round must not be
    measured from the round's end."""
    r = Result("x", series=3, points=1, expected_scores=3)
    sent = np.array([[0.0], [60_000.0], [120_000.0]])  # one round over two minutes
    published = np.array([[20_000], [60_100], [120_100]], np.int64)  # series 0 waited 20 s (a kill)
    _latency(r, published, np.ones((3, 1), bool), sent, lag=0, window=1)
    assert r.latency_max_s == pytest.approx(20.0) and r.latency_p50_s == pytest.approx(0.1)


def test_an_unknown_scenario_is_a_one_line_usage_error() -> None:
    out = CliRunner().invoke(soak, ["--scenarios", "kill,explode"])
    assert out.exit_code == 2 and "choose from kill, churn" in out.output and "explode" in out.output


def test_an_external_broker_cannot_be_frozen() -> None:
    out = CliRunner().invoke(soak, ["--scenarios", "kill,freeze", "--bootstrap", "127.0.0.1:9092"])
    assert out.exit_code == 2 and "--bootstrap" in out.output and "freeze" in out.output


def test_the_workers_fetch_with_the_soak_wait_not_their_default(tmp_path) -> None:
    from pathlib import Path

    from stream.settings import KafkaSettings, Settings
    from tools.soak import Plan, Stack, _env

    topics = {"telemetry": "t", "scores": "s", "alerts": "a", "dlq": "t.dlq", "model_updates": "m"}
    env = _env(Stack("always", tmp_path, broker_port=1, redis_port=2), Plan(), "tok", topics, Path("bundle"))
    assert env["ANOMALYBERT_KAFKA__FETCH_MAX_WAIT_MS"] == "500" != str(KafkaSettings().fetch_max_wait_ms)
    import os
    from unittest import mock

    with mock.patch.dict(os.environ, env, clear=True):
        assert Settings().kafka.fetch_max_wait_ms == 500
    env = _env(Stack("always", tmp_path, broker_port=1, redis_port=2), Plan(fetch_max_wait_ms=10), "tok", topics,
               Path("bundle"))
    assert env["ANOMALYBERT_KAFKA__FETCH_MAX_WAIT_MS"] == "10"
    out = CliRunner().invoke(soak, ["--help"])
    assert "--fetch-max-wait-ms" in out.output and "--linger-ms" in out.output


def test_the_recovery_after_a_fault_is_the_longest_wait_of_the_points_sent_around_it() -> None:
    r = Result("x", series=1, points=6, expected_scores=6)
    sent = np.array([[0.0, 10_000.0, 20_000.0, 60_000.0, 100_000.0, 101_000.0]])
    # the fault at 55 s delays the point sent at 60 s by 12 s; the point sent at 100 s is outside its window
    published = np.array([[100, 10_200, 20_100, 72_000, 130_000, 101_100]], np.int64)
    r.faults_at_ms = [55_000.0, 200_000.0]
    _latency(r, published, np.ones((1, 6), bool), sent, lag=0, window=1)
    assert r.recovery_s[0] == pytest.approx(12.0) and r.recovery_s[1] is None
    assert r.latency_max_s == pytest.approx(30.0)
