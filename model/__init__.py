"""The AnomalyBERT model: config, normalizers, windowing and the bundle format.

Everything importable from `model` directly is numpy-only, so that `stream` can use it without torch.
The PyTorch parts live in `model.encoder`, `model.checkpoint` and `model.export`.
"""

from model.config import ModelConfig
from model.errors import AnomalyBertError, BundleError, DataError

__all__ = ["ModelConfig", "AnomalyBertError", "BundleError", "DataError"]
