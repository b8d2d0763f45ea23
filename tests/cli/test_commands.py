"""Every offline command end to end on small data, through the real entry point (`main`)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
TINY_ARGS = ["--n-layers", "1", "--d-model", "16", "--n-heads", "2", "--d-ff", "32", "--window-size", "16"]


Run = Callable[[list[str]], tuple[int, str, str]]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `anomalybert ARGS` in-process through `main`: (exit code, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["anomalybert", *args])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated data, a trained tiny checkpoint and its exported bundle, shared by the tests below."""
    d = tmp_path_factory.mktemp("cli")
    mp = pytest.MonkeyPatch()
    try:
        for args in (["generate", "-o", str(d / "data"), "-n", "160", "--seed", "3"],
                     ["train", "--data", str(d / "data"), "--output", str(d / "m.pt"), "--epochs", "2",
                      "--no-progress", *TINY_ARGS],
                     ["export", "--model", str(d / "m.pt"), "--output", str(d / "bundle")]):
            mp.setattr(sys, "argv", ["anomalybert", *args])
            main()
    finally:
        mp.undo()
    return d


def test_generate_writes_all_scenarios_reproducibly(tmp_path: Path, cli: Run) -> None:
    code, out, _ = cli(["generate", "-o", str(tmp_path / "a"), "-n", "100", "--seed", "9"])
    assert code == 0 and "wrote 8 file(s)" in out and "seed 9" in out
    files = sorted((tmp_path / "a").glob("*.csv"))
    assert len(files) == 8
    assert list(pd.read_csv(files[0]).columns) == ["timestamp", "value", "probability", "anomaly_tag"]
    cli(["generate", "-o", str(tmp_path / "b"), "-n", "100", "--seed", "9", "-s", "noise_burst"])
    assert [f.name for f in (tmp_path / "b").iterdir()] == ["noise_burst.csv"]
    one, same = tmp_path / "b" / "noise_burst.csv", tmp_path / "a" / "noise_burst.csv"
    assert one.read_bytes() == same.read_bytes()
    code, out, _ = cli(["generate", "-o", str(tmp_path / "c"), "-n", "100"])
    assert code == 0 and "(seed " in out


def test_train_reports_each_epoch_and_saves(workdir: Path, tmp_path: Path, cli: Run) -> None:
    data = str(workdir / "data" / "point_anomaly.csv")
    code, out, _ = cli(["train", "-d", data, "-o", str(tmp_path / "x.pt"),
                        "-e", "2", "--no-progress", "--normalization", "zscore", "--scope", "global",
                        "--seed", "4", *TINY_ARGS])
    assert code == 0, out
    assert out.count("train_loss") == 2 and "val_roc_auc" in out and "saved" in out
    from model.families.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "x.pt")
    assert ckpt.normalizer.kind == "zscore" and ckpt.normalizer.scope == "global"
    assert ckpt.training_data["settings"]["seed"] == 4
    code, out, _ = cli(["train", "-d", data, "-o", str(tmp_path / "lag.pt"), "-e", "1", "--no-progress",
                        "--score-lag", "3", *TINY_ARGS])
    assert code == 0, out
    assert load_checkpoint(tmp_path / "lag.pt").calibration["score_lag"] == 3
    code, _, err = cli(["train", "-d", data, "-o", str(tmp_path / "bad.pt"), "--score-lag", "999", *TINY_ARGS])
    assert code == 2 and "--score-lag" in err


def test_finetune_from_checkpoint(workdir: Path, tmp_path: Path, cli: Run) -> None:
    args = ["train", "-d", str(workdir / "data"), "-o", str(tmp_path / "ft.pt"), "-e", "1", "--no-progress",
            "--finetune", str(workdir / "m.pt")]
    code, out, _ = cli(args)
    assert code == 0 and "saved" in out
    code, _, err = cli([*args, "--d-model", "32"])
    assert code == 2 and "keeps the checkpoint's architecture" in err


