"""Retraining: input tables, self-supervised labels, the gate, and publishing to the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from model.errors import DataError
from model.registry import Registry
from tests.bundles import tiny_bundle
from tools.cli import cli
from training.retrain import GateResult, _slice, degrade, load_tables, not_worse, split_gate


def _signal(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sin(np.arange(n) / 9.0) * 3 + rng.normal(0, 0.2, n) + 40


@pytest.fixture
def telemetry_dir(tmp_path: Path) -> Path:
    d = tmp_path / "telemetry"
    d.mkdir()
    n = 400
    fleet = pd.DataFrame({"timestamp": np.tile(np.arange(n), 2),
                          "value": np.concatenate([_signal(n, 1), _signal(n, 2)]),
                          "series_id": ["pump-1"] * n + ["pump-2"] * n})
    fleet.to_csv(d / "fleet.csv", index=False)
    pd.DataFrame({"timestamp": np.arange(n), "value": _signal(n, 3)}).to_parquet(d / "fan.parquet")
    return d


def test_load_tables_groups_by_series_and_reads_parquet(telemetry_dir: Path) -> None:
    series = load_tables([telemetry_dir])
    assert sorted(s.name for s in series) == ["fan", "pump-1", "pump-2"]
    assert all(len(s) == 400 and s.probability is None for s in series)
    assert [s.name for s in load_tables([telemetry_dir], {"pump-2"})] == ["pump-2"]
    with pytest.raises(DataError, match="no series left"):
        load_tables([telemetry_dir], {"nope"})


def test_load_tables_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n1,2\n")
    with pytest.raises(DataError, match=r"bad\.csv: missing column\(s\) \['timestamp'\]"):
        load_tables([bad])
    bad.write_text("timestamp,value\n1,2\n2,oops\n")
    with pytest.raises(DataError, match="'oops' is not a finite number"):
        load_tables([bad])


def test_degrade_labels_unlabelled_series_and_keeps_labelled_ones(telemetry_dir: Path) -> None:
    raw = load_tables([telemetry_dir])
    labelled = raw[0]
    labelled.probability = np.zeros(len(labelled))
    labelled.labels = np.zeros(len(labelled), np.int8)
    out = degrade(raw, np.random.default_rng(0), copies=3)
    assert len(out) == 1 + 2 * 3
    assert out[0] is labelled
    injected = out[1:]
    assert all(s.labels is not None and s.labels.sum() > 0 for s in injected)
    assert not np.array_equal(injected[0].values, injected[1].values)  # different injections per copy


def test_split_gate_keeps_both_parts_long_enough(telemetry_dir: Path) -> None:
    heads, tails = split_gate(load_tables([telemetry_dir]), 0.25, min_points=32)
    assert all(len(h) == 300 and len(t) == 100 for h, t in zip(heads, tails, strict=True))
    with pytest.raises(DataError, match="every series is too short"):
        split_gate(load_tables([telemetry_dir]), 0.25, min_points=250)


def test_split_gate_leaves_out_short_series_with_a_warning(telemetry_dir: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    raw = load_tables([telemetry_dir])
    short = _slice(raw[0], 0, 60)
    short.name = "new-pump"
    heads, tails = split_gate([*raw, short], 0.25, min_points=32)
    assert [h.name for h in heads] == [s.name for s in raw]
    assert len(tails) == len(raw)
    assert "left out 1 series" in caplog.text and "'new-pump' (60)" in caplog.text


def test_gate_rule() -> None:
    base = GateResult(0.80, 0.50, 100, 10)
    assert not_worse(GateResult(0.80, 0.50, 100, 10), base)
    assert not not_worse(GateResult(0.85, 0.49, 100, 10), base)
    assert not not_worse(GateResult(0.79, 0.60, 100, 10), base)
    assert not_worse(GateResult(0.79, 0.49, 100, 10), base, tolerance=0.02)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    reg = Registry(tmp_path / "registry")
    reg.publish(tiny_bundle(tmp_path / "v1", seed=1))
    return reg.root


def _retrain(args: list[str]) -> object:
    return CliRunner().invoke(cli, ["retrain", *args, "--no-announce", "--epochs", "1", "--no-progress"])


def test_retrain_publishes_a_passing_candidate(telemetry_dir: Path, registry: Path) -> None:
    reg = Registry(registry)
    v1 = reg.current()
    res = _retrain([str(telemetry_dir), "--registry", str(registry), "--seed", "3", "--force"])
    assert res.exit_code == 0, res.output
    assert "gate" in res.output and "candidate" in res.output and "current" in res.output
    v2 = reg.current()
    assert v2 != v1 and len(reg.versions()) == 2
    manifest = json.loads((reg.path(v2) / "manifest.json").read_text())
    assert manifest["training_data"]["base_version"] == v1
    assert set(manifest["metrics"]["gate"]) == {"candidate", "current", "base_version"}
    assert (reg.path(v2) / "checkpoint.pt").is_file()  # the next retrain can finetune it again


def test_retrain_refuses_a_failing_candidate_unless_forced(telemetry_dir: Path, registry: Path) -> None:
    reg = Registry(registry)
    v1 = reg.current()
    # A negative tolerance demands the candidate beat the current model by more than is possible.
    strict = [str(telemetry_dir), "--registry", str(registry), "--tolerance", "-2"]
    res = _retrain(strict)
    assert res.exit_code != 0 and "not published" in res.output
    assert reg.current() == v1 and reg.versions() == [v1]
    assert _retrain([*strict, "--dry-run"]).exit_code == 0 and reg.versions() == [v1]
    assert _retrain([*strict, "--force"]).exit_code == 0 and reg.current() != v1


def test_retrain_needs_exactly_one_input(registry: Path) -> None:
    res = _retrain(["--registry", str(registry)])
    assert res.exit_code == 2 and "give input files or --from-topic" in res.output


def test_a_calibrated_model_is_retrained_into_a_calibrated_one(telemetry_dir: Path, tmp_path: Path) -> None:
    from model.bundle import load_bundle
    from tests.stream_support import calibrated

    reg = Registry(tmp_path / "registry")
    reg.publish(calibrated(tiny_bundle(tmp_path / "v1", seed=1), threshold=0.4498, halflife=5000.0,
                           min_history=200))
    res = _retrain([str(telemetry_dir), "--registry", str(reg.root), "--seed", "3", "--force"])
    assert res.exit_code == 0, res.output
    new = load_bundle(reg.path(reg.current()))
    per = new.manifest.calibration.per_series
    assert per is not None and (per.halflife, per.min_history) == (5000.0, 200)
    assert new.threshold == pytest.approx(0.4498)  # the same tail probability, not a raw F-beta threshold
    assert "threshold" in new.manifest.calibration.details["trained"]


@pytest.mark.parametrize("family", ["tae", "sdmae", "anomaly-transformer"])
def test_retrain_finetunes_every_family_from_its_trained_weights(family: str, telemetry_dir: Path,
                                                                 tmp_path: Path) -> None:
    # `retrain`'s default (--finetune) warm-starts the families without a frozen part: all of their weights
    # train on, from the current model's.
    import torch

    from model import families
    from model.families.checkpoint import Checkpoint, load_checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    fam = families.get(family)
    small = {"tae": {"d_model": 16, "n_heads": 2, "enc_layers": 1, "dec_layers": 1, "d_ff": 32, "stride": 4,
                     "latent_dim": 8},
             "sdmae": {"d_model": 16, "n_heads": 2, "enc_layers": 1, "teacher_layers": 1, "d_ff": 32},
             "anomaly-transformer": {"d_model": 16, "n_heads": 2, "e_layers": 1, "d_ff": 32}}[family]
    torch.manual_seed(0)
    model = fam.build(fam.config(window_size=16, channels=1, **small)).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norm = Normalizer(kind="zscore", scope="global").fit(np.array([[38.0], [40.0], [42.0]]))
    ckpt = Checkpoint(model, norm, threshold=0.5, family=family)
    directory, _ = export_bundle(ckpt, tmp_path / "v1")
    reg = Registry(tmp_path / "registry")
    v1 = reg.publish(directory)
    res = _retrain([str(telemetry_dir), "--registry", str(reg.root), "--seed", "3", "--force"])
    assert res.exit_code == 0, res.output
    assert reg.current() != v1
    after = load_checkpoint(reg.path(reg.current()) / "checkpoint.pt")
    assert after.family == family and after.config == model.cfg
    changed = [k for k, v in after.model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "finetuning moved no weight"
