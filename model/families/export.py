"""Export a checkpoint to a bundle: ONNX graph with a dynamic batch axis plus its manifest."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from model.bundle import CONTRIB_NAME, INPUT_NAME, MODEL_FILE, OUTPUT_NAME, Manifest, write_bundle
from model.families.checkpoint import Checkpoint

OPSET = 17


class _WithContrib(torch.nn.Module):
    """Traces a model's `forward_with_contrib`: the scores and the per-channel contributions, one pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_with_contrib(x)


def has_contrib(model: torch.nn.Module) -> bool:
    """Whether a family's model gives per-channel contributions (a `forward_with_contrib` method)."""
    return callable(getattr(model, "forward_with_contrib", None))


def onnx_bytes(ckpt: Checkpoint) -> bytes:
    """Trace the model in eval mode to ONNX: x (batch, W, C, or 2C with deviation channels) -> score (batch, W),
    and, for a family that has them, contrib (batch, W, channels)."""
    cfg = ckpt.config
    model = ckpt.model.eval()
    dummy = torch.zeros(2, cfg.window_size, ckpt.normalizer.input_channels(cfg.channels))
    contrib = has_contrib(model)
    outputs = [OUTPUT_NAME, CONTRIB_NAME] if contrib else [OUTPUT_NAME]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _WithContrib(model) if contrib else model, (dummy,), buf,
            input_names=[INPUT_NAME], output_names=outputs,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
            opset_version=OPSET, dynamo=False,
        )
    return _static_window(buf.getvalue(), cfg.window_size)


def _static_window(graph: bytes, window_size: int) -> bytes:
    """The tracer leaves the outputs' window axis symbolic; state it, as the signature promises."""
    import onnx

    proto = onnx.load_from_string(graph)
    for out in proto.graph.output:
        dim = out.type.tensor_type.shape.dim[1]
        dim.ClearField("dim_param")
        dim.dim_value = window_size
    return proto.SerializeToString()


def export_bundle(ckpt: Checkpoint, output: str | Path, extra: dict[str, Any] | None = None,
                  with_checkpoint: bool = True) -> tuple[Path, Manifest]:
    """Write a bundle. `output` is a bundle directory, or a path ending in `.onnx` whose directory becomes
    the bundle (the manifest goes beside it as `manifest.json`). With `with_checkpoint`, the PyTorch
    checkpoint goes in too (`checkpoint.pt`), so the served model can later be finetuned."""
    out = Path(output)
    directory = out.parent if out.suffix == ".onnx" else out
    if out.suffix == ".onnx" and out.name != MODEL_FILE:
        raise ValueError(f"the graph in a bundle is named {MODEL_FILE}; use --output DIR or DIR/{MODEL_FILE}")
    cfg = ckpt.config
    lag = ckpt.calibration.get("score_lag")
    manifest: dict[str, Any] = {
        "family": ckpt.family,
        "model": cfg.to_dict(),
        "window_size": cfg.window_size,
        "stride": cfg.stride,
        "channels": cfg.channels,
        "input_channels": ckpt.normalizer.input_channels(cfg.channels),
        "score_lag": None if lag is None else int(lag),
        "normalization": ckpt.normalizer.to_dict(),
        "threshold": ckpt.threshold,
        "calibration": {"method": ckpt.calibration.get("method", "unspecified"),
                        "details": {k: v for k, v in ckpt.calibration.items() if k not in ("method", "per_series")},
                        "per_series": ckpt.calibration.get("per_series")},
        "training_data": ckpt.training_data,
        "metrics": ckpt.metrics,
        "onnx": {"input": INPUT_NAME, "output": OUTPUT_NAME, "opset": OPSET,
                 **({"contrib": CONTRIB_NAME} if has_contrib(ckpt.model) else {})},
        **(extra or {}),
    }
    m = write_bundle(directory, onnx_bytes(ckpt), manifest,
                     checkpoint_bytes=ckpt.to_bytes() if with_checkpoint else None)
    return directory, m
