"""`anomalybert evaluate` end to end on tiny CSVs in the seed's format (and on the dev data if present)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from model.errors import DataError
from tests.bundles import tiny_bundle
from tools.cli import cli

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("bundle") / "b")


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """Two CSV series with a labelled spike each, in the seed's format."""
    rng = np.random.default_rng(0)
    d = tmp_path / "seed"
    d.mkdir()
    for k, at in enumerate((250, 320)):
        v = np.sin(np.arange(400) / 6) + rng.normal(0, 0.1, 400)
        v[at:at + 8] += 5
        tag = np.zeros(400, dtype=int)
        tag[at:at + 8] = 1
        lines = ["timestamp,value,probability,anomaly_tag"]
        lines += [f"{1700000000000 + 60000 * i},{v[i]:.5f},{float(tag[i])},{tag[i]}" for i in range(400)]
        (d / f"series{k}.csv").write_text("\n".join(lines) + "\n")
    return d


def run(*args: str):
    return CliRunner().invoke(cli, ["evaluate", *args], catch_exceptions=True)


def run_seed(bundle_dir: Path, seed_dir: Path, out: Path, *args: str):
    return run("--model", str(bundle_dir), "--dataset", "seed", "--path", str(seed_dir),
               "--output", str(out), *args)


def test_help_documents_every_option() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for option in ("--model", "--dataset", "--path", "--score-lag", "--calibration", "--output", "--limit",
                   "--baselines / --no-baselines", "--eval-stride", "--max-seen", "--channel-reduce"):
        assert option in result.output


def test_evaluate_seed_csv_writes_tables_and_json(bundle_dir: Path, seed_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = run_seed(bundle_dir, seed_dir, out, "--score-lag", "0", "--score-lag", "15",
                      "--calibration", "none", "--calibration", "likelihood")
    assert result.exit_code == 0, result.output
    assert "VUS-PR" in result.output and "NAB score" in result.output and "random" in result.output
    report = json.loads(out.read_text())
    assert report["n_series"] == 2 and report["settings"]["score_lags"] == [0, 15]
    names = set(report["detectors"])
    assert {"anomalybert lag=0 cal=none", "anomalybert lag=15 cal=likelihood", "random", "windowed_gaussian",
            "iforest"} <= names
    wg = report["detectors"]["windowed_gaussian"]
    assert wg["summary"]["auc_roc"] > 0.9  # a 5-sigma spike
    assert set(wg["summary"]["pa_f1"]) == {"value", "random"}
    nab = report["detectors"]["anomalybert lag=0 cal=none"]["nab"]
    assert set(nab) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert nab["standard"]["fixed"]["threshold"] == report["bundle"]["threshold"]


def test_report_writes_the_served_models_metrics_and_plots(bundle_dir: Path, seed_dir: Path,
                                                            tmp_path: Path) -> None:
    result = run_seed(bundle_dir, seed_dir, tmp_path / "r.json", "--no-baselines", "--report", str(tmp_path / "rep"),
                      "--sweep", "--report-percentile", "90")
    assert result.exit_code == 0, result.output
    names = {p.name for p in (tmp_path / "rep").iterdir()}
    assert names == {"metrics.json", "threshold_sweep.csv", "metrics_best.json", "f1_vs_threshold.png",
                     "scores.png", "score_distribution.png", "roc.png", "precision_recall.png"}
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["detector"] == "anomalybert lag=15 cal=none" and "percentile 90" in m["threshold_source"]
    assert {"roc_auc", "pr_auc", "precision", "recall", "f1", "true_anomaly_ratio", "predicted_anomaly_ratio"} <= set(m)
    result = run_seed(bundle_dir, seed_dir, tmp_path / "r.json", "--sweep")
    assert result.exit_code == 2 and "--report" in result.output


def test_no_baselines_and_limit(bundle_dir: Path, seed_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = run_seed(bundle_dir, seed_dir, out, "--no-baselines", "--limit", "1")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_series"] == 1 and list(report["detectors"]) == ["anomalybert lag=15 cal=none"]


def test_stride_raises_the_lag(bundle_dir: Path, seed_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    result = run_seed(bundle_dir, seed_dir, out, "--no-baselines", "--eval-stride", "4", "--score-lag", "0")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["score_lags"] == [3]


def test_bad_input_is_a_clear_error(bundle_dir: Path, seed_dir: Path, tmp_path: Path) -> None:
    result = run("--model", str(bundle_dir), "--dataset", "nab", "--path", str(tmp_path / "absent"))
    assert isinstance(result.exception, DataError)
    result = run_seed(bundle_dir, seed_dir, tmp_path / "r.json", "--score-lag", "16")
    assert result.exit_code == 2 and "--score-lag" in result.output


@pytest.mark.skipif(not (SHARED / "nab").is_dir(), reason="../shared/data is not present")
def test_evaluate_on_five_real_nab_files(bundle_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "nab.json"
    result = run("--model", str(bundle_dir), "--dataset", "nab", "--path", str(SHARED / "nab"),
                 "--limit", "5", "--output", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    standard = report["detectors"]["windowed_gaussian"]["nab"]["standard"]
    assert standard["corpus_optimized"]["score"] >= standard["leave_one_file_out"]["score"]
    detections = report["detectors"]["windowed_gaussian"]["nab"]["standard"]["detections_at_corpus_optimized"]
    assert "artificialWithAnomaly/art_daily_flatmiddle.csv" in detections


def test_a_bundle_that_scores_only_its_newest_points_is_evaluated_at_most_that_far_apart(tmp_path: Path) -> None:
    """sdmae scores a window's last `score_last` points alone: SMD's default eval stride (16) would leave points
    unscored, so the default is capped there (an explicit --eval-stride is kept)."""
    import torch

    from model import families
    from model.families.checkpoint import Checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    torch.manual_seed(0)
    fam = families.get("sdmae")
    cfg = fam.config(window_size=16, channels=2, d_model=16, n_heads=2, enc_layers=1, teacher_layers=1, d_ff=32,
                     score_last=4)
    rng = np.random.default_rng(0)
    norm = Normalizer("zscore", "global").fit(rng.normal(size=(100, 2)))
    directory, _ = export_bundle(Checkpoint(fam.build(cfg).eval(), norm, threshold=0.5, family="sdmae",
                                            calibration={"score_lag": 0}), tmp_path / "b")
    smd = tmp_path / "smd"
    smd.mkdir()
    np.save(smd / "machine-1-1_train.npy", rng.normal(size=(200, 2)))
    np.save(smd / "machine-1-1_test.npy", rng.normal(size=(300, 2)))
    labels = np.zeros(300)
    labels[150:160] = 1
    np.save(smd / "machine-1-1_test_label.npy", labels)
    out = tmp_path / "r.json"
    result = run("--model", str(directory), "--dataset", "smd", "--path", str(smd), "--output", str(out),
                 "--no-baselines")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["eval_stride"] == 4
    result = run("--model", str(directory), "--dataset", "smd", "--path", str(smd), "--output", str(out),
                 "--no-baselines", "--eval-stride", "2")
    assert result.exit_code == 0 and json.loads(out.read_text())["settings"]["eval_stride"] == 2
