"""AnomalyBERT (the shipped default): a transformer encoder and a per-timestep head, trained supervised (BCE with
logits) on series with labelled or injected anomalies; optionally its scores blended in the graph with the
input's deviation score (`ModelConfig.deviation_blend`).

- `config.py`: `ModelConfig`, the encoder's shape and the blend (numpy-free).
- `modules.py`: the torch modules (`AnomalyBERT`: encoder, head, blend).
- this file: the family (objective, finetuning with a frozen encoder, the blend as a setting `calibrate` may
  change), registered as `anomalybert`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from model.families import Family, register
from model.families.anomalybert.config import ModelConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.normalize import Normalizer

# Largest encoder-output cache kept in memory when finetuning; beyond it the encoder runs every step.
FEATURE_CACHE_BYTES = 2 << 30


class AnomalyBertFamily(Family):
    name = "anomalybert"
    config_class = ModelConfig
    supervised = True

    def build(self, cfg: ModelConfig) -> nn.Module:
        from model.families.anomalybert.modules import AnomalyBERT

        return AnomalyBERT(cfg)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(model.logits(x), y)  # (B, W) vs (B, W)

    def check(self, cfg: ModelConfig, normalizer: Normalizer) -> None:
        """A deviation blend reads the input as a z-score against the series' history: the series scope only."""
        if cfg.deviation_blend > 0 and not normalizer.pointwise:
            raise ValueError(f"a deviation blend needs the series normalization scope (inputs that are z-scores "
                             f"against the series' history), not {normalizer.kind}/{normalizer.scope}")

    def finetune(self, model: nn.Module) -> nn.Module:
        """Keep the encoder's weights, train a fresh head only."""
        model.freeze_encoder()
        return model

    def train_mode(self, model: nn.Module, finetune: bool) -> None:
        model.train()
        if finetune:
            model.encoder.eval()  # frozen: no dropout either

    def objective(self, model: nn.Module, x: torch.Tensor,
                  finetune: bool) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """Finetuning trains the head on the frozen encoder's outputs, computed once when they fit in memory
        (the encoder is in eval mode, so every epoch would give the same tensors)."""
        import torch
        import torch.nn.functional as F

        cache_bytes = x.shape[0] * x.shape[1] * model.cfg.d_model * 4
        if not finetune or cache_bytes > FEATURE_CACHE_BYTES:
            return super().objective(model, x, finetune)
        model.encoder.eval()
        with torch.no_grad():
            features = torch.cat([model.encoder(x[i:i + 512][..., : model.cfg.channels])
                                  for i in range(0, len(x), 512)])
        return features, lambda fb, yb: F.binary_cross_entropy_with_logits(model.head.logits(fb), yb)

    def reconfigure(self, model: nn.Module, **changes: Any) -> nn.Module:
        return model.with_config(**changes)


FAMILY = register(AnomalyBertFamily())

__all__ = ["FAMILY", "AnomalyBertFamily", "ModelConfig"]
