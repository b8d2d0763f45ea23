"""The pipeline's peek (`stream.pipeline`): batch N+1's windows are queued from batch N's states before N's scores
are in, and N+1's points pushed once N has applied them (`Processor.start` with `ahead`, then `settle`). Without
Redis or a broker: the processor's stages are driven by hand, in the pipeline's order, and compared with the
same batches applied one after the other."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from model.bundle import load_bundle
from model.serving import serve
from stream.metrics import Metrics
from stream.processor import Chained, Processor, RawEvent
from stream.scorer import Scorer
from stream.settings import AlertSettings, ScoringSettings
from stream.store import Loaded
from tests.stream_support import spike_bundle


class _Marks:
    def marks(self, series_id: str) -> str:
        return ""


def _processor(bundle_dir: Path) -> Processor:
    scorer = Scorer(serve(load_bundle(bundle_dir)))
    return Processor(None, scorer, _Marks(), ScoringSettings(), AlertSettings(), Metrics(), "t")  # type: ignore[arg-type]


def _events(points: dict[str, range], rng: np.random.Generator) -> list[RawEvent]:
    out = []
    for i in range(max(len(r) for r in points.values())):
        for sid, r in points.items():
            if i < len(r):
                value = float(rng.normal() + (6.0 if r[i] % 13 == 0 else 0.0))
                msg = {"series_id": sid, "ts": 1000 * (r[i] + 1), "value": value}
                out.append(RawEvent(sid.encode(), json.dumps(msg).encode(), "telemetry", 0, len(out)))
    return out


def _written(staged: Any) -> dict[str, tuple[bytes, list[bytes]]]:
    return {w.series_id: (w.blob, w.entries) for w in staged.writes}


def test_a_peeked_batch_gives_what_one_batch_after_the_other_gives(tmp_path: Path) -> None:
    bundle_dir = spike_bundle(tmp_path / "b", window=8)
    rng = np.random.default_rng(0)
    first = _events({"a": range(0, 12), "b": range(0, 12), "c": range(0, 5)}, rng)
    second = _events({"a": range(12, 20), "b": range(12, 15), "c": range(5, 11), "d": range(0, 9)}, rng)

    async def one_after_the_other() -> tuple[Any, Any]:
        p = _processor(bundle_dir)
        n = p.parse(first)
        n.loaded = {sid: Loaded(None, None) for sid in n.groups}
        p.start(n, {})
        chained = await p.finish(n)
        m = p.parse(second)
        m.loaded = {sid: Loaded(None, None) for sid in m.groups}
        p.start(m, chained)
        await p.finish(m)
        return n, m

    async def peeked(drop: set[str]) -> tuple[Any, Any]:
        p = _processor(bundle_dir)
        n = p.parse(first)
        n.loaded = {sid: Loaded(None, None) for sid in n.groups}
        p.start(n, {})
        m = p.parse(second)
        # batch N+1 starts before N's scores are in: its windows of a, b and c are peeked from N's states
        m.loaded = {sid: Loaded(None, None) for sid in m.groups}
        p.start(m, {}, {sid: s.state for sid, s in n.series.items() if s.state is not None})
        assert {sid for sid, s in m.series.items() if s.peeked is not None} == {"a", "b", "c"}
        chained: dict[str, Chained] = await p.finish(n)
        # `drop`: series N did not hand over (as if it had not written them): their push starts from what
        # Redis holds (nothing here), differs from the peek, and is scored again
        p.settle(m, {sid: c for sid, c in chained.items() if sid not in drop})
        await p.finish(m)
        return n, m

    n_ref, m_ref = asyncio.run(one_after_the_other())
    n_got, m_got = asyncio.run(peeked(set()))
    assert _written(n_got) == _written(n_ref)
    assert _written(m_got) == _written(m_ref)
    assert len(m_got.inference) == 1  # every window in one call, queued before N's scores were in
    # b's state is not handed over: it starts anew from its 3 points (no window yet), a's from its 8 (one)
    n_got, m_got = asyncio.run(peeked({"a", "b"}))
    written = _written(m_got)
    assert written["c"] == _written(m_ref)["c"] and written["d"] == _written(m_ref)["d"]
    assert len(m_got.inference) == 2 and [sid for sid, _ in m_got.inference[1][0]] == ["a"]
    assert written["b"][1] == [] and len(m_got.series["b"].step.windows) == 0
    lag = m_got.served.geometry.lag  # the bundle's default, W - 1: its first window makes W - lag points final
    assert len(m_got.series["a"].step.windows) == 1 and len(written["a"][1]) == 8 - lag
