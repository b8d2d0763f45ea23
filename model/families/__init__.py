"""Model families: each is a folder (config, torch modules, training objective) registered under the name that
bundles and checkpoints record as their `family`.

A family is what differs between the model systems; everything else (normalization, windowing, the training
loop, validation and thresholds, export, serving) is shared and reads only the contract below:

- `config(data)` gives the family's config object from its dict (what checkpoints and manifests carry under
  `model`/`config`); the object has `window_size`, `stride`, `channels` and `to_dict()`. The worker never reads
  it: what serving needs is in the manifest's own fields.
- `build(cfg)` gives a `torch.nn.Module` with that `cfg` attribute whose `forward` maps normalized windows
  `(B, W, input_channels)` to scores `(B, W)` in [0, 1] (higher = more anomalous): the ONNX contract.
- `loss(model, x, y)` is the training objective on a batch of normalized windows `x` and soft labels `y`
  `(B, W)` in [0, 1]; an unsupervised family ignores `y` (labels then serve validation and the threshold
  only). It may return `(loss, parts)`, `parts` a dict of named float components that the training history
  records per epoch.
- `adversary(model)` (optional): a second player with its own parameters, loss and optimizer (a GAN's
  discriminator), stepped by the training loop beside the model; the model's optimizer then steps every
  other trainable parameter.
- `configs` (optional): named configurations (`train --config NAME`), each the config fields and the
  training settings it was designed with.

This module imports neither torch nor a family: families are imported when first asked for (`get`), from
the built-in table, from the `anomalybert.families` entry-point group (a family in another package), or
registered in-process with `register`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torch import nn

    from model.normalize import Normalizer

DEFAULT_FAMILY = "anomalybert"
ENTRY_POINT_GROUP = "anomalybert.families"
# Built-in families: name -> the module whose import registers it.
_BUILTIN = {"anomalybert": "model.families.anomalybert",
            "anomaly-transformer": "model.families.anomaly_transformer",
            "tae": "model.families.tae",
            "sdmae": "model.families.sdmae"}
_REGISTRY: dict[str, Family] = {}


@dataclass
class Adversary:
    """A second player trained beside a model (a GAN's discriminator): its parameters, its loss on a batch of
    normalized windows, its own Adam learning rate, and how often it steps (every `every` model steps)."""

    parameters: list[Any]
    loss: Callable[[torch.Tensor], torch.Tensor]
    lr: float
    every: int = 1


class Family:
    """Base class of a model family. Subclasses set `name` and `config_class` and implement `build` and
    `loss`; the hooks below have defaults that suit a family trained end to end."""

    name: ClassVar[str]
    config_class: ClassVar[type]
    # Learns from the labels (`y` in `loss`); False: from the windows alone.
    supervised: ClassVar[bool] = True
    # Named configurations: name -> {"model": config fields, "train": TrainConfig fields}.
    configs: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}

    def config(self, data: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
        """The config from its dict, with `overrides` (None values ignored); a bad value is a ValueError."""
        merged = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
        from_dict = getattr(self.config_class, "from_dict", None)
        try:
            return from_dict(merged) if from_dict else self.config_class(**merged)
        except TypeError as e:  # an unknown keyword
            raise ValueError(f"family {self.name!r}: {e}") from e

    def build(self, cfg: Any) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def default_lag(self, cfg: Any) -> int:
        """The score lag that training calibrates at when none is given (recorded as the worker's default):
        every covering window, W - 1."""
        return int(cfg.window_size) - 1

    def begin_epoch(self, model: nn.Module, epoch: int, epochs: int) -> None:
        """Called before each training epoch (`epoch` 1-based of `epochs`): e.g. a loss weight's warm-up."""

    def adversary(self, model: nn.Module) -> Adversary | None:
        """The second player trained beside `model`, if the family has one."""
        return None

    def check(self, cfg: Any, normalizer: Normalizer) -> None:
        """Raise ValueError when `cfg` cannot be trained or served with `normalizer`."""

    def finetune(self, model: nn.Module) -> nn.Module:
        """The model to train when finetuning a trained one: by default all of it, from its trained weights (a
        warm start; an adversary, if the family has one, is not trained on). A family may freeze a part
        (AnomalyBERT keeps its encoder)."""
        return model

    def train_mode(self, model: nn.Module, finetune: bool) -> None:
        """Put the model in training mode for an epoch (a frozen part can stay in eval mode)."""
        model.train()

    def objective(self, model: nn.Module, x: torch.Tensor,
                  finetune: bool) -> tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor], Any]]:
        """What training batches are cut from and the loss of a batch of it: by default the windows and
        `loss`. A family may precompute (e.g. the features of a frozen encoder, once) and return those."""
        return x, lambda xb, yb: self.loss(model, xb, yb)

    def reconfigure(self, model: nn.Module, **changes: Any) -> nn.Module:
        """The same weights under a config with `changes` that need no training (e.g. how scores are
        blended); used by `calibrate`."""
        raise ValueError(f"family {self.name!r} has no settings that change without training "
                         f"(asked: {sorted(changes)})")


def register(family: Family) -> Family:
    """Make `family` known under `family.name` (replacing one of the same name)."""
    if not getattr(family, "name", ""):
        raise ValueError("a family needs a name")
    _REGISTRY[family.name] = family
    return family


def get(name: str | None = None) -> Family:
    """The family called `name` (default AnomalyBERT); ValueError naming the known ones if there is none."""
    name = name or DEFAULT_FAMILY
    if name not in _REGISTRY:
        if name in _BUILTIN:
            importlib.import_module(_BUILTIN[name])
        else:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                if ep.name == name:
                    loaded = ep.load()
                    register(loaded() if isinstance(loaded, type) else loaded)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model family {name!r} (known: {', '.join(names())})")
    return _REGISTRY[name]


def names() -> list[str]:
    """Every family that `get` can find: built in, registered, or installed through entry points."""
    return sorted({*_BUILTIN, *_REGISTRY, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