def test_export_to_model_onnx_path(workdir: Path, tmp_path: Path, cli: Run) -> None:
    code, out, _ = cli(["export", "-m", str(workdir / "m.pt"), "-o", str(tmp_path / "b" / "model.onnx")])
    assert code == 0 and "max |diff|" in out
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["window_size"] == 16 and manifest["calibration"]["method"] == "best_fbeta_validation"
    code, _, err = cli(["export", "-m", str(workdir / "m.pt"), "-o", str(tmp_path / "x.onnx")])
    assert code == 2 and "model.onnx" in err


def test_detect_gives_the_same_top_n_with_checkpoint_and_bundle(workdir: Path, cli: Run) -> None:
    data = str(workdir / "data" / "point_anomaly.csv")
    results = []
    for model in (workdir / "m.pt", workdir / "bundle", workdir / "bundle" / "model.onnx"):
        code, out, err = cli(["detect", "-m", str(model), "-i", data, "-n", "5", "--format", "json"])
        assert code == 0, err
        results.append(json.loads(out))
    assert len(results[0]) == 5
    for other in results[1:]:
        assert [r["timestamp"] for r in other] == [r["timestamp"] for r in results[0]]
        assert [r["score"] for r in other] == pytest.approx([r["score"] for r in results[0]], abs=1e-5)


def test_detect_formats_and_output_file(workdir: Path, tmp_path: Path, cli: Run) -> None:
    data = str(workdir / "data" / "flat_signal.csv")
    base = ["detect", "-m", str(workdir / "bundle"), "-i", data, "-n", "3"]
    code, out, _ = cli(base)
    assert code == 0 and "Top 3 anomalies" in out and "2026-01-01" in out
    code, out, _ = cli([*base, "--format", "csv", "--score-lag", "0"])
    lines = out.strip().splitlines()
    assert lines[0] == "timestamp,value,score" and len(lines) == 4
    code, out, _ = cli([*base, "--format", "json", "--output", str(tmp_path / "r.json")])
    assert code == 0 and out == "" and len(json.loads((tmp_path / "r.json").read_text())) == 3
    code, _, err = cli([*base, "--score-lag", "16"])
    assert code == 2 and "score_lag" in err
    code, out, _ = cli(["detect", "-i", data, "-n", "2", "--format", "json"])  # the shipped default bundle
    assert code == 0 and len(json.loads(out)) == 2


@pytest.mark.parametrize(("text", "message"), [
    ("time,val\n1,2\n", "missing column(s) timestamp, value"),
    ("timestamp,value\n" + "".join(f"{i},{i}\n" for i in range(30)) + "30,oops\n", "non-numeric"),
    ("timestamp,value\n1,1\n2,2\n", "shorter than the model's window of 16"),
])
@pytest.mark.parametrize("model", ["m.pt", "bundle"])
def test_detect_bad_input_is_one_line_and_exit_2(workdir: Path, tmp_path: Path, text: str, message: str,
                                                 model: str, cli: Run) -> None:
    (tmp_path / "in.csv").write_text(text)
    code, out, err = cli(["detect", "-m", str(workdir / model), "-i", str(tmp_path / "in.csv")])
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_missing_or_corrupt_models_are_one_line_errors(workdir: Path, tmp_path: Path, cli: Run) -> None:
    data = str(workdir / "data" / "trend_shift.csv")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in ("model.onnx", "manifest.json"):
        (bad / f).write_bytes((workdir / "bundle" / f).read_bytes())
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes()[:-10])
    cases = [(tmp_path / "absent.pt", "checkpoint not found"), (tmp_path / "absent", "no model.onnx found"),
             (tmp_path / "junk.pt", "not a valid checkpoint"), (bad, "sha256 mismatch")]
    for model, message in cases:
        code, _, err = cli(["detect", "-m", str(model), "-i", data])
        assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    code, _, err = cli(["export", "-m", str(tmp_path / "junk.pt"), "-o", str(tmp_path / "o")])
    assert code == 2 and "not a valid" in err


