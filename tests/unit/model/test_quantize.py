"""Int8 bundles: valid bundles that say what they came from and score close to the fp32 original."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from model.bundle import CHECKPOINT_FILE, MODEL_FILE, load_bundle
from model.quantize import QUANT_METHOD, quantize_bundle, quantized_from
from tests.bundles import tiny_bundle


def test_int8_bundle_loads_verifies_and_scores_close_to_fp32(tmp_path: Path) -> None:
    fp32 = load_bundle(tiny_bundle(tmp_path / "fp32", seed=1))
    written = quantize_bundle(fp32.directory, tmp_path / "int8")

    int8 = load_bundle(tmp_path / "int8")  # sha256, manifest schema and a smoke inference
    assert int8.version == written.version != fp32.version
    assert int8.manifest.sha256 != fp32.manifest.sha256
    origin = quantized_from(int8.manifest)
    assert origin is not None and quantized_from(fp32.manifest) is None
    assert origin["version"] == fp32.version and origin["sha256"] == fp32.manifest.sha256
    assert origin["method"] == QUANT_METHOD and origin["weight_type"] == "int8"
    for field in ("window_size", "stride", "channels", "threshold", "normalization", "model", "calibration"):
        assert getattr(int8.manifest, field) == getattr(fp32.manifest, field), field
    assert not (int8.directory / CHECKPOINT_FILE).exists()  # the checkpoint is the fp32 model

    ops = {n.op_type for n in onnx.load(str(int8.directory / MODEL_FILE)).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops

    x = np.random.default_rng(0).normal(size=(32, fp32.window_size, fp32.channels))
    a, b = fp32.score_windows(x), int8.score_windows(x)
    assert b.shape == a.shape and np.all((b >= 0) & (b <= 1))
    assert float(np.abs(a - b).max()) < 0.05
