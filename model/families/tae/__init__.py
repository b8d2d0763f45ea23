"""The contamination-robust transformer autoencoder (geometric masking, InfoNCE between a masked and a clean
view, an adversarial regularizer), unsupervised; registered as `tae`, with the named configurations `robust`,
`gan-cnn` and `plain` (the ablation without masking, contrastive loss or GAN).

- `config.py`: `TAEConfig` and `CONFIGS`.
- `losses.py`: geometric span masking and InfoNCE.
- `modules.py`: the encoder-decoder, the generator residual, both discriminators and the two players' losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from model.families import Adversary, Family, register
from model.families.tae.config import CONFIGS, TAEConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

NAME = "tae"


class TAEFamily(Family):
    name = NAME
    config_class = TAEConfig
    supervised = False
    configs = CONFIGS

    def build(self, cfg: TAEConfig) -> nn.Module:
        from model.families.tae.modules import TransformerAutoencoder

        return TransformerAutoencoder(cfg)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        from model.families.tae.modules import generator_loss

        return generator_loss(model, x)  # type: ignore[arg-type]  # the labels are not used

    def adversary(self, model: Any) -> Adversary | None:
        if model.discriminator is None:
            return None
        from model.families.tae.modules import discriminator_loss

        return Adversary(list(model.discriminator.parameters()), lambda x: discriminator_loss(model, x),
                         lr=model.cfg.disc_lr, every=model.cfg.disc_every)


FAMILY = register(TAEFamily())

__all__ = ["CONFIGS", "FAMILY", "NAME", "TAEConfig", "TAEFamily"]