def test_train_bad_input(tmp_path: Path, cli: Run) -> None:
    (tmp_path / "nolabels.csv").write_text("timestamp,value\n" + "".join(f"{i},{i}\n" for i in range(40)))
    out = str(tmp_path / "m.pt")
    code, _, err = cli(["train", "-d", str(tmp_path / "nolabels.csv"), "-o", out, *TINY_ARGS])
    assert code == 2 and "needs a 'probability' column" in err
    code, _, err = cli(["train", "-d", str(tmp_path / "absent"), "-o", str(tmp_path / "m.pt")])
    assert code == 2 and "no such file or directory" in err
    code, _, err = cli(["train", "-d", str(tmp_path), "-o", str(tmp_path / "m.pt"), "--d-model", "30"])
    assert code == 2 and "divisible" in err


def test_console_script_help_is_complete_and_light() -> None:
    exe = Path(sys.executable).with_name("anomalybert")
    for cmd in ([], ["generate"], ["train"], ["detect"], ["export"]):
        out = subprocess.run([str(exe), *cmd, "--help"], check=True, capture_output=True, text=True).stdout
        assert "Usage: anomalybert" in out
    probe = "import sys, training.commands; assert not {'torch', 'pandas'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=ROOT)


def test_train_series_scope_then_calibrate_at_another_lag(workdir: Path, tmp_path: Path, cli: Run) -> None:
    import torch

    from model.families.checkpoint import load_checkpoint
    from training.calibrate import best_fbeta_threshold
    from training.train import holdout_scores, prepare

    data = str(workdir / "data")
    code, out, _ = cli(["train", "-d", data, "-o", str(tmp_path / "s.pt"), "-e", "1", "--no-progress",
                        "--scope", "series", "--halflife", "50", "--window-features", "--score-lag", "15",
                        *TINY_ARGS])
    assert code == 0, out
    ckpt = load_checkpoint(tmp_path / "s.pt")
    assert ckpt.normalizer.to_dict() == {"kind": "zscore", "scope": "series", "offset": [], "scale": [],
                                         "halflife": 50.0}
    assert ckpt.config.window_features and ckpt.calibration["beta"] == 0.25
    code, out, _ = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--score-lag", "0",
                        "--threshold-beta", "1", "-o", str(tmp_path / "s0.pt")])
    assert code == 0 and "at score_lag 0" in out, out
    again = load_checkpoint(tmp_path / "s0.pt")
    from evaluation.series import load_series

    holdouts = prepare(load_series(Path(data), labels=True), ckpt.config, ckpt.normalizer, 0.2).holdouts
    from evaluation.detect import TorchScorer

    scores, _, label = holdout_scores(TorchScorer(ckpt), holdouts, ckpt.config, 0)
    assert again.threshold == best_fbeta_threshold(scores, label, 1.0)[0]
    assert again.calibration["score_lag"] == 0 and again.calibration["recalibrated"]["previous_threshold"] == \
        ckpt.threshold
    code, _, err = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--score-lag", "99",
                        "-o", str(tmp_path / "bad.pt")])
    assert code == 2 and "--score-lag" in err
    code, _, err = cli(["train", "-d", data, "-o", str(tmp_path / "x.pt"), "--scope", "series",
                        "--normalization", "minmax", *TINY_ARGS])
    assert code == 2 and "zscore" in err
    # The blend reads inputs as z-scores against the series' history: refused for a per-window scope.
    code, _, err = cli(["train", "-d", data, "-o", str(tmp_path / "y.pt"), "--deviation-blend", "0.5",
                        *TINY_ARGS])
    assert code == 2 and "series normalization scope" in err
    # A deviation blend on the trained weights: stored in the config, the threshold chosen on the blend.
    code, out, _ = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--score-lag", "0",
                        "--deviation-blend", "0.5", "--deviation-scale", "3", "-o", str(tmp_path / "b.pt")])
    assert code == 0 and "deviation blend 0.5" in out, out
    blended = load_checkpoint(tmp_path / "b.pt")
    assert (blended.config.deviation_blend, blended.config.deviation_scale) == (0.5, 3.0)
    for k, v in ckpt.model.state_dict().items():
        assert torch.equal(blended.model.state_dict()[k], v)
    scores, _, label = holdout_scores(TorchScorer(blended), holdouts, blended.config, 0)
    assert blended.threshold == best_fbeta_threshold(scores, label, 0.25)[0] != again.threshold
    # The deviation measured against its own long plain statistics, and an alert budget on normal points.
    code, out, _ = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--score-lag", "0",
                        "--deviation-blend", "0.7", "--deviation-scale", "8", "--deviation-halflife", "500",
                        "--max-normal-rate", "0.01", "-o", str(tmp_path / "d.pt")])
    assert code == 0 and "half-life 500" in out and "normal_rate_validation" in out, out
    dev = load_checkpoint(tmp_path / "d.pt")
    assert dev.normalizer.deviation_halflife == 500.0 and dev.normalizer.halflife == 50.0
    dev_holdouts = prepare(load_series(Path(data), labels=True), dev.config, dev.normalizer, 0.2).holdouts
    scores, _, label = holdout_scores(TorchScorer(dev), dev_holdouts, dev.config, 0)
    from training.calibrate import normal_rate_threshold

    assert dev.threshold == normal_rate_threshold(scores, label, 0.01)[0]
    assert np.mean(scores[label == 0] >= dev.threshold) <= 0.01
    code, _, err = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--deviation-halflife", "0.5",
                        "-o", str(tmp_path / "bad.pt")])
    assert code == 2 and "--deviation-halflife" in err


