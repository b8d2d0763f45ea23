"""Tiny real bundles for tests: random weights, a small config, exported through the real code path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.families.anomalybert.config import ModelConfig

TINY = ModelConfig(n_layers=1, d_model=16, n_heads=2, d_ff=32, window_size=16, dropout=0.0)


def tiny_bundle(path: Path, seed: int = 0, cfg: ModelConfig = TINY, threshold: float = 0.5,
                normalizer: Any = None) -> Path:
    """Export a random-weight AnomalyBERT to `path`, by default with window-scope min-max normalization."""
    import torch

    from model.families.anomalybert.modules import AnomalyBERT
    from model.families.checkpoint import Checkpoint
    from model.families.export import export_bundle
    from model.normalize import Normalizer

    torch.manual_seed(seed)
    ckpt = Checkpoint(AnomalyBERT(cfg).eval(), normalizer or Normalizer(scope="window"), threshold=threshold)
    directory, _ = export_bundle(ckpt, path)
    return directory
