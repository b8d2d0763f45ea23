"""The one series type of the offline side, the one data-file lister and the CSV reader (numpy + the standard
library's csv: no pandas, so `detect` works in a worker-only install).

Training, finetuning, calibration, retraining, `detect`, `evaluate` and the tools all hold their data as
`Series`. A CSV file has the columns `timestamp, value` (several channels: `value_0, value_1, ...`); training
also needs labels, `probability` in [0, 1] (or `anomaly_tag` 0/1 as a fallback). Every problem becomes a
one-line `DataError` naming the file.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.errors import DataError

log = logging.getLogger(__name__)

REQUIRED = ("timestamp", "value")
_MAX_SHOWN = 3  # bad rows quoted in an error message


@dataclass
class Series:
    """One series, one channel (`values` (T,)) or several ((T, C)), float64 and finite.

    `labels` (T,) int8, 1 = anomalous point, None when the data has none; `probability` (T,) in [0, 1] is the
    soft label training fits (None: unlabelled). `seen_end`: the points before it are the part a detector may
    learn from (a train split, NAB's probationary period). `windows`: NAB anomaly windows as inclusive row
    ranges. `timestamps`: int64 when every timestamp is an integer, else text (or None)."""

    name: str
    values: np.ndarray
    labels: np.ndarray | None = None
    seen_end: int = 0
    timestamps: np.ndarray | None = None
    windows: list[tuple[int, int]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    probability: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        n = len(self.values)
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int8)
            if len(self.labels) != n:
                raise DataError(f"{self.name}: {n} values but {len(self.labels)} labels")
        if self.probability is not None and len(self.probability) != n:
            raise DataError(f"{self.name}: {n} values but {len(self.probability)} probabilities")
        if not 0 <= self.seen_end <= n:
            raise DataError(f"{self.name}: seen_end {self.seen_end} outside [0, {n}]")
        if not np.all(np.isfinite(self.values)):
            raise DataError(f"{self.name}: values contain NaN or inf")

    def __len__(self) -> int:
        return len(self.values)

    @property
    def n_points(self) -> int:
        return len(self.values)

    @property
    def matrix(self) -> np.ndarray:
        """The values as (T, C)."""
        return self.values.reshape(len(self.values), -1)

    @property
    def channels(self) -> int:
        return self.matrix.shape[1]

    def crop_seen(self, max_seen: int | None) -> Series:
        """Keep at most the last `max_seen` points of the seen part (a speed knob for long train splits)."""
        if max_seen is None or self.seen_end <= max_seen:
            return self
        cut = self.seen_end - max_seen
        return Series(
            name=self.name, values=self.values[cut:], labels=None if self.labels is None else self.labels[cut:],
            seen_end=max_seen, timestamps=None if self.timestamps is None else self.timestamps[cut:],
            windows=[(a - cut, b - cut) for a, b in self.windows if b >= cut],
            meta={**self.meta, "seen_cropped_from": self.seen_end},
            probability=None if self.probability is None else self.probability[cut:],
        )


def data_files(path: str | Path, suffixes: Sequence[str] = (".csv",)) -> list[Path]:
    """The file itself, or every file under a directory (recursively, sorted) whose suffix is one of `suffixes`."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        wanted = {s.lower() for s in suffixes}
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in wanted)
        if not files:
            raise DataError(f"{p}: no {' or '.join(sorted(wanted))} files in this directory")
        return files
    raise DataError(f"{p}: no such file or directory")


def _numeric(cells: list[str], column: str, name: str) -> np.ndarray:
    """A column as finite float64, or a DataError quoting the first offending rows (1-based, header = 1)."""
    out = np.empty(len(cells))
    bad = []
    for i, cell in enumerate(cells):
        try:
            out[i] = float(cell)
        except ValueError:
            out[i] = math.nan
        if not math.isfinite(out[i]):
            bad.append(i)
    if bad:
        shown = ", ".join(f"line {i + 2} ({cells[i]!r})" for i in bad[:_MAX_SHOWN])
        more = f" and {len(bad) - _MAX_SHOWN} more" if len(bad) > _MAX_SHOWN else ""
        raise DataError(f"{name}: column '{column}' has non-numeric or missing values: {shown}{more}")
    return out