def test_calibrate_per_series_tail_then_export_serves_the_calibration(workdir: Path, tmp_path: Path,
                                                                     cli: Run) -> None:
    from evaluation.detect import Detector
    from evaluation.series import load_csv
    from model.bundle import load_bundle
    from model.families.checkpoint import load_checkpoint
    from model.surprise import surprise_of

    data = str(workdir / "data")
    code, out, _ = cli(["calibrate", "-m", str(workdir / "m.pt"), "-d", data, "--score-lag", "0",
                        "--per-series", "tail", "--tail-probability", "0.01", "-o", str(tmp_path / "t.pt")])
    assert code == 0 and "per-series tail calibration (rarer than 0.01)" in out, out
    ckpt = load_checkpoint(tmp_path / "t.pt")
    assert ckpt.threshold == pytest.approx(surprise_of(0.01)) == pytest.approx(2 / 6)
    assert ckpt.calibration["per_series"] == {"method": "tail", "halflife": 5000.0, "min_history": 200,
                                              "novelty": None}
    code, out, _ = cli(["export", "-m", str(tmp_path / "t.pt"), "-o", str(tmp_path / "tb")])
    assert code == 0, out
    bundle = load_bundle(tmp_path / "tb")
    per = bundle.manifest.calibration.per_series
    assert per is not None and (per.method, per.halflife, per.min_history) == ("tail", 5000.0, 200)
    assert "per_series" not in bundle.manifest.calibration.details
    # detect serves what the worker publishes: the raw scores through the per-series sketch
    det = Detector(tmp_path / "tb")
    values = load_csv(next(iter(sorted((workdir / "data").glob("*.csv"))))).values
    raw, served = det.raw_score(values), det.score(values)
    assert (served[:200] == 0).all() and np.all((served >= 0) & (served <= 1))
    np.testing.assert_allclose(served, det.score(values))  # a new sketch per call: the same scores
    assert not np.allclose(raw, served)
    # the checkpoint itself is scored the same way, before it is exported
    np.testing.assert_allclose(Detector(tmp_path / "t.pt").score(values), served, atol=1e-5)
    # back to raw scores; an alert budget on normal points does not apply to a per-series calibration
    code, _, err = cli(["calibrate", "-m", str(tmp_path / "t.pt"), "-d", data, "--max-normal-rate", "0.01",
                        "-o", str(tmp_path / "bad.pt")])
    assert code == 2 and "--max-normal-rate" in err, err
    code, out, _ = cli(["calibrate", "-m", str(tmp_path / "t.pt"), "-d", data, "--per-series", "none",
                        "-o", str(tmp_path / "r.pt")])
    assert code == 0 and "per_series" not in load_checkpoint(tmp_path / "r.pt").calibration, out


