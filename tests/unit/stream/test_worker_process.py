"""The worker process's interpreter settings (`stream.cli.run_worker`): the model thread gets the GIL within a
millisecond, and the start-up heap is out of the collector's full passes, which come ten times less often
(docs/benchmark.md, "Decoded states kept, the model thread and the GIL, a third batch in flight")."""

from __future__ import annotations

import gc
import sys
from types import SimpleNamespace
from typing import Any

import faust
import pytest

import stream.app
from stream.cli import GC_THRESHOLDS, GIL_SWITCH_S, run_worker


def test_the_worker_process_hands_the_gil_over_quickly_and_freezes_its_start_up_heap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Worker:
        def __init__(self, app: Any, **kwargs: Any) -> None:
            seen["app"] = app

        def execute_from_commandline(self) -> None:  # where faust's loop would start: the settings in force
            seen["switch"] = sys.getswitchinterval()
            seen["thresholds"] = gc.get_threshold()
            seen["frozen"] = gc.get_freeze_count()

    monkeypatch.setattr(stream.app, "startup_checks", lambda settings: "checked")
    monkeypatch.setattr(stream.app, "build_app", lambda settings, checked: ("app", None))
    monkeypatch.setattr(faust, "Worker", Worker)
    switch, thresholds = sys.getswitchinterval(), gc.get_threshold()
    try:
        run_worker(SimpleNamespace(worker=SimpleNamespace(log_level="WARNING")))
    finally:
        gc.unfreeze()
        sys.setswitchinterval(switch)
        gc.set_threshold(*thresholds)
    assert seen["app"] == "app"
    assert seen["switch"] == pytest.approx(GIL_SWITCH_S) and GIL_SWITCH_S < switch
    assert seen["thresholds"] == GC_THRESHOLDS and GC_THRESHOLDS[2] > thresholds[2]
    assert seen["frozen"] > 10_000  # the libraries and the app, at least
