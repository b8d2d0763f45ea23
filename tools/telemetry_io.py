"""Reading telemetry files into points for `publish` (csv module only: usable in the torch-free image).

Accepts the seed's CSV (`timestamp, value, probability, anomaly_tag`), NAB-style `timestamp,value` files,
and files with a `series_id` column; `value_*` or several numeric columns are not guessed at.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from model.errors import DataError


@dataclass(frozen=True)
class Point:
    series_id: str
    ts: int
    value: float


def parse_ts(raw: str, where: str) -> int:
    """An integer timestamp as is, or a date-time string (NAB's `YYYY-MM-DD HH:MM:SS`, ISO 8601) in epoch ms."""
    raw = raw.strip()
    for number in (int, float):
        try:
            return int(number(raw))
        except ValueError:
            pass
    try:
        return _parse_datetime(raw)
    except ValueError as e:
        raise DataError(f"{where}: timestamp {raw!r} is neither a number nor a date-time") from e


def _parse_datetime(raw: str) -> int:
    dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def read_points(path: Path, series_id: str | None = None) -> Iterator[Point]:
    """Points of one CSV file in file order; series id from the `series_id` column, the option, or the file name."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        missing = {"timestamp", "value"} - cols
        if missing:
            raise DataError(f"{path}: missing column(s) {sorted(missing)} (found {sorted(cols)})")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            try:
                value = float(row["value"])
            except (TypeError, ValueError) as e:
                raise DataError(f"{where}: value {row['value']!r} is not a number") from e
            sid = row.get("series_id") or series_id or path.stem
            yield Point(sid, parse_ts(row["timestamp"], where), value)