def test_calibrate_with_novelty_then_export_serves_it(workdir: Path, tmp_path: Path, cli: Run) -> None:
    from evaluation.detect import Detector
    from model.bundle import load_bundle
    from model.serving import serve
    from tests.unit.model.test_novelty import heartbeat

    data = str(workdir / "data")
    code, out, _ = cli(["train", "-d", data, "-o", str(tmp_path / "s.pt"), "-e", "1", "--no-progress",
                        "--scope", "series", "--halflife", "50", "--score-lag", "0", *TINY_ARGS])
    assert code == 0, out
    code, out, _ = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--score-lag", "0",
                        "--per-series", "tail", "--tail-probability", "0.01", "--novelty", "16/128",
                        "-o", str(tmp_path / "n.pt")])
    assert code == 0 and "with shape novelty 16/128 (rarity 1)" in out, out
    code, out, _ = cli(["export", "-m", str(tmp_path / "n.pt"), "-o", str(tmp_path / "nb")])
    assert code == 0, out
    bundle = load_bundle(tmp_path / "nb")
    novelty = bundle.manifest.calibration.per_series.novelty
    assert novelty is not None and (novelty.length, novelty.history) == (16, 128)
    assert serve(bundle).geometry.novel
    values = heartbeat(1200, period=20, odd_at=1000) * 5.0 + 50.0  # past min_history, one odd beat
    served = Detector(tmp_path / "nb").score(values)
    np.testing.assert_allclose(Detector(tmp_path / "n.pt").score(values), served, atol=1e-5)
    # without the novelty (the same weights and threshold) no score is higher: it only adds
    code, _, _ = cli(["calibrate", "-m", str(tmp_path / "n.pt"), "-d", data, "--score-lag", "0",
                      "--novelty", "none", "-o", str(tmp_path / "p.pt")])
    plain = Detector(tmp_path / "p.pt").score(values)
    assert code == 0 and (served >= plain - 1e-5).all() and (served > plain + 1e-3).any()
    # one-line errors: a bad LENGTH/HISTORY, a per-window model, no per-series calibration
    code, _, err = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--per-series", "tail",
                        "--novelty", "16/20", "-o", str(tmp_path / "bad.pt")])
    assert code == 2 and "--novelty" in err and "HISTORY >= 2 * LENGTH" in err, err
    code, out, _ = cli(["calibrate", "-m", str(tmp_path / "n.pt"), "-d", data, "--score-lag", "0",
                        "--per-series", "tail", "--novelty", "16/128/4", "-o", str(tmp_path / "n4.pt")])
    assert code == 0 and "(rarity 4)" in out, out
    code, _, err = cli(["calibrate", "-m", str(workdir / "m.pt"), "-d", data, "--per-series", "tail",
                        "--novelty", "16/128", "-o", str(tmp_path / "bad.pt")])
    assert code == 2 and "--novelty" in err and "series-scope" in err, err
    code, _, err = cli(["calibrate", "-m", str(tmp_path / "s.pt"), "-d", data, "--novelty", "16/128",
                        "-o", str(tmp_path / "bad.pt")])
    assert code == 2 and "--novelty" in err and "per-series calibration" in err, err


