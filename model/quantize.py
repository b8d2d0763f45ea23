"""Int8 bundles: an fp32 bundle in -> a bundle whose graph has int8 weights (ONNX Runtime dynamic
quantization) out, with a manifest that says what it was made from.

onnx + onnxruntime only (no torch). Dynamic quantization stores the weights of MatMul/Gemm as int8 and
quantizes activations on the fly, per batch, so it needs no calibration data. Everything a worker reads
besides the graph (window, normalization, threshold, score lag) is copied unchanged: the threshold was
calibrated on the fp32 model, and `anomalybert bench` reports how far the int8 scores move from it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from model.bundle import MODEL_FILE, Manifest, load_bundle, write_bundle

log = logging.getLogger(__name__)

QUANT_METHOD = "onnxruntime.quantization.quantize_dynamic"


def quantize_graph(source: Path, target: Path, per_channel: bool = False) -> None:
    """Quantize the ONNX graph at `source` into `target` (int8 weights, dynamic int8 activations)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():  # the quantizer logs its advice through the root logger
        quantize_dynamic(
            model_input=source,
            model_output=target,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            # The weighted matmuls only; activation x activation (attention scores) stays fp32.
            op_types_to_quantize=["MatMul", "Gemm"],
        )


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_bundle(source: str | Path, output: str | Path, per_channel: bool = False) -> Manifest:
    """Write an int8 copy of the bundle at `source` to `output` (atomically, with its own sha256 and
    version). The manifest records the fp32 version and sha256 it came from under
    `training_data.quantized_from`; the checkpoint is not copied (it is the fp32 model)."""
    src = load_bundle(source)
    with tempfile.TemporaryDirectory(prefix="anomalybert-quant-") as tmp:
        graph = Path(tmp) / MODEL_FILE
        quantize_graph(src.directory / MODEL_FILE, graph, per_channel)
        onnx_bytes = graph.read_bytes()
    m = src.manifest
    manifest: dict[str, Any] = m.model_dump(exclude={"sha256", "version", "created_at"})
    manifest["training_data"] = {
        **m.training_data,
        "quantized_from": {
            "version": m.version,
            "sha256": m.sha256,
            "method": QUANT_METHOD,
            "weight_type": "int8",
            "per_channel": per_channel,
        },
    }
    manifest["onnx"] = {**m.onnx, "precision": "int8-dynamic"}
    written = write_bundle(Path(output), onnx_bytes, manifest)
    log.info("quantized %s (%d bytes) -> %s (%d bytes)", m.version, (src.directory / MODEL_FILE).stat().st_size,
             written.version, len(onnx_bytes))
    return written


def quantized_from(manifest: Manifest) -> dict[str, Any] | None:
    """The fp32 origin recorded by `quantize_bundle`, or None for a bundle that was not quantized."""
    return manifest.training_data.get("quantized_from")
