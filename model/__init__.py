"""The model contract (numpy + onnxruntime): bundles, normalizers, windowing, serving; and the model families.

Everything importable from `model` directly, and `model.bundle`, `model.normalize`, `model.windows`,
`model.serving`, `model.registry`, `model.families` (the registry, not a family), is numpy-only, so that
`stream` can use it without torch. The PyTorch parts are the families' modules
(`model.families.<name>`), `model.checkpoint` and `model.export`.
"""

from model.errors import AnomalyBertError, BundleError, DataError
from model.families.anomalybert.config import ModelConfig

__all__ = ["ModelConfig", "AnomalyBertError", "BundleError", "DataError"]
