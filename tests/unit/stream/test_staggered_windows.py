"""At a stride above 1 the worker staggers each series' windows by its id (`model.windows.series_phase`), so
that a fleet whose series started together does not complete every window on the same point: the processor
gives a new series the phase of its id and a stored state back the number a later swap takes its phase from.
Without Redis or a broker: the processor's stages are driven by hand."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np

from model.bundle import load_bundle
from model.serving import serve
from model.windows import series_phase, series_stagger, window_ends
from stream.metrics import Metrics
from stream.processor import Processor, RawEvent
from stream.scorer import Scorer
from stream.settings import AlertSettings, ScoringSettings
from stream.state import SeriesState
from stream.store import Loaded
from tests.stream_support import spike_bundle


class _Marks:
    def marks(self, series_id: str) -> str:
        return ""


def _events(sids: list[str], points: range) -> list[RawEvent]:
    out = []
    for i in points:  # point i of every series, then i + 1: a fleet in step
        for sid in sids:
            msg = {"series_id": sid, "ts": 1000 * (i + 1), "value": float(np.sin(i / 3))}
            out.append(RawEvent(sid.encode(), json.dumps(msg).encode(), "telemetry", 0, len(out)))
    return out


def test_each_series_windows_fall_at_the_phase_of_its_id(tmp_path: Path) -> None:
    stride, window = 4, 8
    bundle_dir = spike_bundle(tmp_path / "b", window=window)
    scorer = Scorer(serve(load_bundle(bundle_dir), stride=stride))
    sids = [f"pump-{i}" for i in range(12)]

    async def run() -> tuple[dict[str, SeriesState], dict[str, np.ndarray], dict[str, np.ndarray]]:
        # no decoded state kept: the second batch decodes what the first wrote, as another worker would
        p = Processor(None, scorer, _Marks(), ScoringSettings(state_cache=0), AlertSettings(), Metrics(),  # type: ignore[arg-type]
                      "t")
        first = p.parse(_events(sids, range(0, 20)))
        first.loaded = {sid: Loaded(None, None) for sid in first.groups}
        p.start(first, {})
        await p.finish(first)
        ends1 = {sid: s.step.ends for sid, s in first.series.items()}
        blobs = {w.series_id: w.blob for w in first.writes}
        second = p.parse(_events(sids, range(20, 30)))
        second.loaded = {sid: Loaded(blobs[sid], None) for sid in second.groups}
        p.start(second, {})
        await p.finish(second)
        return ({sid: s.state for sid, s in second.series.items()}, ends1,
                {sid: s.step.ends for sid, s in second.series.items()})

    states, ends1, ends2 = asyncio.run(run())
    phases = {sid: series_phase(sid, stride) for sid in sids}
    assert len(set(phases.values())) > 1  # these ids do not all fall on one phase
    for sid in sids:
        whole = window_ends(30, window, stride, phases[sid])
        assert ends1[sid].tolist() == whole[whole < 20].tolist()
        assert ends2[sid].tolist() == whole[whole >= 20].tolist()
        assert states[sid].phase == phases[sid] and states[sid].stagger == series_stagger(sid)
