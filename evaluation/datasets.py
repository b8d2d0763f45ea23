"""Labelled evaluation data in, `Series` records out: the seed's CSV, NAB, UCR, SMD and SMAP/MSL.

Every loader returns the same record. `seen_end` marks where the part that a detector may see without
labels ends (NAB's probationary period, UCR's training prefix, the SMD and SMAP/MSL train splits): a
detector may fit, calibrate and choose thresholds on `values[:seen_end]`, and metrics are computed on
`values[seen_end:]` only. The folder layouts are those described in `../shared/data/README.md`.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation.nab import PUBLISHED_PROFILES, probationary_length
from evaluation.series import Series, data_files
from model.errors import DataError

DATASETS: tuple[str, ...] = ("seed", "nab", "ucr", "smd", "smap_msl")
def label_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) index pairs of the runs of non-zero labels."""
    padded = np.concatenate([[0], (np.asarray(labels) > 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path}: no such folder ({what}); see ../shared/data/README.md for the layout")
    return path


def _limit(items: list, limit: int | None) -> list:
    return items if limit is None else items[:limit]


# --- the seed's CSV --------------------------------------------------------------------------------------

def load_seed(path: Path, limit: int | None = None) -> list[Series]:
    """CSV files with columns `timestamp, value, probability, anomaly_tag` (a file or a folder of them).

    There is no separate training part, so the seen part is NAB's probationary period, and the anomaly
    runs serve as NAB windows.
    """
    import pandas as pd

    out = []
    for f in _limit(data_files(path), limit):
        df = pd.read_csv(f, skipinitialspace=True)
        df.columns = [c.strip() for c in df.columns]
        missing = {"value", "anomaly_tag"} - set(df.columns)
        if missing:
            raise DataError(f"{f}: missing column(s) {sorted(missing)}; expected timestamp,value,probability,"
                            "anomaly_tag")
        try:
            values = df["value"].to_numpy(dtype=np.float64)
            labels = (df["anomaly_tag"].astype(float).to_numpy() > 0).astype(np.int8)
        except ValueError as e:
            raise DataError(f"{f}: non-numeric value or anomaly_tag ({e})") from e
        ts = df["timestamp"].to_numpy() if "timestamp" in df.columns else None
        out.append(Series(f.stem, values, labels, probationary_length(len(values)), ts,
                          windows=label_runs(labels), meta={"file": str(f)}))
    return out


# --- NAB ----------------------------------------------------------------------------------------------------

def load_nab(path: Path, limit: int | None = None) -> list[Series]:
    """`data/<category>/<name>.csv` with the windows of `labels/combined_windows.json`; labels are 1 inside
    a window. Window limits are timestamps of rows in the file, mapped here to row indices."""
    import pandas as pd

    data = _require_dir(path / "data", "NAB data")
    windows_file = path / "labels" / "combined_windows.json"
    if not windows_file.is_file():
        raise DataError(f"{windows_file}: not found")
    all_windows = json.loads(windows_file.read_text())
    files = sorted(data.glob("*/*.csv"))
    if not files:
        raise DataError(f"{data}: no <category>/<name>.csv files")
    out = []
    for f in _limit(files, limit):
        key = f"{f.parent.name}/{f.name}"
        df = pd.read_csv(f)
        ts = pd.to_datetime(df["timestamp"]).to_numpy()
        windows = []
        for start, end in all_windows.get(key, []):
            a = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(start)), side="left"))
            b = int(np.searchsorted(ts, np.datetime64(pd.Timestamp(end)), side="right")) - 1
            if a <= b:
                windows.append((a, b))
        labels = np.zeros(len(df), dtype=np.int8)
        for a, b in windows:
            labels[a:b + 1] = 1
        out.append(Series(key, df["value"].to_numpy(np.float64), labels, probationary_length(len(df)), ts,
                          windows=windows, meta={"category": f.parent.name}))
    return out


def nab_profiles(path: Path) -> dict[str, dict[str, float]]:
    """NAB's cost profiles from `config/profiles.json` (falling back to the published values)."""
    for candidate in (path / "config" / "profiles.json", path / "labels" / "profiles.json"):
        if candidate.is_file():
            raw = json.loads(candidate.read_text())
            return {name: dict(p["CostMatrix"]) for name, p in raw.items()}
    return {name: dict(p) for name, p in PUBLISHED_PROFILES.items()}