def _timestamps(cells: list[str]) -> np.ndarray:
    """Integer timestamps (e.g. epoch ms, also written as 1.7e12) stay integers; anything else is kept as text."""
    try:
        numbers = [float(c) for c in cells]
    except ValueError:
        return np.array(cells, dtype=object)
    if all(math.isfinite(x) and x == round(x) for x in numbers):
        return np.array([int(c) if c.lstrip("+-").isdigit() else int(float(c)) for c in cells], dtype=np.int64)
    return np.array(cells, dtype=object)


def _labels(columns: dict[str, list[str]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(probability, label) from `probability` and/or `anomaly_tag`."""
    tag = _numeric(columns["anomaly_tag"], "anomaly_tag", name) if "anomaly_tag" in columns else None
    if tag is not None and not np.isin(tag, (0, 1)).all():
        raise DataError(f"{name}: column 'anomaly_tag' must hold 0 or 1")
    if "probability" in columns:
        prob = _numeric(columns["probability"], "probability", name)
        if prob.min() < 0 or prob.max() > 1:
            raise DataError(f"{name}: column 'probability' must lie in [0, 1] "
                            f"(found {prob.min():g} .. {prob.max():g})")
    else:
        assert tag is not None
        prob = tag.astype(np.float64)
    label = tag if tag is not None else (prob >= 0.5)
    return prob, label.astype(np.int8)


def read_columns(path: Path) -> dict[str, list[str]]:
    """A CSV file as stripped text columns by header name; DataError if it cannot be read."""
    name = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, skipinitialspace=True))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{name}: not a readable CSV file ({str(e).strip().splitlines()[0]})") from e
    rows = [r for r in rows if r]  # blank lines
    if not rows:
        raise DataError(f"{name}: not a readable CSV file (no columns to parse)")
    header = [c.strip() for c in rows[0]]
    body = rows[1:]
    for k, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{name}: not a readable CSV file (line {k + 2} has {len(r)} fields, "
                            f"the header {len(header)})")
    return {h: [r[j].strip() for r in body] for j, h in enumerate(header)}


def load_csv(path: str | Path, labels: bool = False) -> Series:
    """Read one CSV. With `labels=True` the file must carry `probability` or `anomaly_tag`."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise DataError(f"{name}: no such file")
    columns = read_columns(path)
    channels = value_columns(columns)
    missing = [c for c in REQUIRED if c not in columns and not (c == "value" and channels)]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)} "
                        f"(found: {', '.join(columns) or 'none'}; need timestamp, value "
                        "or value_0, value_1, ... for several channels)")
    if not columns[channels[0]]:
        raise DataError(f"{name}: no data rows")
    has_labels = "probability" in columns or "anomaly_tag" in columns
    if labels and not has_labels:
        raise DataError(f"{name}: training needs a 'probability' column (or 'anomaly_tag' as a fallback)")
    probability = label = None
    if has_labels:
        probability, label = _labels(columns, name)
    parts = [_numeric(columns[c], c, name) for c in channels]
    values = parts[0] if len(parts) == 1 else np.stack(parts, axis=1)
    return Series(name=name, values=values, labels=label, timestamps=_timestamps(columns["timestamp"]),
                  probability=probability)


def value_columns(columns: dict[str, list[str]]) -> list[str]:
    """`value` for one channel, else `value_0, value_1, ...` (several channels, in that order); [] if neither.
    The numbered columns must run from 0 without a gap."""
    if "value" in columns:
        return ["value"]
    numbered = sorted((int(c[6:]), c) for c in columns if c.startswith("value_") and c[6:].isdigit())
    if [k for k, _ in numbered] != list(range(len(numbered))):
        return []
    return [c for _, c in numbered]


def load_series(path: str | Path, labels: bool = False) -> list[Series]:
    """Read one CSV file or every CSV under a directory."""
    series = [load_csv(f, labels=labels) for f in data_files(path)]
    log.info("loaded %d series (%d points) from %s", len(series), sum(len(s) for s in series), path)
    return series


def require_length(series: list[Series], window_size: int) -> None:
    """Every series must fill at least one window."""
    for s in series:
        if len(s) < window_size:
            raise DataError(f"{s.name}: {len(s)} rows, shorter than the model's window of {window_size}")
