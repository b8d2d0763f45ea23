"""Checkpoints (`.pt`): a family's weights plus its config, normalizer and threshold; loaded with weights_only=True.

The payload records the family (`model.families`); checkpoints written before families existed are AnomalyBERT's."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model import families
from model.errors import BundleError
from model.normalize import Normalizer


@dataclass
class Checkpoint:
    """Everything needed to rebuild and serve a trained model."""

    model: nn.Module  # built by the family; has `cfg`
    normalizer: Normalizer
    threshold: float = 0.5
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)
    family: str = families.DEFAULT_FAMILY

    @property
    def config(self) -> Any:
        """The family's config (`window_size`, `stride`, `channels` and the family's own fields)."""
        return self.model.cfg

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)

    def to_bytes(self) -> bytes:
        """The checkpoint file's content (what `save` writes)."""
        payload = {
            "format": "anomalybert-checkpoint/1",
            "family": self.family,
            "config": self.config.to_dict(),
            "normalizer": self.normalizer.to_dict(),
            "state_dict": self.model.state_dict(),
            "threshold": float(self.threshold),
            "calibration": self.calibration,
            "metrics": self.metrics,
            "training_data": self.training_data,
        }
        buf = io.BytesIO()
        torch.save(payload, buf)
        return buf.getvalue()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Rebuild a model from a checkpoint alone. Nothing is unpickled beyond tensors and plain containers."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        family = families.get(payload.get("family"))
        model = family.build(family.config(payload["config"]))
        model.load_state_dict(payload["state_dict"])
        normalizer = Normalizer.from_dict(payload["normalizer"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, IndexError, TypeError, ValueError, EOFError) as e:
        # torch's messages run over many lines; the first says what went wrong.
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise BundleError(f"{path}: not a valid checkpoint ({type(e).__name__}: {reason})") from e
    model.eval()
    return Checkpoint(
        model=model,
        normalizer=normalizer,
        threshold=float(payload.get("threshold", 0.5)),
        calibration=dict(payload.get("calibration", {})),
        metrics=dict(payload.get("metrics", {})),
        training_data=dict(payload.get("training_data", {})),
        family=family.name,
    )
