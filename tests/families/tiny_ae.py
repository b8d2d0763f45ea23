"""A minimal second model family, defined outside the package: a one-layer reconstruction autoencoder.

It learns the windows alone (unsupervised: the labels only pick the threshold on validation) and scores
each timestep by its reconstruction error, squashed into [0, 1] as `e / (1 + e)`. Importing this module
registers it as `tiny-ae`; nothing in `stream/`, `model/` or `training/` names it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from model.families import Family, register

NAME = "tiny-ae"


@dataclass(frozen=True)
class TinyAEConfig:
    window_size: int = 16
    stride: int = 1
    channels: int = 1
    hidden: int = 8

    def __post_init__(self) -> None:
        if min(self.window_size, self.stride, self.channels, self.hidden) < 1:
            raise ValueError("window_size, stride, channels and hidden must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TinyAEConfig:
        return cls(**data)


class TinyAE(nn.Module):
    def __init__(self, cfg: TinyAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        width = cfg.window_size * cfg.channels
        self.encode = nn.Sequential(nn.Linear(width, cfg.hidden), nn.Tanh())
        self.decode = nn.Linear(cfg.hidden, width)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x.flatten(1))).view(-1, self.cfg.window_size, self.cfg.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W, C) -> (B, W) in [0, 1)
        error = (self.reconstruct(x) - x).pow(2).mean(dim=-1)
        return error / (1.0 + error)


class TinyAEFamily(Family):
    name = NAME
    config_class = TinyAEConfig
    supervised = False

    def build(self, cfg: TinyAEConfig) -> nn.Module:
        return TinyAE(cfg)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model.reconstruct(x), x)  # the labels are not used


FAMILY = register(TinyAEFamily())