def test_anomaly_transformer_trains_exports_and_scores_as_its_checkpoint(workdir: Path, tmp_path: Path,
                                                                         cli: Run) -> None:
    from evaluation.detect import Detector
    from evaluation.series import load_csv
    from model.bundle import load_bundle
    from model.families.checkpoint import load_checkpoint

    data = str(workdir / "data")
    code, out, _ = cli(["train", "--family", "anomaly-transformer", "-d", data, "-o", str(tmp_path / "at.pt"),
                        "--epochs", "1", "--no-progress", "--win-size", "16", "--d-model", "16", "--n-heads", "2",
                        "--d-ff", "32", "--e-layers", "1", "--batch-size", "32", "--lr", "1e-4",
                        "--set", "score=plain", "--score-lag", "0"])
    assert code == 0 and "(anomaly-transformer, threshold" in out, out
    assert load_checkpoint(tmp_path / "at.pt").config.e_layers == 1  # --e-layers: the reference's name
    code, out, _ = cli(["export", "-m", str(tmp_path / "at.pt"), "-o", str(tmp_path / "atb")])
    assert code == 0, out
    bundle = load_bundle(tmp_path / "atb")
    assert bundle.manifest.family == "anomaly-transformer" and bundle.manifest.model["score"] == "plain"
    values = load_csv(next(iter(sorted((workdir / "data").glob("*.csv"))))).values
    served = Detector(tmp_path / "atb").score(values)
    np.testing.assert_allclose(Detector(tmp_path / "at.pt").score(values), served, atol=1e-5)
    assert np.all((served >= 0) & (served < 1))
    code, _, err = cli(["train", "--family", "anomaly-transformer", "-d", data, "-o", str(tmp_path / "x.pt"),
                        "--patch-size", "2", "--no-progress"])
    assert code == 2 and "unknown" in err, err


def test_anomaly_transformer_trains_on_a_sets_normal_splits_with_a_percentile_threshold(tmp_path: Path,
                                                                                        cli: Run) -> None:
    """`train --dataset smd`: the machines' train splits (all their channels), no labels, the threshold the
    99th percentile of the training and validation points' scores; the test splits are never read."""
    from evaluation.detect import TorchScorer, score_series
    from model.families.checkpoint import load_checkpoint

    smd = tmp_path / "smd"
    smd.mkdir()
    rng = np.random.default_rng(0)
    for m in ("machine-1-1", "machine-1-2"):
        t = np.arange(400)[:, None]
        np.save(smd / f"{m}_train.npy", np.sin(t / (5 + np.arange(3))) + rng.normal(0, 0.05, (400, 3)))
        np.save(smd / f"{m}_test.npy", np.full((50, 3), 1e6))  # never trained on
        np.save(smd / f"{m}_test_label.npy", np.zeros(50))
    code, out, _ = cli(["train", "--family", "anomaly-transformer", "--dataset", "smd", "--path", str(smd),
                        "--max-points", "300", "-o", str(tmp_path / "at.pt"), "-e", "1", "--no-progress",
                        "--window-size", "16", "--d-model", "16", "--n-heads", "2", "--d-ff", "32",
                        "--set", "e_layers=1", "--score-lag", "0", "--normalization", "zscore", "--scope", "global"])
    assert code == 0, out
    ckpt = load_checkpoint(tmp_path / "at.pt")
    assert ckpt.config.channels == 3 and ckpt.training_data["n_points"] == 600
    cal = ckpt.calibration
    assert cal["method"] == "percentile_train_val" and cal["percentile"] == 99.0 and cal["n_points"] == 600
    scorer = TorchScorer(ckpt)
    scores = np.concatenate([score_series(scorer, np.load(smd / f"{m}_train.npy")[-300:], 16, 1, 0)
                             for m in ("machine-1-1", "machine-1-2")])
    assert ckpt.threshold == pytest.approx(float(np.percentile(scores, 99)), rel=1e-5)
    code, _, err = cli(["train", "--dataset", "smd", "--path", str(smd), "-o", str(tmp_path / "x.pt")])
    assert code == 2 and "unsupervised" in err, err
    code, _, err = cli(["train", "--family", "anomaly-transformer", "-o", str(tmp_path / "x.pt")])
    assert code == 2 and "--dataset with --path" in err, err


