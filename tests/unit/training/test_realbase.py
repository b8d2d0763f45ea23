"""Real-base training data: only train splits are read, every file carries labelled anomalies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from training.realbase import train_channels, write_injected


def _fake_sets(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    smd, smap = root / "smd", root / "smap_msl"
    (smap / "train").mkdir(parents=True)
    (smap / "test").mkdir()
    smd.mkdir()
    train = rng.random((600, 3)).astype(np.float32)
    train[:, 1] = 0.5  # constant channel: skipped
    np.save(smd / "machine-1-1_train.npy", train)
    np.save(smd / "machine-1-1_test.npy", rng.random((600, 3)).astype(np.float32))
    np.save(smap / "train" / "A-1.npy", np.c_[np.sin(np.arange(500) / 7), np.zeros((500, 2))])
    np.save(smap / "test" / "A-1.npy", rng.random((500, 3)))
    return smd, smap


def test_only_informative_train_channels_are_used(tmp_path: Path) -> None:
    smd, smap = _fake_sets(tmp_path)
    names = [name for name, _ in train_channels(smd, smap)]
    assert names == ["machine-1-1_train:0", "machine-1-1_train:2", "A-1:0"]


def test_written_series_are_labelled_and_reproducible(tmp_path: Path) -> None:
    channels = train_channels(*_fake_sets(tmp_path))
    a = write_injected(channels, tmp_path / "a", n_series=4, n_samples=300, seed=3)
    b = write_injected(channels, tmp_path / "b", n_series=4, n_samples=300, seed=3)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    for p in a:
        frame = pd.read_csv(p)
        assert list(frame.columns) == ["timestamp", "value", "probability", "anomaly_tag"]
        assert len(frame) == 300 and frame["anomaly_tag"].sum() > 0