# --- UCR ----------------------------------------------------------------------------------------------------

def load_ucr(path: Path, limit: int | None = None) -> list[Series]:
    """`ucr_index.csv` (1-based inclusive anomaly positions, `train_end`) and `data/<file>` of whitespace
    separated values. The points before `train_end` are anomaly-free and form the seen part."""
    import pandas as pd

    index_file = path / "ucr_index.csv"
    _require_dir(path / "data", "UCR data")
    if not index_file.is_file():
        raise DataError(f"{index_file}: not found")
    index = pd.read_csv(index_file).sort_values("id")
    out = []
    for row in _limit(list(index.itertuples()), limit):
        f = path / "data" / row.competition_file
        if not f.is_file():
            raise DataError(f"{f}: listed in ucr_index.csv but missing")
        values = np.array(f.read_text().split(), dtype=np.float64)
        begin, end = int(row.anomaly_begin) - 1, int(row.anomaly_end) - 1  # to 0-based inclusive
        labels = np.zeros(len(values), dtype=np.int8)
        labels[begin:end + 1] = 1
        out.append(Series(f.stem, values, labels, int(row.train_end),
                          meta={"anomaly_begin": begin, "anomaly_end": end, "series_name": row.series_name}))
    return out


# --- SMD ----------------------------------------------------------------------------------------------------

def load_smd(path: Path, limit: int | None = None) -> list[Series]:
    """`machine-X-Y_{train,test}.npy` (T, 38) and `_test_label.npy`: train then test as one stream, the
    train split being the seen part (its points count as normal; they are never scored)."""
    _require_dir(path, "SMD")
    machines = sorted(p.name[: -len("_test.npy")] for p in path.glob("machine-*_test.npy"))
    if not machines:
        raise DataError(f"{path}: no machine-*_test.npy files")
    out = []
    for m in _limit(machines, limit):
        train = np.load(path / f"{m}_train.npy").astype(np.float64)
        test = np.load(path / f"{m}_test.npy").astype(np.float64)
        test_labels = np.load(path / f"{m}_test_label.npy").astype(np.int8)
        values = np.concatenate([train, test])
        labels = np.concatenate([np.zeros(len(train), np.int8), test_labels])
        out.append(Series(m, values, labels, len(train)))
    return out


# --- SMAP / MSL ---------------------------------------------------------------------------------------------

def load_smap_msl(path: Path, limit: int | None = None) -> list[Series]:
    """`train/<chan>.npy`, `test/<chan>.npy` and `labeled_anomalies.csv`. Column 0 is the telemetry; the
    other columns are command flags and are dropped. Anomaly sequences index the test split, inclusive."""
    import pandas as pd

    _require_dir(path / "test", "SMAP/MSL test split")
    index_file = path / "labeled_anomalies.csv"
    if not index_file.is_file():
        raise DataError(f"{index_file}: not found")
    index = pd.read_csv(index_file)
    out = []
    for row in _limit(list(index.itertuples()), limit):
        train = np.load(path / "train" / f"{row.chan_id}.npy")[:, :1].astype(np.float64)
        test = np.load(path / "test" / f"{row.chan_id}.npy")[:, :1].astype(np.float64)
        labels = np.zeros(len(train) + len(test), dtype=np.int8)
        for a, b in ast.literal_eval(row.anomaly_sequences):
            labels[len(train) + a:len(train) + b + 1] = 1
        out.append(Series(row.chan_id, np.concatenate([train, test]), labels, len(train),
                          meta={"spacecraft": row.spacecraft}))
    return out


LOADERS: dict[str, Callable[[Path, int | None], list[Series]]] = {
    "seed": load_seed, "nab": load_nab, "ucr": load_ucr, "smd": load_smd, "smap_msl": load_smap_msl,
}


def load_dataset(kind: str, path: str | Path, limit: int | None = None) -> list[Series]:
    """Load every series of a dataset (the first `limit` in a stable order if given)."""
    if kind not in LOADERS:
        raise DataError(f"unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}")
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    series = LOADERS[kind](p, limit)
    for s in series:  # every dataset's values as (T, C), one channel included
        s.values = s.matrix
    if not series:
        raise DataError(f"{p}: no series found for dataset {kind!r}")
    return series
