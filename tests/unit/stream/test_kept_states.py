"""Decoded states kept between batches (`stream.processor.KeptStates`): a state encoded for Redis goes on
exactly as its decoded copy would (`SeriesState.encode` rounds what it stores at a lower precision in the
state too), so a worker may push onto the copy it kept instead of decoding the bytes again, but only while
Redis holds exactly those bytes and no batch has pushed onto the object since. Without Redis: the
processor's stages are driven by hand, the loaded bytes given as Redis would give them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.bundle import load_bundle
from model.serving import Geometry, geometry_of, serve
from stream.metrics import Metrics
from stream.processor import KeptStates, Processor, RawEvent
from stream.scorer import Scorer
from stream.settings import AlertSettings, ScoringSettings
from stream.state import SeriesState
from stream.store import Loaded
from tests.stream_support import spike_bundle
from tests.unit.stream.test_novelty_state import novel
from tests.unit.stream.test_peeked_batches import _events, _Marks
from tests.unit.stream.test_state import fake_scores


def _shipped() -> Geometry:
    return geometry_of(load_bundle().manifest, 0)  # pointwise statistics, a calibration sketch


def _run(state: SeriesState, values: np.ndarray, start: int) -> list[tuple]:
    """Push `values` one chunk at a time from index `start`; the final points as plain tuples."""
    out = []
    for lo in range(0, len(values), 5):
        chunk = values[lo:lo + 5]
        step = state.push(list(range(start + lo, start + lo + len(chunk))), chunk)
        out += [(p.index, p.ts, p.values, p.score, p.n_windows, p.raw_score)
                for p in state.apply(step, fake_scores(step.windows))]
    return out


@pytest.mark.parametrize("geometry", [_shipped, novel], ids=["shipped", "novelty"])
def test_an_encoded_state_goes_on_exactly_as_its_decoded_copy(geometry: Any) -> None:
    g = geometry()
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=(700, 1)), axis=0) + 5.0 * (rng.random((700, 1)) > 0.98)
    kept = SeriesState(g, version="v1")
    _run(kept, values[:400], 0)
    blob = kept.encode()
    copy = SeriesState.decode(blob)
    # the same points onto the state that was encoded and onto its decoded copy: the same scores, bit for bit
    # (one process, the same operations in the same order), and the same bytes after
    assert _run(kept, values[400:], 400) == _run(copy, values[400:], 400)
    assert kept.encode() == copy.encode()


def test_the_cache_gives_a_state_once_and_only_for_its_own_bytes() -> None:
    g = novel()
    a, b, c = (SeriesState(g, version="v1") for _ in range(3))
    kept = KeptStates(2)
    kept.keep("a", b"A", a)
    assert kept.take("a", b"other") is None  # another writer's bytes: decoded, and the kept copy is gone
    assert kept.take("a", b"A") is None
    kept.keep("a", b"A", a)
    assert kept.take("a", b"A") is a and kept.take("a", b"A") is None  # handed out once
    kept.keep("a", b"A", a)
    kept.keep("b", b"B", b)
    kept.keep("c", b"C", c)  # the least recently kept goes
    assert len(kept) == 2 and kept.take("a", b"A") is None and kept.take("c", b"C") is c
    kept.drop("b")
    assert len(kept) == 0 and kept.counted() == (2, 4)
    none = KeptStates(0)
    none.keep("a", b"A", a)
    assert len(none) == 0


def _processor(bundle_dir: Path, cache: int) -> Processor:
    scorer = Scorer(serve(load_bundle(bundle_dir)))
    return Processor(None, scorer, _Marks(), ScoringSettings(state_cache=cache), AlertSettings(),  # type: ignore[arg-type]
                     Metrics(), "t")


async def _batch(p: Processor, events: list[RawEvent], stored: dict[str, bytes],
                 chained: dict | None = None) -> tuple[dict[str, tuple[bytes, list[bytes]]], dict]:
    """One batch loaded from `stored` (what Redis holds), optionally pushed onto `chained` states; its writes
    (series -> (state bytes, outbox entries)) and the states it hands over."""
    staged = p.parse(events)
    staged.loaded = {sid: Loaded(stored.get(sid), None) for sid in staged.groups}
    p.start(staged, chained or {})
    handed = await p.finish(staged)
    return {w.series_id: (w.blob, w.entries) for w in staged.writes}, handed


def _hits(p: Processor) -> dict[str, float]:
    return {r: p.metrics.state_cache.labels(r)._value.get() for r in ("hit", "miss")}


def test_a_kept_state_gives_what_decoding_the_stored_bytes_gives(tmp_path: Path) -> None:
    bundle_dir = spike_bundle(tmp_path / "b", window=8)
    rng = np.random.default_rng(0)
    batches = [_events({"a": range(i, i + 6), "b": range(i, i + 4)}, rng) for i in (0, 6, 12, 18)]

    async def applied(cache: int, interloper: bool) -> tuple[list, Processor]:
        """The batches one after the other, each loaded from what the previous one wrote. `interloper`:
        before the third batch, another worker writes series a (its state in Redis is not the kept one)."""
        p, other = _processor(bundle_dir, cache), _processor(bundle_dir, 0)
        stored: dict[str, bytes] = {}
        out = []
        for k, events in enumerate(batches):
            if interloper and k == 2:
                moved, _ = await _batch(other, _events({"a": range(12, 15)}, rng), {"a": stored["a"]})
                stored["a"] = moved["a"][0]
            written, _ = await _batch(p, events, stored)
            stored.update({sid: blob for sid, (blob, _) in written.items()})
            out.append(written)
        return out, p

    for interloper in (False, True):
        rng = np.random.default_rng(1)
        reference, _ = asyncio.run(applied(0, interloper))
        rng = np.random.default_rng(1)
        got, p = asyncio.run(applied(100, interloper))
        assert got == reference
        # batches 2-4 find a and b as kept, but for a after the other worker wrote it
        assert _hits(p) == ({"hit": 6, "miss": 0} if not interloper else {"hit": 5, "miss": 1})


def test_a_state_a_later_batch_pushed_onto_is_not_handed_out_again(tmp_path: Path) -> None:
    """Batch 2 pushes onto batch 1's states in memory (the pipeline's hand-over) and never finishes (say it
    was cancelled): batch 3, loading batch 1's bytes from Redis, must not get the object batch 2 changed."""
    bundle_dir = spike_bundle(tmp_path / "b", window=8)
    rng = np.random.default_rng(2)
    first, second, third = (_events({"a": range(i, i + 6)}, rng) for i in (0, 6, 12))

    async def run(p: Processor, chain: bool) -> dict[str, tuple[bytes, list[bytes]]]:
        written, handed = await _batch(p, first, {})
        stored = {"a": written["a"][0]}
        if chain:
            staged = p.parse(second)
            staged.loaded = {"a": Loaded(stored["a"], None)}
            p.start(staged, handed)  # pushed onto batch 1's state; no finish, no write
        got, _ = await _batch(p, third, stored)
        return got

    reference = asyncio.run(run(_processor(bundle_dir, 0), chain=False))
    p = _processor(bundle_dir, 100)
    assert asyncio.run(run(p, chain=True)) == reference
    assert _hits(p)["hit"] == 0 and _hits(p)["miss"] == 1
