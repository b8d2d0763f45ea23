"""The transformer autoencoder, both named configurations, from `anomalybert train --family tae --config NAME`
on multichannel CSV through `export` to a real worker (`python -m stream worker`, real broker and Redis): one
score per point from `values` telemetry, equal to the offline path, with each point's top contributing
channels."""

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
CHANNELS = 4
TINY = ["--d-model", "16", "--n-heads", "2", "--d-ff", "32", "--window-size", "24", "--set", "enc_layers=1",
        "--set", "dec_layers=1", "--set", "latent_dim=8", "--epochs", "1", "--batch-size", "32",
        "--normalization", "zscore", "--scope", "global", "--no-progress"]


def _telemetry(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    return np.sin(t / (3 + np.arange(CHANNELS))[None, :]) + rng.normal(0, 0.1, (n, CHANNELS))


def _csv(path: Path, values: np.ndarray) -> Path:
    rows = "".join(f"{T0 + 1000 * i}," + ",".join(f"{x:.5f}" for x in v) + "\n" for i, v in enumerate(values))
    path.write_text("timestamp," + ",".join(f"value_{c}" for c in range(CHANNELS)) + "\n" + rows)
    return path


@pytest.mark.parametrize(("config", "stride", "lag"), [("robust", 4, 3), ("gan-cnn", 1, 0)])
def test_each_configuration_trains_exports_and_is_served_by_a_real_worker(services: Any, tmp_path: Path,
                                                                          config: str, stride: int, lag: int) -> None:
    data = _csv(tmp_path / "pump.csv", _telemetry(600, 0))
    runner = CliRunner()
    trained = runner.invoke(cli, ["train", "--family", "tae", "--config", config, "--data", str(data),
                                  "--output", str(tmp_path / "tae.pt"), "--stride", str(stride),
                                  "--score-lag", str(lag), *TINY])
    assert trained.exit_code == 0, trained.output
    assert "(tae, threshold" in trained.output and (tmp_path / "tae-report" / "losses.png").is_file()
    exported = runner.invoke(cli, ["export", "--model", str(tmp_path / "tae.pt"), "--output", str(tmp_path / "b")])
    assert exported.exit_code == 0, exported.output
    bundle = tmp_path / "b"
    manifest = load_bundle(bundle).manifest
    assert manifest.family == "tae" and manifest.model["adversary"] == ("cnn" if config == "gan-cnn" else "pooled")
    assert manifest.training_data["config_name"] == config

    names = Names(uuid.uuid4().hex[:10], partitions=2)
    worker = Worker(names.env(services, bundle, ANOMALYBERT_WORKER__ID=f"tae-{config}"), tmp_path / "w.log").start()
    values = _telemetry(200, 1)
    values[120:124, 2] += 6.0  # one sensor misbehaves
    ts = [T0 + 1000 * i for i in range(len(values))]
    final = len(ts) - lag  # the last `lag` points wait for windows that have not come
    sid = f"pump-{names.token}"
    got = replay_series(services, names, worker, sid, ts, values, expect=final)
    assert [m["ts"] for m in got] == ts[:final], "one score per point, in order"
    detector = Detector(bundle)
    np.testing.assert_allclose([m["score"] for m in got], detector.score(values, sid)[:final], atol=1e-5, rtol=0)
    offline = detector.contributions(values, sid)
    for i, m in enumerate(got):
        want = np.argsort(-offline[i], kind="stable")[:3]
        assert [c["channel"] for c in m["contrib"]] == [int(c) for c in want]
        np.testing.assert_allclose([c["share"] for c in m["contrib"]], offline[i][want], atol=1e-4)
    assert all(got[i]["contrib"][0]["channel"] == 2 for i in range(120, 124))
