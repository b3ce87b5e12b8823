"""Reading a time series (and its covariates) from a CSV file, with errors that point at the cell.

The embedded data set is the weekly Mauna Loa CO2 series (``rnnfuse/data/co2.csv``, see
``rnnfuse/data/README.md``), with one covariate, ``nino12``: the Nino 1+2 sea surface
temperature anomaly (``rnnfuse/data/elnino.csv``) of the month two before each week's month,
as it was known that week (:func:`embedded_covariate`).  Missing values of the series (an
empty cell, ``NA``, ``NaN``) are filled by linear interpolation between the neighbouring
observed values; :class:`Series` keeps a mask of the observed points so that no filled value
is ever used as a target or for scoring.  Missing values before the first or after the last
observation are dropped.  An empty line is a missing value in a one-column file and is
skipped in a file with several columns.

Covariates are other columns whose value at a row is known at that row's time (an index
that leads the series, already lagged by its publication delay); the encoders read them up
to the forecast origin, never after.  A missing covariate cell takes the last value before
it (what was known then; the first value before any).
"""

from __future__ import annotations

import csv
import re
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from .._files import NotRegularFileError, open_regular_file
from .timegrid import OffGrid, TimeGrid, fit_grid, parse_date, parse_number

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = [
    "Series",
    "DataError",
    "load_csv",
    "read_columns",
    "build_series",
    "load_embedded",
    "load_series",
    "load_data",
    "embedded_covariate",
    "EMBEDDED_NAME",
    "EMBEDDED_COVARIATES",
]

EMBEDDED_NAME = "co2.csv"
EMBEDDED_COVARIATES = ("nino12",)  # the covariates the embedded series comes with
ENSO_NAME = (
    "elnino.csv"  # monthly Nino 1+2 sea surface temperatures, 1950-2010 (see data/README.md)
)
ENSO_CLIMATOLOGY_YEARS = (
    1950,
    1979,
)  # the anomaly's reference years: before the validation stretch
ENSO_LAG_MONTHS = 2  # a week sees the anomaly of the month two before its own
_MISSING = {"", "na", "nan", "n/a", "null", "none", "-"}


class DataError(ValueError):
    """Bad input data; the message names the file, line and column."""


@dataclass(frozen=True)
class Series:
    """A regularly sampled series with its (optional) time stamps.

    ``values``: float64, gaps filled; ``observed``: true where the file had a value;
    ``times``: days since 1970-01-01 when the time column holds dates, the numbers when it
    holds numbers, ``None`` without a time column; ``time_kind``: ``"date"``, ``"number"``
    or ``"index"``; ``labels``: the time cells as written (or the row numbers), absent steps
    labelled from ``grid`` (:class:`~rnnfuse.app.timegrid.TimeGrid`: calendar months, quarters
    or years, or a fixed step; it also gives the times and labels past the end).
    """

    values: np.ndarray
    observed: np.ndarray
    times: np.ndarray | None
    time_kind: str
    labels: list[str]
    source: str
    column: str
    dropped_edges: int = 0
    inserted: int = 0  # absent time steps added as missing values
    step: str = ""  # the time column's step, as shown (``"7 days"``, ``"3 months"``)
    covariates: np.ndarray | None = (
        None  # (len, k) float64, gaps filled forward; None: no covariates
    )
    covariate_names: tuple[str, ...] = ()
    grid: TimeGrid | None = (
        None  # the time column's grid, position 0 at the first row; None without one
    )
    units: str = ""  # the values' units when known (``"ppm"`` for the embedded CO2), else ""

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
        absent = (
            f", {self.inserted} of them absent time steps (step {self.step})"
            if self.inserted
            else ""
        )
        covariates = (
            f"; covariates {', '.join(self.covariate_names)}" if self.covariate_names else ""
        )
        return (
            f"{self.source} column {self.column!r}: {len(self)} rows, {self.missing} missing "
            "values filled by linear interpolation (longest gap "
            f"{self.longest_gap}){absent}{edges}{covariates}"
        )


