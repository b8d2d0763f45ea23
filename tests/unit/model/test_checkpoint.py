"""Checkpoints: a round trip rebuilds the same model; nothing but weights is unpickled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.errors import BundleError
from model.families.anomalybert.modules import AnomalyBERT
from model.families.checkpoint import Checkpoint, load_checkpoint
from model.normalize import Normalizer
from tests.bundles import TINY


class _Payload:
    """Stands for any Python object an attacker might pickle into a .pt file."""


def test_round_trip_restores_weights_config_normalizer_and_threshold(tmp_path: Path) -> None:
    torch.manual_seed(0)
    norm = Normalizer("zscore", "global").fit(np.arange(20.0))
    ckpt = Checkpoint(AnomalyBERT(TINY).eval(), norm, threshold=0.37,
                      calibration={"method": "best_f1_validation", "f1": 0.9}, metrics={"val_roc_auc": 0.8})
    ckpt.save(tmp_path / "m.pt")
    again = load_checkpoint(tmp_path / "m.pt")
    assert again.config == TINY
    assert again.normalizer == norm
    assert again.threshold == pytest.approx(0.37)
    assert again.calibration["f1"] == 0.9 and again.metrics == {"val_roc_auc": 0.8}
    x = torch.randn(4, TINY.window_size, 1)
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), ckpt.model(x), rtol=0, atol=0)
    assert not again.model.training


def test_missing_and_corrupt_files_raise_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(BundleError, match="not a valid checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"config": {"n_layers": 1}}, tmp_path / "partial.pt")
    with pytest.raises(BundleError, match="not a valid"):
        load_checkpoint(tmp_path / "partial.pt")


def test_arbitrary_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"config": TINY.to_dict(), "evil": _Payload()}, tmp_path / "evil.pt")
    with pytest.raises(BundleError, match="UnpicklingError"):
        load_checkpoint(tmp_path / "evil.pt")
