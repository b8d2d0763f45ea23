"""ONNX export: the bundle's graph agrees with PyTorch, with a dynamic batch axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from evaluation.detect import TorchScorer
from model.bundle import load_bundle
from model.families.anomalybert.config import ModelConfig
from model.families.anomalybert.modules import AnomalyBERT
from model.families.checkpoint import Checkpoint
from model.families.export import export_bundle
from model.normalize import Normalizer
from model.windows import make_windows

CFG = ModelConfig(n_layers=2, d_model=32, n_heads=4, d_ff=64, window_size=24)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Checkpoint, Path]:
    torch.manual_seed(3)
    ckpt = Checkpoint(AnomalyBERT(CFG).eval(), Normalizer("minmax", "window"), threshold=0.42,
                      calibration={"method": "best_f1_validation", "f1": 0.5})
    directory, _ = export_bundle(ckpt, tmp_path_factory.mktemp("b") / "bundle")
    return ckpt, directory


@pytest.mark.parametrize("batch", [1, 32])
def test_onnx_runtime_matches_pytorch(exported: tuple[Checkpoint, Path], batch: int) -> None:
    ckpt, directory = exported
    windows = np.random.default_rng(batch).normal(size=(batch, CFG.window_size, 1)) * 50 + 10
    ort_scores = load_bundle(directory).score_windows(windows)
    assert ort_scores.shape == (batch, CFG.window_size)
    np.testing.assert_allclose(ort_scores, TorchScorer(ckpt)(windows), rtol=0, atol=1e-5)


def test_graph_signature_has_dynamic_batch(exported: tuple[Checkpoint, Path]) -> None:
    graph = onnx.load(str(exported[1] / "model.onnx")).graph
    (inp,), (out,) = graph.input, graph.output
    assert (inp.name, out.name) == ("x", "score")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", CFG.window_size, 1]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", CFG.window_size]


def test_manifest_describes_the_model(exported: tuple[Checkpoint, Path]) -> None:
    m = load_bundle(exported[1]).manifest
    assert m.family == "anomalybert" and m.model == CFG.to_dict()
    assert m.window_size == 24 and m.channels == 1 and m.input_channels == 1
    assert m.score_lag is None  # the checkpoint's calibration names none: served at window_size - 1
    assert m.normalization["scope"] == "window"
    assert m.threshold == pytest.approx(0.42)
    assert m.calibration.method == "best_f1_validation" and m.calibration.details == {"f1": 0.5}


def test_output_must_be_a_directory_or_model_onnx(exported: tuple[Checkpoint, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model.onnx"):
        export_bundle(exported[0], tmp_path / "other.onnx")
    directory, _ = export_bundle(exported[0], tmp_path / "b2" / "model.onnx")
    assert (directory / "manifest.json").is_file() and directory == tmp_path / "b2"


def test_series_scope_with_window_features_exports_and_matches(tmp_path: Path) -> None:
    """The series-scope model: windows are standardized point by point before the graph; the graph adds
    the per-window standardized copy itself (window_features) and blends in the deviation score."""
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, window_size=16, window_features=True,
                      deviation_blend=0.5, deviation_scale=3.0)
    torch.manual_seed(4)
    ckpt = Checkpoint(AnomalyBERT(cfg).eval(), Normalizer("zscore", "series", halflife=50.0), threshold=0.5)
    directory, manifest = export_bundle(ckpt, tmp_path / "bundle")
    bundle = load_bundle(directory)
    assert bundle.normalizer.pointwise and bundle.normalizer.halflife == 50.0
    assert manifest.model["window_features"] and manifest.model["deviation_blend"] == 0.5  # the blend is in the graph
    values = np.random.default_rng(0).normal(size=200) * 30 + 5
    windows = make_windows(bundle.normalizer.prepare_series(values), 16, 1)
    np.testing.assert_allclose(bundle.score_windows(windows), TorchScorer(ckpt)(windows), rtol=0, atol=1e-5)


def test_deviation_channels_export_and_match(tmp_path: Path) -> None:
    """A normalizer with deviation channels doubles the graph's input; ONNX Runtime and PyTorch agree."""
    cfg = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, window_size=16, window_features=True,
                      deviation_blend=0.7, deviation_scale=8.0)
    torch.manual_seed(5)
    norm = Normalizer("zscore", "series", halflife=50.0, deviation_halflife=400.0)
    ckpt = Checkpoint(AnomalyBERT(cfg).eval(), norm, threshold=0.5)
    directory, _ = export_bundle(ckpt, tmp_path / "bundle")
    bundle = load_bundle(directory)  # loading runs the smoke test at the doubled width
    assert bundle.channels == 1 and bundle.input_channels == 2 and bundle.normalizer == norm
    values = np.random.default_rng(1).normal(size=300) * 4 + 2
    windows = make_windows(bundle.normalizer.prepare_series(values), 16, 1)
    assert windows.shape[-1] == 2
    np.testing.assert_allclose(bundle.score_windows(windows), TorchScorer(ckpt)(windows), rtol=0, atol=1e-5)