def load_embedded(covariates: Sequence[str] = ()) -> Series:
    """The weekly Mauna Loa CO2 series, 1958-03-29 to 2001-12-29 (2284 weeks, ppmv), with the
    ``covariates`` named (a subset of :data:`EMBEDDED_COVARIATES`)."""
    unknown = [c for c in covariates if c not in EMBEDDED_COVARIATES]
    if unknown:
        raise DataError(
            f"--covariates: the embedded series has the covariates {list(EMBEDDED_COVARIATES)}, "
            f"got {unknown[0]!r}"
        )
    path = resources.files("rnnfuse") / "data" / EMBEDDED_NAME
    with resources.as_file(path) as real:
        series = load_csv(real, "co2", "date")
    extra: dict[str, Any] = {}
    if covariates:
        extra = {
            "covariates": embedded_covariate(series)[:, None],
            "covariate_names": tuple(covariates),
        }
    return Series(
        **{**series.__dict__, "source": f"embedded {EMBEDDED_NAME}", "units": "ppm", **extra}
    )


def embedded_covariate(series: Series) -> np.ndarray:
    """``nino12`` at each row of a dated ``series`` ``(len,)``: the Nino 1+2 sea surface
    temperature anomaly (degrees C, ERSST v3b; the month's mean less that calendar month's mean
    over 1950-1979) of the month :data:`ENSO_LAG_MONTHS` before the row's month: a month's mean
    is published in the following month, so a week sees the last one surely out by then.
    Reads no month after the row's own (and the reference years lie before any validation
    stretch the series allows)."""
    if series.time_kind != "date" or series.times is None:
        raise DataError(f"{series.source}: the nino12 covariate needs dates in the time column")
    path = resources.files("rnnfuse") / "data" / ENSO_NAME
    with resources.as_file(path) as real:
        table = np.loadtxt(real, delimiter=",", skiprows=1)  # YEAR, JAN, ..., DEC
    first_year = int(table[0, 0])
    sst = table[:, 1:].ravel()
    lo, hi = (y - first_year for y in ENSO_CLIMATOLOGY_YEARS)
    anomaly = sst - np.tile(table[lo : hi + 1, 1:].mean(axis=0), len(table))
    stamps = np.datetime64("1970-01-01", "D") + series.times.astype(np.int64).astype(
        "timedelta64[D]"
    )
    months = (
        stamps.astype("datetime64[M]").astype(np.int64) - (first_year - 1970) * 12 - ENSO_LAG_MONTHS
    )
    if months.min() < 0 or months.max() >= len(anomaly):
        raise DataError(
            f"{series.source}: the nino12 covariate covers {first_year} to "
            f"{first_year + len(table) - 1} (less its {ENSO_LAG_MONTHS}-month lag); the "
            "series' dates run past it"
        )
    return anomaly[months]


MAX_VALUE, MIN_VALUE = (
    1e100,
    1e-100,
)  # the magnitudes of values and covariates (squares stay finite)
MAX_TIME_NUMBER = 1e15  # a numeric time column's values (far past any calendar or counter)
MAX_ROWS = 10_000_000  # rows of a CSV file, and steps once gaps in its time column are filled
MAX_LINE = 1 << 20  # characters on one line of a CSV file
MAX_FIELD = csv.field_size_limit()  # characters in one field (the csv module's limit, 128 KiB)


def load_csv(
    path: str | Path, column: str, time_column: str | None = None, covariates: Sequence[str] = ()
) -> Series:
    """Read ``column`` (and ``time_column``, and the ``covariates`` columns) from a CSV file
    with a header line, streaming it.

    Raises :class:`DataError` naming the file, line and column for a missing file or
    column, a path that is not a regular file, a line or field over the limits, a row with
    too few fields, a value that is not a number, a time that cannot be parsed, that does
    not increase or that is off the time column's grid (see :func:`_grid_positions`).
    """
    path = Path(path)
    raw = read_columns(path, column, time_column, tuple(covariates))[""]
    return build_series(path, column, time_column, raw, tuple(covariates), _SEVERAL_SERIES_HINT)


_SEVERAL_SERIES_HINT = (
    ". Several series in one file, one after another (long format: unique_id, ds, y)? "
    "`rnnfuse train --id-column COLUMN` trains one model across them; `rnnfuse demo` reads one "
    "series: give it a file of that series alone"
)


