"""CSV loading: good files load, every kind of bad input is one clear DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.series import load_csv, load_series, require_length
from model.errors import DataError


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_loads_values_labels_and_text_timestamps(tmp_path: Path) -> None:
    f = _write(tmp_path / "a.csv", "timestamp,value,probability,anomaly_tag\n"
                                   "2026-01-01 00:00:00,1.5,0,0\n2026-01-01 00:01:00,2.5,0.7,1\n")
    s = load_csv(f, labels=True)
    np.testing.assert_array_equal(s.values, [1.5, 2.5])
    np.testing.assert_array_equal(s.probability, [0.0, 0.7])
    np.testing.assert_array_equal(s.labels, [0, 1])
    assert list(s.timestamps) == ["2026-01-01 00:00:00", "2026-01-01 00:01:00"]


def test_integer_timestamps_stay_integers_and_labels_are_optional(tmp_path: Path) -> None:
    s = load_csv(_write(tmp_path / "a.csv", "timestamp, value\n1732600000000, 3\n1732600060000, 4\n"))
    assert s.timestamps.dtype == np.int64 and s.timestamps[1] == 1732600060000
    assert s.probability is None and s.labels is None


def test_anomaly_tag_is_the_fallback_label(tmp_path: Path) -> None:
    s = load_csv(_write(tmp_path / "a.csv", "timestamp,value,anomaly_tag\n1,1,0\n2,9,1\n"), labels=True)
    np.testing.assert_array_equal(s.probability, [0.0, 1.0])


def test_directory_is_read_recursively_in_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "b.csv", "timestamp,value\n1,1\n")
    _write(tmp_path / "sub" / "a.csv", "timestamp,value\n1,2\n")
    _write(tmp_path / "notes.txt", "not data")
    assert [s.values[0] for s in load_series(tmp_path)] == [1.0, 2.0]


@pytest.mark.parametrize(("text", "message"), [
    ("time,val\n1,2\n", "missing column(s) timestamp, value"),
    ("timestamp,level\n1,2\n", "missing column(s) value"),
    ("timestamp,value\n1,2\n2,abc\n3,4\n", "non-numeric or missing values: line 3 ('abc')"),
    ("timestamp,value\n1,2\n2,\n", "non-numeric or missing values: line 3"),
    ("timestamp,value\n1,inf\n", "non-numeric"),
    ("timestamp,value\n", "no data rows"),
    ("", "not a readable CSV"),
    ("timestamp,value,probability\n1,2,1.5\n", "must lie in [0, 1]"),
    ("timestamp,value,anomaly_tag\n1,2,7\n", "0 or 1"),
])
def test_bad_files_raise_one_clear_data_error(tmp_path: Path, text: str, message: str) -> None:
    f = _write(tmp_path / "bad.csv", text)
    with pytest.raises(DataError) as info:
        load_csv(f, labels="probability" in text or "anomaly_tag" in text)
    assert message in str(info.value) and str(f) in str(info.value)
    assert "\n" not in str(info.value)


def test_training_needs_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="needs a 'probability' column"):
        load_csv(_write(tmp_path / "a.csv", "timestamp,value\n1,2\n"), labels=True)


def test_missing_paths_and_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        load_series(tmp_path / "absent")
    with pytest.raises(DataError, match="no .csv files"):
        load_series(tmp_path)
    with pytest.raises(DataError, match="no such file"):
        load_csv(tmp_path / "absent.csv")


def test_series_shorter_than_the_window(tmp_path: Path) -> None:
    s = load_csv(_write(tmp_path / "a.csv", "timestamp,value\n1,1\n2,2\n"))
    require_length([s], 2)
    with pytest.raises(DataError, match="2 rows, shorter than the model's window of 3"):
        require_length([s], 3)
