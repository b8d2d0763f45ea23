"""The Anomaly Transformer (Xu et al., ICLR 2022): association discrepancy learnt with a minimax strategy,
unsupervised (the labels only choose the threshold on validation); registered as `anomaly-transformer`.

- `config.py`: `AnomalyTransformerConfig` (the reference's defaults; the score variant).
- `modules.py`: Anomaly-Attention, the encoder and the reconstruction head; the minimax loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.families import Family, register
from model.families.anomaly_transformer.config import AnomalyTransformerConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

NAME = "anomaly-transformer"


class AnomalyTransformerFamily(Family):
    name = NAME
    config_class = AnomalyTransformerConfig
    supervised = False

    def build(self, cfg: AnomalyTransformerConfig) -> nn.Module:
        from model.families.anomaly_transformer.modules import AnomalyTransformer

        return AnomalyTransformer(cfg)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from model.families.anomaly_transformer.modules import minimax_loss

        return minimax_loss(model, x)  # the labels are not used


FAMILY = register(AnomalyTransformerFamily())

__all__ = ["FAMILY", "NAME", "AnomalyTransformerConfig", "AnomalyTransformerFamily"]