def read_columns(
    path: Path,
    column: str,
    time_column: str | None,
    covariates: tuple[str, ...],
    id_column: str | None = None,
) -> dict[str, RawColumns]:
    """The cells of the named columns, one :class:`RawColumns` per value of ``id_column`` (in the
    order of first appearance; the key ``""`` without one); errors as :func:`load_csv`'s."""
    try:
        fd = open_regular_file(
            path, "a CSV file with a header line"
        )  # the file checked is the file read
        with open(fd, encoding="utf-8-sig", newline="") as handle:
            return _read_rows(path, handle, column, time_column, covariates, id_column)
    except FileNotFoundError:
        raise DataError(
            f"{path}: file not found (expected a CSV file with a header line)"
        ) from None
    except NotRegularFileError as exc:
        raise DataError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as UTF-8 text: {exc}") from None


def _lines(path: Path, handle: TextIO) -> Iterator[str]:
    """The lines of ``handle``, each read with a bound (a file without line breaks is refused
    before it fills memory)."""
    number = 0
    while line := handle.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE:
            raise DataError(
                f"{path}, line {number}: longer than {MAX_LINE:,} characters; expected a CSV line"
            )
        yield line


def _read_rows(
    path: Path,
    handle: TextIO,
    column: str,
    time_column: str | None,
    covariates: tuple[str, ...],
    id_column: str | None = None,
) -> dict[str, RawColumns]:
    reader = csv.reader(_lines(path, handle))
    raws: dict[str, RawColumns] = {}
    try:
        header = [cell.strip() for cell in next(reader, [])]
        if not any(header):
            raise DataError(
                f"{path}, line 1: expected a header line naming the columns, got an empty line"
            )
        col = _column_index(path, header, column, "--column")
        tcol = (
            None
            if time_column is None
            else _column_index(path, header, time_column, "--time-column")
        )
        ccols = [(name, _column_index(path, header, name, "--covariates")) for name in covariates]
        icol = None if id_column is None else _column_index(path, header, id_column, "--id-column")
        rows = 0
        for row in reader:
            if icol is not None and not row:
                continue  # an empty line in a file of several columns
            key = "" if icol is None else _row_id(path, reader.line_num, row, header, icol)
            raw = raws.setdefault(key, RawColumns(len(ccols)))
            before = len(raw.values)
            _add_row(path, raw, reader.line_num, row, header, (column, col), tcol, ccols, rows)
            rows += len(raw.values) - before
    except csv.Error as exc:
        raise DataError(
            f"{path}, line {max(reader.line_num, 1)}: not valid CSV ({_csv_reason(exc)})"
        ) from None
    if not any(raw.values for raw in raws.values()):
        raise DataError(f"{path}: no data rows after the header line")
    return raws


def _row_id(path: Path, line: int, row: list[str], header: list[str], icol: int) -> str:
    """The row's series name in the id column (not empty)."""
    if len(row) <= icol:
        raise DataError(
            f"{path}, line {line}: expected at least {icol + 1} fields (up to column "
            f"{header[icol]!r}), got {len(row)}"
        )
    name = row[icol].strip()
    if not name:
        raise DataError(
            f"{path}, line {line}, column {header[icol]!r}: expected the name of the row's "
            "series, got an empty cell"
        )
    return name


