"""The worker's bulk histogram update gives what one `observe` per amount gives."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream.metrics import _LATENCY_BUCKETS, observe_many


def _pair() -> tuple[Histogram, Histogram, CollectorRegistry, CollectorRegistry]:
    ra, rb = CollectorRegistry(), CollectorRegistry()
    a = Histogram("lat_seconds", "test", buckets=_LATENCY_BUCKETS, registry=ra)
    b = Histogram("lat_seconds", "test", buckets=_LATENCY_BUCKETS, registry=rb)
    return a, b, ra, rb


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {s.name + str(sorted(s.labels.items())): s.value for m in registry.collect() for s in m.samples
            if not s.name.endswith("_created")}


@pytest.mark.parametrize("seed", [0, 1])
def test_observe_many_equals_one_observe_per_amount(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # on the bounds, between them, above the last and 0: every bucket's edge case
    amounts = np.concatenate([rng.exponential(0.05, 500), np.array(_LATENCY_BUCKETS), [0.0, 100.0, 0.0025 + 1e-12]])
    one, bulk, r_one, r_bulk = _pair()
    for x in amounts.tolist():
        one.observe(x)
    observe_many(bulk, amounts[:300])
    observe_many(bulk, amounts[300:])
    observe_many(bulk, np.empty(0))
    got, want = _samples(r_bulk), _samples(r_one)
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-12), k
    assert b"lat_seconds_bucket" in generate_latest(r_bulk)


def test_observe_many_refuses_a_labelled_parent_as_observe_does() -> None:
    h = Histogram("by_kind_seconds", "test", ["kind"], registry=CollectorRegistry())
    with pytest.raises(ValueError):
        observe_many(h, np.array([0.1]))
