"""What the families' config dataclasses share: the dict round trip and the checks every shape needs."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, Self


class FamilyConfig:
    """Mixin of a family's frozen config dataclass: `to_dict`, `from_dict` (unknown keys are an error naming the
    family) and `check_shape` for the fields most families have."""

    family_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        unknown = set(data) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"unknown {cls.family_name} config keys: {sorted(unknown)}")
        return cls(**data)

    def check_shape(self, positive: tuple[str, ...]) -> None:
        """Each of `positive` >= 1, d_model divisible by n_heads, stride within the window, dropout in [0, 1)."""
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        d_model, n_heads = self.d_model, self.n_heads
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        stride, window = self.stride, self.window_size
        if stride > window:
            raise ValueError(f"stride ({stride}) must not exceed window_size ({window})")
        dropout = self.dropout
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
