"""Load series from CSV: one file or a directory of files in, validated `Series` out.

Detection needs the columns `timestamp, value`; training also needs labels, `probability` in [0, 1]
(or `anomaly_tag` 0/1 as a fallback). Every problem becomes a one-line `DataError` naming the file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

REQUIRED = ("timestamp", "value")
_MAX_SHOWN = 3  # bad rows quoted in an error message


@dataclass
class Series:
    """One univariate series; labels are None when the file has none."""

    name: str
    timestamps: np.ndarray  # (T,) int64 when every timestamp is an integer, else str objects
    values: np.ndarray  # (T,) float64, finite
    probability: np.ndarray | None = None  # (T,) float64 in [0, 1]
    label: np.ndarray | None = None  # (T,) int8 0/1: anomaly_tag, or probability >= 0.5

    def __len__(self) -> int:
        return len(self.values)


def csv_files(path: str | Path) -> list[Path]:
    """The CSV file itself, or every `*.csv` under a directory (recursively, sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.csv") if f.is_file())
        if not files:
            raise DataError(f"{p}: no .csv files in this directory")
        return files
    raise DataError(f"{p}: no such file or directory")


def _numeric(frame: pd.DataFrame, column: str, name: str) -> np.ndarray:
    """A column as finite float64, or a DataError quoting the first offending rows (1-based, header = 1)."""
    import pandas as pd

    raw = frame[column]
    num = pd.to_numeric(raw.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(num))
    if len(bad):
        shown = ", ".join(f"line {i + 2} ({raw.iloc[i]!r})" for i in bad[:_MAX_SHOWN])
        more = f" and {len(bad) - _MAX_SHOWN} more" if len(bad) > _MAX_SHOWN else ""
        raise DataError(f"{name}: column '{column}' has non-numeric or missing values: {shown}{more}")
    return num


def _timestamps(raw: pd.Series) -> np.ndarray:
    """Integer timestamps (e.g. epoch ms) stay integers; anything else is kept as its text."""
    import pandas as pd

    as_int = pd.to_numeric(raw, errors="coerce")
    if as_int.notna().all() and (as_int == as_int.round()).all():
        return as_int.to_numpy(dtype=np.int64)
    return raw.to_numpy(dtype=object)


def _labels(frame: pd.DataFrame, columns: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(probability, label) from `probability` and/or `anomaly_tag`."""
    tag = _numeric(frame, "anomaly_tag", name) if "anomaly_tag" in columns else None
    if tag is not None and not np.isin(tag, (0, 1)).all():
        raise DataError(f"{name}: column 'anomaly_tag' must hold 0 or 1")
    if "probability" in columns:
        prob = _numeric(frame, "probability", name)
        if prob.min() < 0 or prob.max() > 1:
            raise DataError(f"{name}: column 'probability' must lie in [0, 1] "
                            f"(found {prob.min():g} .. {prob.max():g})")
    else:
        prob = tag.astype(np.float64)  # type: ignore[union-attr]
    label = tag if tag is not None else (prob >= 0.5)
    return prob, label.astype(np.int8)


def load_csv(path: str | Path, labels: bool = False) -> Series:
    """Read one CSV. With `labels=True` the file must carry `probability` or `anomaly_tag`."""
    import pandas as pd

    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise DataError(f"{name}: no such file")
    try:
        # Everything as text first, so that bad cells can be quoted back to the user.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{name}: not a readable CSV file ({str(e).strip().splitlines()[0]})") from e
    columns = [str(c).strip() for c in frame.columns]
    frame.columns = columns
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {', '.join(missing)} "
                        f"(found: {', '.join(columns) or 'none'}; need timestamp, value)")
    if len(frame) == 0:
        raise DataError(f"{name}: no data rows")
    series = Series(name=name, timestamps=_timestamps(frame["timestamp"]),
                    values=_numeric(frame, "value", name))
    has_labels = "probability" in columns or "anomaly_tag" in columns
    if labels and not has_labels:
        raise DataError(f"{name}: training needs a 'probability' column (or 'anomaly_tag' as a fallback)")
    if has_labels:
        series.probability, series.label = _labels(frame, columns, name)
    return series


def load_series(path: str | Path, labels: bool = False) -> list[Series]:
    """Read one CSV file or every CSV under a directory."""
    series = [load_csv(f, labels=labels) for f in csv_files(path)]
    log.info("loaded %d series (%d points) from %s", len(series), sum(len(s) for s in series), path)
    return series


def require_length(series: list[Series], window_size: int) -> None:
    """Every series must fill at least one window."""
    for s in series:
        if len(s) < window_size:
            raise DataError(f"{s.name}: {len(s)} rows, shorter than the model's window of {window_size}")
