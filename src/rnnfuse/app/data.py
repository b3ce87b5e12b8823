"""Reading a univariate time series from a CSV file, with errors that point at the cell.

The embedded data set is the weekly Mauna Loa CO2 series (``rnnfuse/data/co2.csv``, see
``rnnfuse/data/README.md``).  Missing values (an empty cell, ``NA``, ``NaN``) are filled by
linear interpolation between the neighbouring observed values; :class:`Series` keeps a mask
of the observed points so that no filled value is ever used as a target or for scoring.
Missing values before the first or after the last observation are dropped.  An empty line
is a missing value in a one-column file and is skipped in a file with several columns.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["Series", "DataError", "load_csv", "load_embedded", "load_series", "EMBEDDED_NAME"]

EMBEDDED_NAME = "co2.csv"
_MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}
_DATE_FORMATS = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")


class DataError(ValueError):
    """Bad input data; the message names the file, line and column."""


@dataclass(frozen=True)
class Series:
    """A regularly sampled series with its (optional) time stamps.

    ``values``: float64, gaps filled; ``observed``: true where the file had a value;
    ``times``: days since 1970-01-01 when the time column holds dates, the numbers when it
    holds numbers, ``None`` without a time column; ``time_kind``: ``"date"``, ``"number"``
    or ``"index"``; ``labels``: the time cells as written (or the row numbers).
    """

    values: np.ndarray
    observed: np.ndarray
    times: np.ndarray | None
    time_kind: str
    labels: list[str]
    source: str
    column: str
    dropped_edges: int = 0

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def missing(self) -> int:
        """Number of filled (interpolated) points."""
        return int((~self.observed).sum())

    @property
    def longest_gap(self) -> int:
        """Length of the longest run of filled points."""
        longest = run = 0
        for seen in self.observed:
            run = 0 if seen else run + 1
            longest = max(longest, run)
        return longest

    def describe(self) -> str:
        """One line: source, length, filled points."""
        edges = f", {self.dropped_edges} missing at the ends dropped" if self.dropped_edges else ""
        return (
            f"{self.source} column {self.column!r}: {len(self)} rows, {self.missing} missing values filled "
            f"by linear interpolation (longest gap {self.longest_gap}){edges}"
        )


def load_embedded() -> Series:
    """The weekly Mauna Loa CO2 series, 1958-03-29 to 2001-12-29 (2284 weeks, ppmv)."""
    path = resources.files("rnnfuse") / "data" / EMBEDDED_NAME
    with resources.as_file(path) as real:
        series = load_csv(real, "co2", "date")
    return Series(**{**series.__dict__, "source": f"embedded {EMBEDDED_NAME}"})


def load_csv(path: str | Path, column: str, time_column: str | None = None) -> Series:
    """Read ``column`` (and ``time_column``) from a CSV file with a header line.

    Raises :class:`DataError` naming the file, line and column for a missing file or
    column, a row with too few fields, a value that is not a number, a time that cannot
    be parsed or that does not increase.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (expected a CSV file with a header line)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 text: {exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{path}, line 1: expected a header line naming the columns, got an empty line")
    header = [cell.strip() for cell in rows[0]]
    col = _column_index(path, header, column, "--column")
    tcol = None if time_column is None else _column_index(path, header, time_column, "--time-column")
    raw_values, raw_times = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:  # an empty line: a missing value in a one-column file, else nothing
            if len(header) > 1:
                continue
            row = [""]
        needed = max(col, tcol if tcol is not None else 0)
        if len(row) <= needed:
            raise DataError(
                f"{path}, line {line}: expected at least {needed + 1} fields (up to column "
                f"{header[needed]!r}), got {len(row)}"
            )
        raw_values.append((line, _number(path, line, column, row[col])))
        if tcol is not None:
            raw_times.append((line, row[tcol].strip()))
    if not raw_values:
        raise DataError(f"{path}: no data rows after the header line")
    return _build_series(path, column, time_column, raw_values, raw_times)


def _column_index(path: Path, header: list[str], name: str, flag: str) -> int:
    if name not in header:
        raise DataError(
            f"{path}, line 1: no column {name!r} ({flag}); the header has {header}"
        )
    return header.index(name)


def _number(path: Path, line: int, column: str, cell: str) -> float:
    text = cell.strip()
    if text.lower() in _MISSING:
        return float("nan")
    try:
        value = float(text)
    except ValueError:
        raise DataError(
            f"{path}, line {line}, column {column!r}: expected a number (or an empty cell / NA for a "
            f"missing value), got {cell!r}"
        ) from None
    if not np.isfinite(value):
        raise DataError(f"{path}, line {line}, column {column!r}: expected a finite number, got {cell!r}")
    return value


def _build_series(
    path: Path, column: str, time_column: str | None, raw_values: list, raw_times: list
) -> Series:
    values = np.array([v for _, v in raw_values], dtype=np.float64)
    observed = np.isfinite(values)
    if not observed.any():
        raise DataError(f"{path}, column {column!r}: every value is missing")
    first, last = int(np.argmax(observed)), len(values) - int(np.argmax(observed[::-1]))
    times, kind = (None, "index")
    labels = [str(line) for line, _ in raw_values]
    if time_column is not None:
        times, kind = _parse_times(path, time_column, raw_times)
        labels = [t for _, t in raw_times]
    keep = slice(first, last)
    values, observed = values[keep], observed[keep]
    idx = np.arange(len(values))
    filled = np.interp(idx, idx[observed], values[observed])
    return Series(
        values=filled,
        observed=observed,
        times=None if times is None else times[keep],
        time_kind=kind,
        labels=labels[keep],
        source=str(path),
        column=column,
        dropped_edges=len(raw_values) - (last - first),
    )


def _parse_times(path: Path, column: str, raw: list[tuple[int, str]]) -> tuple[np.ndarray, str]:
    line0, first = raw[0]
    kind = "date" if _parse_date(first) is not None else "number"
    out = np.empty(len(raw), dtype=np.float64)
    for i, (line, text) in enumerate(raw):
        value = _parse_date(text) if kind == "date" else _parse_float(text)
        if value is None:
            expected = "a date like 1958-03-29 or 19580329" if kind == "date" else "a number"
            raise DataError(
                f"{path}, line {line}, column {column!r}: expected {expected} (as on line {line0}), got {text!r}"
            )
        if i and value <= out[i - 1]:
            raise DataError(
                f"{path}, line {line}, column {column!r}: times must increase; {text!r} does not come "
                f"after {raw[i - 1][1]!r} on line {raw[i - 1][0]}"
            )
        out[i] = value
    return out, kind


def _parse_date(text: str) -> float | None:
    for fmt in _DATE_FORMATS:
        try:
            stamp = dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
        return (stamp - dt.datetime(1970, 1, 1)).total_seconds() / 86400.0
    return None


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def load_series(csv_path: str | None, column: str, time_column: str | None) -> Series:
    """The embedded CO2 series when ``csv_path`` is ``None``, else :func:`load_csv`."""
    if csv_path is None:
        return load_embedded()
    return load_csv(csv_path, column, time_column)
