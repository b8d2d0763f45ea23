"""Export with a check: a checkpoint in, a bundle out, verified by loading it back and comparing the
ONNX Runtime scores with PyTorch's on random windows."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from evaluation.detect import TorchScorer
from model.bundle import Manifest, load_bundle
from model.errors import BundleError
from model.families.checkpoint import load_checkpoint
from model.families.export import export_bundle

log = logging.getLogger(__name__)

# ONNX Runtime and PyTorch differ by float32 rounding only; anything larger means a broken graph.
PARITY_TOLERANCE = 1e-4


def export_and_verify(checkpoint: str | Path, output: str | Path,
                      seed: int = 0) -> tuple[Path, Manifest, float]:
    """Write the bundle, load it back (hash, schema, smoke test) and return the largest score difference."""
    ckpt = load_checkpoint(checkpoint)
    directory, _ = export_bundle(ckpt, output)
    bundle = load_bundle(directory)
    cfg = ckpt.config
    windows = np.random.default_rng(seed).normal(size=(32, cfg.window_size, bundle.input_channels))
    diff = float(np.abs(bundle.score_windows(windows) - TorchScorer(ckpt)(windows)).max())
    if diff > PARITY_TOLERANCE:
        raise BundleError(f"{directory}: ONNX and PyTorch scores differ by {diff:.2e} (> {PARITY_TOLERANCE})")
    log.info("exported %s to %s (max |diff| %.2e)", checkpoint, directory, diff)
    return directory, bundle.manifest, diff
