"""The short soak (`anomalybert soak`'s code, a small plan): every fault in one run (SIGKILLs, a join and a
graceful leave, Redis SIGKILLed and restarted from its AOF at the shipped fsync policy, the broker frozen,
fuzzed and oversized bad input), read back with confluent-kafka; nothing lost, nothing scored twice, every
bad message dead-lettered, no good point dead-lettered, no worker crash, scores as offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stream_support import random_bundle, shipped_redis_flags
from tools.soak import Plan, run_soak

pytestmark = pytest.mark.integration


def _shipped_fsync() -> str:
    flags = shipped_redis_flags()
    return flags[flags.index("--appendfsync") + 1]


def test_the_short_soak_loses_and_repeats_no_point(tmp_path: Path) -> None:
    bundle = random_bundle(tmp_path / "tiny")  # window 16, served at lag 15
    plan = Plan(series=12, points=120, workers=2, partitions=4, rate=70, bad=40, oversized=2,
                fsync=_shipped_fsync(), model=bundle, max_batch=64, sample=4)
    lines: list[str] = []
    (r,) = run_soak(plan, ["all"], tmp_path / "logs", say=lines.append)
    assert len(r.faults) == 6 and any("redis SIGKILL" in f for f in r.faults), lines
    assert r.expected_scores == 12 * (120 - 15) and r.scored == r.expected_scores
    assert (r.lost, r.duplicated, r.crashes) == (0, 0, 0), r
    assert r.bad_sent == 40 and r.dead_letters_missing == 0 and r.dead_letters_unexpected == 0, r
    assert r.dead_lettered + r.dead_letters_duplicated == 40
    assert r.offline_max_abs_diff is not None and r.offline_max_abs_diff <= 1e-4
    assert r.ok and r.latency_max_s is not None and r.points_per_s is not None
