"""The training history as files: `history.json` (one row per epoch: the loss, its named parts, validation)
and `losses.png` (each part against the epoch), for every family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_history(history: list[dict[str, Any]], directory: Path) -> list[Path]:
    """Write `history.json` and `losses.png` into `directory` (created); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / "history.json"
    out.write_text(json.dumps({"epochs": history}, indent=1) + "\n")
    png = directory / "losses.png"
    plot_history(history, png)
    return [out, png]


def plot_history(history: list[dict[str, Any]], path: Path) -> None:
    """The loss and each of its parts per epoch (one panel each, so that scales do not hide one another), and
    the validation ROC-AUC where there is one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    series: dict[str, list[float | None]] = {"loss": [h["train_loss"] for h in history]}
    for name in dict.fromkeys(k for h in history for k in h.get("parts", {})):
        series[name] = [h.get("parts", {}).get(name) for h in history]
    if any(h.get("val_roc_auc") is not None for h in history):
        series["validation ROC-AUC"] = [h.get("val_roc_auc") for h in history]
    cols = min(3, len(series))
    rows = -(-len(series) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, (name, values) in zip(axes.flat, series.items(), strict=False):
        ax.plot(epochs, [float("nan") if v is None else v for v in values], marker="o", ms=3)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(series):]:
        ax.set_visible(False)
    fig.suptitle("training history")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