def _csv_reason(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger than field limit" in text:
        return f"a field longer than {MAX_FIELD:,} characters"
    return text


class RawColumns:
    """The cells read so far, kept compact: line numbers, values, time cells."""

    def __init__(self, covariates: int = 0) -> None:
        self.lines, self.values = array("q"), array("d")
        self.times: list[str] = []
        self.covariates = [array("d") for _ in range(covariates)]


def _add_row(
    path: Path,
    raw: RawColumns,
    line: int,
    row: list[str],
    header: list[str],
    column: tuple[str, int],
    tcol: int | None,
    covariates: Sequence[tuple[str, int]] = (),
    rows: int = 0,
) -> None:
    """Append a data row's cells to ``raw`` (``rows``: data rows read so far, for the limit)."""
    if not row:  # an empty line: a missing value in a one-column file, else nothing
        if len(header) > 1:
            return
        row = [""]
    name, col = column
    needed = max(col, tcol if tcol is not None else 0, *(c for _, c in covariates))
    if len(row) <= needed:
        raise DataError(
            f"{path}, line {line}: expected at least {needed + 1} fields (up to column "
            f"{header[needed]!r}), got {len(row)}"
        )
    if max(rows, len(raw.values)) >= MAX_ROWS:
        raise DataError(
            f"{path}, line {line}: more than {MAX_ROWS:,} data rows; expected at most that many"
        )
    raw.lines.append(line)
    raw.values.append(_number(path, line, name, row[col]))
    for values, (cname, ccol) in zip(raw.covariates, covariates, strict=True):
        values.append(_number(path, line, cname, row[ccol]))
    if tcol is not None:
        raw.times.append(row[tcol].strip())


def _column_index(path: Path, header: list[str], name: str, flag: str) -> int:
    if name not in header:
        raise DataError(f"{path}, line 1: no column {name!r} ({flag}); the header has {header}")
    where = [k + 1 for k, cell in enumerate(header) if cell == name]
    if len(where) > 1:
        raise DataError(
            f"{path}, line 1: the header names column {name!r} ({flag}) {len(where)} times "
            f"(fields {where}); rename the columns so that each name is used once"
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
            f"{path}, line {line}, column {column!r}: expected a number (or an empty cell / NA for "
            f"a missing value), got {cell!r}"
        ) from None
    if not np.isfinite(value):
        raise DataError(
            f"{path}, line {line}, column {column!r}: expected a finite number, got {cell!r}"
        )
    if value != 0 and not MIN_VALUE <= abs(value) <= MAX_VALUE:
        raise DataError(
            f"{path}, line {line}, column {column!r}: {cell.strip()!r} is out of the range rnnfuse "
            f"computes in (0 or ±{MIN_VALUE:g} to ±{MAX_VALUE:g}); rescale the column"
        )
    return value


def build_series(
    path: Path,
    column: str,
    time_column: str | None,
    raw: RawColumns,
    covariates: tuple[str, ...] = (),
    order_hint: str = "",
) -> Series:
    """The :class:`Series` of cells read by :func:`read_columns`: on its time grid (absent
    steps inserted), gaps filled, missing ends dropped, covariates filled forward;
    ``order_hint`` ends the message of times that do not increase."""
    lines = raw.lines.tolist()
    table = np.column_stack(
        [
            np.array(raw.values, dtype=np.float64),
            *(np.array(c, dtype=np.float64) for c in raw.covariates),
        ]
    )
    times, kind, labels, grid = None, "index", [str(line) for line in lines], None
    if time_column is not None:
        cells = list(zip(lines, raw.times, strict=True))
        times, kind = _parse_times(path, time_column, cells, order_hint)
        grid, positions = _grid_positions(path, time_column, times, kind, lines, raw.times)
        table, times, labels = _on_grid(table, times, raw.times, positions, grid)
    values, extra = table[:, 0], table[:, 1:]  # the series, then its covariates, on one grid
    inserted, total = len(values) - len(lines), len(values)
    observed = np.isfinite(values)
    if not observed.any():
        raise DataError(f"{path}, column {column!r}: every value is missing")
    first, last = int(np.argmax(observed)), len(values) - int(np.argmax(observed[::-1]))
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
        dropped_edges=total - (last - first),
        inserted=inserted,
        step=grid.shown if grid is not None else "",
        grid=None if grid is None else grid.shifted(first),
        covariates=_filled_forward(path, extra[keep], covariates) if covariates else None,
        covariate_names=covariates,
    )


