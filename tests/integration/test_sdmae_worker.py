"""The self-distilled masked autoencoder from `anomalybert train --family sdmae` on labelled CSV (its labelled
anomalies feed the margin term) through `export` to a real worker (real broker and Redis): one score per point,
equal to the offline path, at the family's default lag (stride - 1: each point scored in the window where it
is among the hidden newest)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from evaluation.detect import Detector
from model.bundle import load_bundle
from tests.stream_support import Names, Worker, replay_series
from tools.cli import cli

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000


def test_sdmae_trains_on_labels_exports_and_is_served_by_a_real_worker(services: Any, tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(cli, ["generate", "-o", str(tmp_path / "data"), "-n", "600", "--seed", "1",
                               "-s", "point_anomaly", "-s", "noise_burst"])
    assert made.exit_code == 0, made.output
    trained = runner.invoke(cli, ["train", "--family", "sdmae", "--data", str(tmp_path / "data"), "--output",
                                  str(tmp_path / "s.pt"), "--window-size", "24", "--d-model", "16", "--n-heads", "2",
                                  "--d-ff", "32", "--n-layers", "1", "--set", "teacher_layers=2", "--set",
                                  "score_last=4", "--epochs", "1", "--no-progress"])
    assert trained.exit_code == 0, trained.output
    assert "(sdmae, threshold" in trained.output
    exported = runner.invoke(cli, ["export", "--model", str(tmp_path / "s.pt"), "--output", str(tmp_path / "b")])
    assert exported.exit_code == 0, exported.output
    bundle = tmp_path / "b"
    assert load_bundle(bundle).manifest.score_lag == 0  # the family's default lag at stride 1

    names = Names(uuid.uuid4().hex[:10], partitions=2)
    worker = Worker(names.env(services, bundle, ANOMALYBERT_WORKER__ID="sdmae"), tmp_path / "w.log").start()
    rng = np.random.default_rng(2)
    values = np.sin(np.arange(200) / 7) + rng.normal(0, 0.1, 200)
    values[150] += 6.0
    ts = [T0 + 1000 * i for i in range(len(values))]
    got = replay_series(services, names, worker, f"tank-{names.token}", ts, values)
    assert [m["ts"] for m in got] == ts, "one score per point, in order"
    np.testing.assert_allclose([m["score"] for m in got], Detector(bundle).score(values), atol=1e-5, rtol=0)
    assert all(0.0 <= m["score"] < 1.0 for m in got)
