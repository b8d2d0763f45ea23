"""A second model family, defined in `tests/families/tiny_ae.py`, through every stage: trained and exported by
the CLI, served by a real worker (`python -m stream worker`, real broker and Redis) and evaluated, with no
line of `stream/`, `model/` or `training/` knowing about it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from evaluation.detect import Detector
from model.bundle import load_bundle
from model.families.checkpoint import load_checkpoint
from tests.families.tiny_ae import NAME, TinyAE
from tests.stream_support import ROOT, Names, Worker, replay_series
from tools.cli import cli

pytestmark = pytest.mark.integration

T0 = 1_732_600_000_000


def _series(n: int, seed: int, spike_at: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    v = np.sin(np.arange(n) / 4) + rng.normal(0, 0.1, n)
    tag = np.zeros(n, dtype=int)
    v[spike_at:spike_at + 4] += 6.0
    tag[spike_at:spike_at + 4] = 1
    return v, tag


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-ae")
    data = root / "data"
    data.mkdir()
    for k, at in enumerate((300, 420, 510)):
        v, tag = _series(600, k, at)
        lines = ["timestamp,value,probability,anomaly_tag"]
        lines += [f"{T0 + 60000 * i},{v[i]:.5f},{float(tag[i])},{tag[i]}" for i in range(len(v))]
        (data / f"s{k}.csv").write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    ckpt, bundle = root / "ae.pt", root / "bundle"
    result = runner.invoke(cli, ["train", "--family", NAME, "--data", str(data), "--output", str(ckpt),
                                 "--epochs", "3", "--window-size", "16", "--set", "hidden=6",
                                 "--normalization", "zscore", "--scope", "window", "--score-lag", "0",
                                 "--threshold-beta", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"({NAME}, threshold" in result.output
    result = runner.invoke(cli, ["export", "--model", str(ckpt), "--output", str(bundle)])
    assert result.exit_code == 0, result.output
    return {"data": data, "checkpoint": ckpt, "bundle": bundle}


def test_the_checkpoint_and_the_bundle_record_the_family(trained: dict[str, Path]) -> None:
    ckpt = load_checkpoint(trained["checkpoint"])
    assert ckpt.family == NAME and isinstance(ckpt.model, TinyAE) and ckpt.config.hidden == 6
    m = load_bundle(trained["bundle"]).manifest
    assert m.family == NAME and m.model == ckpt.config.to_dict()
    assert (m.window_size, m.stride, m.channels, m.input_channels, m.score_lag) == (16, 1, 1, 1, 0)
    # Trained on the windows alone, it still ranks the labelled spikes above the rest.
    assert ckpt.metrics["val_roc_auc"] is None or ckpt.metrics["val_roc_auc"] > 0.5


def test_a_process_that_never_imported_the_family_cannot_name_it() -> None:
    """The worker below runs in such a process: what it serves comes from the bundle alone."""
    code = ("import sys; from model import families\n"
            "try:\n    families.get('tiny-ae')\nexcept ValueError as e:\n    print('unknown:', e)\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "unknown: unknown model family 'tiny-ae'" in out.stdout and out.stdout.strip().endswith("False")


def test_a_real_worker_serves_it_as_detect_scores_it(services: Any, trained: dict[str, Path],
                                                      tmp_path: Path) -> None:
    names = Names(uuid.uuid4().hex[:10], partitions=2)
    worker = Worker(names.env(services, trained["bundle"], ANOMALYBERT_WORKER__ID="ae"), tmp_path / "w.log").start()
    values, _ = _series(200, 7, 120)
    ts = [T0 + 1000 * i for i in range(len(values))]
    got = replay_series(services, names, worker, f"ae-{names.token}", ts, values)
    assert [m["ts"] for m in got] == ts, "one score per point, in order (score_lag 0 from the manifest)"
    expected = Detector(trained["bundle"]).score(values)
    np.testing.assert_allclose([m["score"] for m in got], expected, atol=1e-5, rtol=0)
    assert {m["model_version"] for m in got} == {load_bundle(trained["bundle"]).version}
    assert int(np.argmax(expected)) in range(118, 126)  # the spike scores highest


def test_evaluate_scores_it_on_labelled_data(trained: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = CliRunner().invoke(cli, ["evaluate", "--model", str(trained["bundle"]), "--dataset", "seed",
                                      "--path", str(trained["data"]), "--no-baselines", "--output", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["bundle"]["family"] == NAME and report["settings"]["score_lags"] == [0]
    (summary,) = [d["summary"] for d in report["detectors"].values()]
    assert summary["auc_roc"] > 0.7  # the spikes stand out of a sine
