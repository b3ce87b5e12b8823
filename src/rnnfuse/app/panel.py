"""Reading a panel: several series in one long-format CSV file, one row per series and time.

The layout of the Nixtla libraries (``unique_id, ds, y``): an id column names each row's
series, a time column its time, a value column its value (and covariate columns, as for one
series).  The rows of a series need not be contiguous, but its times must increase.  Each
series is read as :func:`~rnnfuse.app.data.load_csv` reads one (its own grid, gaps filled,
missing ends dropped); every series must have the same frequency (the same kind of grid and
step: all quarterly, all hourly ...), and a panel needs a time column to check that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from .data import DataError, Series, build_series, read_columns

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = ["load_panel", "load_named_panel", "load_panel_data", "DEFAULT_ID_COLUMN"]

DEFAULT_ID_COLUMN = "unique_id"  # the Nixtla libraries' name


def load_panel(
    path: str | Path,
    column: str = "y",
    time_column: str = "ds",
    id_column: str = DEFAULT_ID_COLUMN,
    covariates: Sequence[str] = (),
) -> list[Series]:
    """The series of a long-format CSV file, in the order their ids first appear; each one's
    ``source`` is ``"<file> [<id_column>=<id>]"``.

    Raises :class:`~rnnfuse.app.data.DataError` naming the file (and the series, the line and
    column where there is one) for the errors of :func:`~rnnfuse.app.data.load_csv`, and for
    series of different frequencies."""
    return list(load_named_panel(path, column, time_column, id_column, covariates).values())


def load_panel_data(config: DataConfig) -> dict[str, Series]:
    """The panel a :class:`~rnnfuse.app.config.DataConfig` with an ``id_column`` names,
    by series id."""
    if config.csv is None or config.id_column is None or config.time_column is None:
        raise ValueError(
            "load_panel_data: expected data.csv, data.time_column and data.id_column, got "
            f"{config.csv!r}, {config.time_column!r} and {config.id_column!r}"
        )
    return load_named_panel(
        config.csv, config.column, config.time_column, config.id_column, config.covariates
    )


def load_named_panel(
    path: str | Path,
    column: str = "y",
    time_column: str = "ds",
    id_column: str = DEFAULT_ID_COLUMN,
    covariates: Sequence[str] = (),
) -> dict[str, Series]:
    """:func:`load_panel`'s series by their ids (in the order the ids first appear)."""
    path = Path(path)
    covariates = tuple(covariates)
    panel: dict[str, Series] = {}
    for name, raw in read_columns(path, column, time_column, covariates, id_column).items():
        where = f"{id_column}={name}"
        try:
            series = build_series(path, column, time_column, raw, covariates)
        except DataError as exc:
            raise DataError(f"{exc} (series {where})") from None
        panel[name] = replace(series, source=f"{path} [{where}]")
    _check_frequency(path, id_column, panel)
    return panel


def _frequency(series: Series) -> str:
    """The kind of a series' time column and its step: ``date, 3 months``, ``number, 1``; a
    single row has none (``""``)."""
    if series.grid is None or len(series) < 2:
        return ""
    return f"{series.time_kind}, {series.grid.shown}"


def _check_frequency(path: Path, id_column: str, panel: dict[str, Series]) -> None:
    """Every series on the same kind of grid with the same step (single rows fit any)."""
    named = [(name, _frequency(series)) for name, series in panel.items() if _frequency(series)]
    for name, found in named[1:]:
        if found != named[0][1]:
            raise DataError(
                f"{path}: the series differ in frequency: {id_column} {name!r} has times of "
                f"({found}), {id_column} {named[0][0]!r} of ({named[0][1]}); expected one "
                "frequency for every series of a panel"
            )
