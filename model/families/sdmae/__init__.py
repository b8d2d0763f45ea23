"""The self-distilled masked autoencoder (semi-supervised): a masked-reconstruction encoder with a deep teacher
and a shallow student decoder whose disagreement on hidden timesteps is the anomaly score; labelled anomalies,
when there are any, widen it. Registered as `sdmae`.

- `config.py`: `SDMAEConfig`.
- `modules.py`: the model (mask-last-N serving), random masking, the margin loss, the warm-up ramp, the loss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model.families import Family, register
from model.families.sdmae.config import SDMAEConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

NAME = "sdmae"


class SDMAEFamily(Family):
    name = NAME
    config_class = SDMAEConfig
    # Learns from the windows alone and, where there are labels, from them too: unlabelled data trains it.
    supervised = False

    def build(self, cfg: SDMAEConfig) -> nn.Module:
        from model.families.sdmae.modules import SelfDistilledMAE

        return SelfDistilledMAE(cfg)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from model.families.sdmae.modules import sdmae_loss

        return sdmae_loss(model, x, y)  # type: ignore[arg-type]

    def reconfigure(self, model: nn.Module, **changes: Any) -> nn.Module:
        """The same weights served with another `score`."""
        from dataclasses import replace

        if set(changes) - {"score"}:
            raise ValueError(f"sdmae changes only its score without training (asked: {sorted(changes)})")
        other = self.build(replace(model.cfg, **changes))  # type: ignore[arg-type]
        other.load_state_dict(model.state_dict())
        return other.eval()

    def default_lag(self, cfg: SDMAEConfig) -> int:
        """Only a window's last `score_last` points are scored: a point is final in the first window that has it
        among them (lag stride - 1), not after every covering window."""
        return cfg.stride - 1

    def begin_epoch(self, model: Any, epoch: int, epochs: int) -> None:
        from model.families.sdmae.modules import ramp

        model.ramp = ramp(epoch, epochs, model.cfg.warmup)


FAMILY = register(SDMAEFamily())

__all__ = ["FAMILY", "NAME", "SDMAEConfig", "SDMAEFamily"]