def _filled_forward(path: Path, table: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Covariate columns ``(n, k)`` with each missing cell set to the last value before it (the
    first value for cells before any); a column with no value is an error."""
    out = np.empty_like(table)
    for j, name in enumerate(names):
        column = table[:, j]
        seen = np.isfinite(column)
        if not seen.any():
            raise DataError(
                f"{path}, column {name!r} (--covariates): no value in the rows of the series"
            )
        last = np.maximum.accumulate(np.where(seen, np.arange(len(column)), -1))
        out[:, j] = column[np.where(last < 0, int(np.argmax(seen)), last)]
    return out


def _parse_times(
    path: Path, column: str, raw: list[tuple[int, str]], order_hint: str = ""
) -> tuple[np.ndarray, str]:
    """The times (days since 1970-01-01 for dates) and their kind, ``"date"`` when the first
    cell is a date (:func:`~rnnfuse.app.timegrid.parse_date`), else ``"number"``."""
    line0, first = raw[0]
    kind = "date" if parse_date(first) is not None else "number"
    out = np.empty(len(raw), dtype=np.float64)
    for i, (line, text) in enumerate(raw):
        value = parse_date(text) if kind == "date" else parse_number(text)
        if value is None:
            raise DataError(
                f"{path}, line {line}, column {column!r}: {_bad_time(kind, text, line0)}"
            )
        if kind == "number" and abs(value) > MAX_TIME_NUMBER:
            raise DataError(
                f"{path}, line {line}, column {column!r}: expected a time within "
                f"±{MAX_TIME_NUMBER:g}, got {text!r}"
            )
        if i and value <= out[i - 1]:
            raise DataError(
                f"{path}, line {line}, column {column!r}: times must increase; {text!r} does not "
                f"come after {raw[i - 1][1]!r} on line {raw[i - 1][0]}{order_hint}"
            )
        out[i] = value
    return out, kind


_DATE_LIKE = re.compile(r"^\s*\d{4}[-/]?\d{2}")
_DATES = "a date like 1958-03-29, 19580329 or 2014-01-01 00:30:00"


def _bad_time(kind: str, text: str, line0: int) -> str:
    """Why the time cell ``text`` is refused: what was expected and, for a date that
    rnnfuse does not read (a time-zone name, another layout), how to write it."""
    if kind == "number" and not _DATE_LIKE.match(text):
        return f"expected a number (as on line {line0}), got {text!r}"
    return (
        f"expected {_DATES}, with an optional UTC offset such as +01:00 or Z (time-zone names like "
        f"CET or America/New_York are not read), got {text!r}"
    )


def _grid_positions(
    path: Path, column: str, times: np.ndarray, kind: str, lines: list[int], cells: list[str]
) -> tuple[TimeGrid, np.ndarray]:
    """The time column's grid (:func:`~rnnfuse.app.timegrid.fit_grid`: calendar months,
    quarters or years, or a fixed step) and each row's position on it.  A time off the grid
    raises :class:`DataError` naming its line; so does a grid with more than
    :data:`MAX_ROWS` steps once its gaps are filled."""
    try:
        grid, positions = fit_grid(times, kind, cells, lines)
    except OffGrid as exc:
        raise DataError(f"{path}, line {lines[exc.row]}, column {column!r}: {exc.reason}") from None
    if len(positions) and positions[-1] >= MAX_ROWS:
        raise DataError(
            f"{path}, column {column!r}: filling the gaps in the times would make "
            f"{positions[-1] + 1:,} steps of {grid.shown}; expected at most {MAX_ROWS:,}"
        )
    return grid, positions


def _on_grid(
    values: np.ndarray, times: np.ndarray, cells: list[str], positions: np.ndarray, grid: TimeGrid
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Values (``(n,)`` or ``(n, k)``, rows in time), times and labels with a missing value at
    every absent step of ``grid`` (its time and label from the grid: the next month, quarter,
    year, hour ...)."""
    count = int(positions[-1]) + 1 if len(positions) else 0
    if count == len(values):
        return values, times, cells
    full = np.full((count, *values.shape[1:]), np.nan)
    full[positions] = values
    grid_times = grid.times(np.arange(count))
    grid_times[positions] = times
    labels: list[str] = [""] * count
    for pos, cell in zip(positions.tolist(), cells, strict=True):
        labels[pos] = cell
    absent = np.setdiff1d(np.arange(count), positions)
    for pos, label in zip(absent.tolist(), grid.labels(absent), strict=True):
        labels[pos] = label
    return full, grid_times, labels


def load_series(
    csv_path: str | None, column: str, time_column: str | None, covariates: Sequence[str] = ()
) -> Series:
    """The embedded CO2 series when ``csv_path`` is ``None``, else :func:`load_csv`; with the
    ``covariates`` named."""
    if csv_path is None:
        return load_embedded(covariates)
    return load_csv(csv_path, column, time_column, covariates)


def load_data(config: DataConfig) -> Series:
    """The series a :class:`~rnnfuse.app.config.DataConfig` names, with its covariates."""
    return load_series(config.csv, config.column, config.time_column, config.covariates)
