"""The model contract (numpy + onnxruntime): bundles, normalizers, windowing, serving; and the model families.

Every module directly in `model/` (`bundle`, `normalize`, `windows`, `serving`, `registry`, `quantize`, `errors`)
is numpy + onnxruntime only: the worker image copies exactly these (`deploy/worker.Dockerfile`) and `stream`
imports nothing else. `model.families` holds the families (PyTorch), their checkpoints and their export.
"""

from model.errors import AnomalyBertError, BundleError, DataError

__all__ = ["AnomalyBertError", "BundleError", "DataError"]