def test_a_named_configuration_sets_the_model_and_training_and_options_given_win(tmp_path: Path, cli: Run) -> None:
    """`--config gan-cnn`: the design's model fields and training settings (here its batch size and weight decay),
    except what the command line gives (epochs, window); the history goes beside the checkpoint."""
    from model.families.checkpoint import load_checkpoint

    v = np.sin(np.arange(400)[:, None] / (4 + np.arange(2))) + np.random.default_rng(0).normal(0, 0.05, (400, 2))
    rows = "".join(f"{60000 * i},{v[i, 0]:.4f},{v[i, 1]:.4f}\n" for i in range(400))
    (tmp_path / "pump.csv").write_text("timestamp,value_0,value_1\n" + rows)
    code, out, err = cli(["train", "--family", "tae", "--config", "gan-cnn", "-d", str(tmp_path / "pump.csv"), "-o",
                          str(tmp_path / "g.pt"), "--epochs", "1", "--no-progress", "--win-size", "16", "--d-model",
                          "16", "--n-heads", "2", "--d-ff", "32", "--n-layers", "1", "--set", "dec_layers=1",
                          "--normalization", "zscore", "--scope", "global", "--score-lag", "0"])
    assert code == 0, out + err
    ckpt = load_checkpoint(tmp_path / "g.pt")
    cfg, settings = ckpt.config, ckpt.training_data["settings"]
    assert (cfg.adversary, cfg.w_rec, cfg.window_size, cfg.enc_layers, cfg.channels) == ("cnn", 50.0, 16, 1, 2)
    assert (settings["epochs"], settings["batch_size"], settings["weight_decay"], settings["lr"]) == (1, 64, 0.0, 1e-4)
    assert ckpt.training_data["config_name"] == "gan-cnn"
    history = json.loads((tmp_path / "g-report" / "history.json").read_text())["epochs"]
    assert set(history[0]["parts"]) == {"reconstruction", "adversarial", "discriminator"}
    assert (tmp_path / "g-report" / "losses.png").is_file()
    code, _, err = cli(["train", "--family", "tae", "--config", "huge", "-d", str(tmp_path / "pump.csv"), "-o",
                        str(tmp_path / "x.pt")])
    assert code == 2 and "no configuration 'huge' (known: robust, gan-cnn, plain)" in err, err


def test_anomaly_transformer_trains_on_your_own_unlabelled_multichannel_csv(tmp_path: Path, cli: Run) -> None:
    """`--data` with `value_0, value_1, ...` columns and no labels: an unsupervised family takes the files as
    normal data and the threshold as the 99th percentile of their scores; `detect` names each channel's value."""
    from model.families.checkpoint import load_checkpoint

    rng = np.random.default_rng(0)
    for k in range(2):
        v = np.sin(np.arange(300)[:, None] / (4 + np.arange(3))) + rng.normal(0, 0.05, (300, 3))
        rows = "".join(f"{60000 * i},{v[i, 0]:.4f},{v[i, 1]:.4f},{v[i, 2]:.4f}\n" for i in range(300))
        (tmp_path / f"pump-{k}.csv").write_text("timestamp,value_0,value_1,value_2\n" + rows)
    code, out, err = cli(["train", "--family", "anomaly-transformer", "-d", str(tmp_path), "-o",
                          str(tmp_path / "at.pt"), "--epochs", "1", "--no-progress", "--win-size", "16",
                          "--d-model", "16", "--n-heads", "2", "--d-ff", "32", "--e-layers", "1",
                          "--normalization", "zscore", "--scope", "global", "--score-lag", "0"])
    assert code == 0, out + err
    ckpt = load_checkpoint(tmp_path / "at.pt")
    assert ckpt.config.channels == 3 and ckpt.calibration["method"] == "percentile_train_val"
    code, out, _ = cli(["detect", "-m", str(tmp_path / "at.pt"), "-i", str(tmp_path / "pump-0.csv"), "-n", "2",
                        "--format", "json"])
    assert code == 0, out
    top = json.loads(out)
    assert len(top) == 2 and len(top[0]["values"]) == 3 and "value" not in top[0]
    (tmp_path / "gap.csv").write_text("timestamp,value_0,value_2\n1,2,3\n")
    code, _, err = cli(["detect", "-m", str(tmp_path / "at.pt"), "-i", str(tmp_path / "gap.csv")])
    assert code == 2 and "value_0, value_1, ..." in err
    # a supervised family still needs labels
    code, _, err = cli(["train", "-d", str(tmp_path / "pump-0.csv"), "-o", str(tmp_path / "x.pt"), *TINY_ARGS])
    assert code == 2 and "needs a 'probability' column" in err
