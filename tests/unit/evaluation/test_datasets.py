"""Loaders on tiny folders laid out like ../shared/data, and on the real data when it is there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evaluation.datasets import label_runs, load_dataset, nab_profiles, probationary_length
from model.errors import DataError

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"


def test_probationary_length_follows_nab() -> None:
    assert probationary_length(100) == 15
    assert probationary_length(4032) == 604
    assert probationary_length(20000) == 750


def test_label_runs() -> None:
    assert label_runs(np.array([1, 1, 0, 0, 1, 0, 1])) == [(0, 1), (4, 4), (6, 6)]
    assert label_runs(np.zeros(4)) == []


def test_seed_csv(tmp_path: Path) -> None:
    f = tmp_path / "a.csv"
    rows = "".join(f"{i},{i % 7},{0.9 if 50 <= i < 55 else 0.0},{int(50 <= i < 55)}\n" for i in range(100))
    f.write_text("timestamp,value,probability,anomaly_tag\n" + rows)
    (s,) = load_dataset("seed", tmp_path)
    assert s.name == "a" and s.values.shape == (100, 1) and s.labels.sum() == 5
    assert s.seen_end == 15 and s.windows == [(50, 54)]
    with pytest.raises(DataError, match="missing column"):
        (tmp_path / "b.csv").write_text("timestamp,val\n1,2\n")
        load_dataset("seed", tmp_path / "b.csv")


def test_nab_layout(tmp_path: Path) -> None:
    (tmp_path / "data" / "realX").mkdir(parents=True)
    ts = [f"2014-01-01 00:{m:02d}:00" for m in range(60)]
    rows = "".join(f"{t},{i}\n" for i, t in enumerate(ts))
    (tmp_path / "data" / "realX" / "f.csv").write_text("timestamp,value\n" + rows)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(
        {"realX/f.csv": [["2014-01-01 00:30:00.000000", "2014-01-01 00:39:00.000000"]]}))
    (s,) = load_dataset("nab", tmp_path)
    assert s.name == "realX/f.csv" and s.windows == [(30, 39)] and s.labels.sum() == 10 and s.seen_end == 9
    assert str(s.timestamps[30]).startswith("2014-01-01T00:30")
    assert set(nab_profiles(tmp_path)) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}


def test_ucr_layout(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "001_UCR_Anomaly_40.txt").write_text("  ".join(str(i) for i in range(50)) + "\n" +
                                                              "\n".join(str(i) for i in range(50, 100)))
    (tmp_path / "ucr_index.csv").write_text(
        "id,competition_file,n_points,train_end,anomaly_begin,anomaly_end,series_name\n"
        "1,001_UCR_Anomaly_40.txt,100,40,61,65,X\n")
    (s,) = load_dataset("ucr", tmp_path)
    assert s.n_points == 100 and s.seen_end == 40
    assert label_runs(s.labels) == [(60, 64)]  # 1-based inclusive 61..65
    assert s.meta["anomaly_begin"] == 60 and s.meta["anomaly_end"] == 64


def test_smd_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "machine-1-1_train.npy", rng.random((30, 38)).astype(np.float32))
    np.save(tmp_path / "machine-1-1_test.npy", rng.random((20, 38)).astype(np.float32))
    np.save(tmp_path / "machine-1-1_test_label.npy", (np.arange(20) >= 15).astype(np.int8))
    (s,) = load_dataset("smd", tmp_path)
    assert s.values.shape == (50, 38) and s.seen_end == 30 and label_runs(s.labels) == [(45, 49)]


def test_smap_msl_layout(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    np.save(tmp_path / "train" / "P-1.npy", np.ones((30, 5)))
    np.save(tmp_path / "test" / "P-1.npy", np.zeros((20, 5)))
    (tmp_path / "labeled_anomalies.csv").write_text(
        'chan_id,spacecraft,anomaly_sequences,class,num_values\nP-1,SMAP,"[[2, 4], [10, 10]]",[point],20\n')
    (s,) = load_dataset("smap_msl", tmp_path)
    assert s.values.shape == (50, 1) and s.seen_end == 30 and label_runs(s.labels) == [(32, 34), (40, 40)]
    assert s.meta["spacecraft"] == "SMAP"


def test_crop_seen_keeps_the_tail_of_the_seen_part(tmp_path: Path) -> None:
    np.save(tmp_path / "machine-1-1_train.npy", np.arange(300.0).reshape(100, 3))
    np.save(tmp_path / "machine-1-1_test.npy", np.zeros((20, 3)))
    np.save(tmp_path / "machine-1-1_test_label.npy", np.ones(20, np.int8))
    (s,) = load_dataset("smd", tmp_path)
    c = s.crop_seen(10)
    assert c.seen_end == 10 and c.n_points == 30 and c.values[0, 0] == 270.0 and c.labels.sum() == 20
    assert s.crop_seen(None) is s


def test_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    for kind in ("nab", "ucr", "smd", "smap_msl", "seed"):
        with pytest.raises(DataError):
            load_dataset(kind, tmp_path / "absent")
    with pytest.raises(DataError, match="NAB data"):
        load_dataset("nab", tmp_path)
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("kdd", tmp_path)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not present")
def test_real_dev_data_shapes() -> None:
    nab = load_dataset("nab", SHARED / "nab")
    assert len(nab) == 31 and sum(len(s.windows) for s in nab) == 57
    assert len(load_dataset("ucr", SHARED / "ucr", limit=2)) == 2
    (smd,) = load_dataset("smd", SHARED / "smd", limit=1)
    assert smd.channels == 38
    assert len(load_dataset("smap_msl", SHARED / "smap_msl")) == 27
