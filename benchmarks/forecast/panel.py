"""The forecasting benchmark's panel: public series shipped inside pip packages, and the
protocol each is run with.  Fixed before any result was seen; change it only with a note in
``benchmarks/results/`` saying why, since every figure there was measured on this list.

Each series is written to ``<out>/data/<name>.csv`` (columns ``ds``, ``y``) by
:func:`export` (needs ``statsmodels`` and ``pmdarima``, see ``requirements-peers.txt``), and
every tool forecasts the same test windows: the last ``test_steps`` steps hold the targets,
one origin per step (``test_steps - horizon + 1`` origins), a horizon of ``horizon`` steps;
the ``val_steps`` before them are the validation stretch.  ``period`` is what the data fixes
(1: no seasonality is assumed, as for yearly data with a sunspot or lynx cycle that is not a
calendar season).  Horizons follow the M4 competition by frequency where the series allows
(yearly 6, quarterly 8, monthly 12 instead of 18 for the short monthly series, weekly 13,
half-hourly one day, 48); validation and test stretches are ``max(2 * horizon, n // 8)``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PanelSeries", "PANEL", "HOLDOUT", "PANELS", "export"]


@dataclass(frozen=True)
class PanelSeries:
    """One series of the panel and its protocol."""

    name: str
    source: str  # where it ships: "<package>: <loader> [column]"
    frequency: str  # M, Q, Y, W, 30min; "int": integer steps 0, 1, ... (no calendar)
    period: float  # seasonal period in steps (1: none)
    horizon: int
    start: str  # the first time stamp (ISO date or date-time; "0" for integer steps)
    about: str
    last: int = 0  # keep only the last ``last`` values (0: all)

    def stretch(self, n: int) -> int:
        """The validation and the test stretch, in steps, for a series of ``n`` rows."""
        return max(2 * self.horizon, n // 8)


PANEL: tuple[PanelSeries, ...] = (
    PanelSeries(
        "wineind",
        "pmdarima: load_wineind",
        "M",
        12,
        12,
        "1980-01-01",
        "Australian wine sales by month, 1980-1994",
    ),
    PanelSeries(
        "airpassengers",
        "pmdarima: load_airpassengers",
        "M",
        12,
        12,
        "1949-01-01",
        "airline passengers by month, 1949-1960",
    ),
    PanelSeries(
        "elnino",
        "statsmodels: datasets.elnino",
        "M",
        12,
        12,
        "1950-01-01",
        "Nino 1+2 sea surface temperature by month, 1950-2010",
    ),
    PanelSeries(
        "woolyrnq",
        "pmdarima: load_woolyrnq",
        "Q",
        4,
        8,
        "1965-01-01",
        "Australian woollen yarn production by quarter",
    ),
    PanelSeries(
        "ausbeer",
        "pmdarima: load_ausbeer",
        "Q",
        4,
        8,
        "1956-01-01",
        "Australian beer production by quarter",
    ),
    PanelSeries(
        "austres",
        "pmdarima: load_austres",
        "Q",
        1,
        8,
        "1971-04-01",
        "Australian residents (thousands) by quarter; no seasonality",
    ),
    PanelSeries(
        "unemp",
        "statsmodels: datasets.macrodata unemp",
        "Q",
        1,
        8,
        "1959-01-01",
        "US unemployment rate by quarter, seasonally adjusted",
    ),
    PanelSeries(
        "sunspots",
        "statsmodels: datasets.sunspots",
        "Y",
        1,
        6,
        "1700-01-01",
        "yearly sunspot activity, 1700-2008 (an 11-year cycle)",
    ),
    PanelSeries(
        "nile",
        "statsmodels: datasets.nile",
        "Y",
        1,
        6,
        "1871-01-01",
        "yearly Nile flow at Aswan, 1871-1970",
    ),
    PanelSeries(
        "lynx",
        "pmdarima: load_lynx",
        "Y",
        1,
        6,
        "1821-01-01",
        "yearly lynx trappings, 1821-1934 (a 10-year cycle)",
    ),
    PanelSeries(
        "co2",
        "statsmodels: datasets.co2",
        "W",
        52.18,
        13,
        "1958-03-29",
        "weekly Mauna Loa CO2 (gaps interpolated linearly)",
    ),
    PanelSeries(
        "taylor",
        "pmdarima: load_taylor",
        "30min",
        48,
        48,
        "2000-06-05 00:00:00",
        "half-hourly electricity demand, England and Wales, June-August 2000",
    ),
)


# The hold-out panel: series used nowhere else in the project, fixed before any run on them,
# on which the selection rule was checked (benchmarks/results/selection-rule-holdout.md).
HOLDOUT: tuple[PanelSeries, ...] = (
    PanelSeries(
        "sunspots-monthly",
        "pmdarima: load_sunspots",
        "M",
        1,
        18,
        "1749-01-01",
        "monthly mean sunspot number, 1749-1983 (an 11-year cycle, not a season)",
    ),
    PanelSeries(
        "heartrate",
        "pmdarima: load_heartrate",
        "int",
        1,
        6,
        "0",
        "150 heart-rate readings of one subject, no calendar",
    ),
    PanelSeries(
        "msft",
        "pmdarima: load_msft Close",
        "int",
        1,
        14,
        "0",
        "Microsoft's closing share price, the last 2,000 trading days to 2017-11-10",
        last=2000,
    ),
    PanelSeries(
        "realgdp",
        "statsmodels: datasets.macrodata realgdp",
        "Q",
        1,
        8,
        "1959-01-01",
        "US real GDP by quarter, seasonally adjusted, 1959-2009",
    ),
    PanelSeries(
        "realinv",
        "statsmodels: datasets.macrodata realinv",
        "Q",
        1,
        8,
        "1959-01-01",
        "US real private investment by quarter, seasonally adjusted, 1959-2009",
    ),
    PanelSeries(
        "infl",
        "statsmodels: datasets.macrodata infl",
        "Q",
        1,
        8,
        "1959-01-01",
        "US inflation rate by quarter, 1959-2009",
    ),
    PanelSeries(
        "dp",
        "statsmodels: datasets.interest_inflation Dp",
        "Q",
        4,
        8,
        "1972-04-01",
        "German quarterly inflation (change of log prices), 1972-1998",
    ),
)

PANELS = {"benchmark": PANEL, "holdout": HOLDOUT}


def _values(series: PanelSeries) -> list[float]:
    """The series' values from the package it ships in (trailing missing values dropped)."""
    import numpy as np

    package, loader = (part.strip() for part in series.source.split(":"))
    if package == "pmdarima":
        import pmdarima.datasets as datasets

        name, *column = loader.split()
        if column:  # a data frame: one of its columns
            values = getattr(datasets, name)()[column[0]].to_numpy(dtype=float)
        else:
            values = np.asarray(getattr(datasets, name)(as_series=False), dtype=float)
    else:
        values = _statsmodels(loader)
    while len(values) and not np.isfinite(values[-1]):
        values = values[:-1]
    if series.last:
        values = values[-series.last :]
    if not np.isfinite(values).all():
        raise ValueError(f"{series.name}: missing values inside the series")
    return values.tolist()


def _statsmodels(loader: str) -> Any:
    import numpy as np
    import statsmodels.api as sm

    name, *column = loader.replace("datasets.", "").split()
    frame = getattr(sm.datasets, name).load_pandas().data
    if name == "elnino":
        return (
            frame.drop(columns="YEAR").to_numpy(dtype=float).ravel()
        )  # year by year, January first
    if name == "co2":
        return frame["co2"].interpolate(limit_direction="both").to_numpy(dtype=float)
    columns = {"sunspots": "SUNACTIVITY", "nile": "volume"}
    return np.asarray(frame[column[0] if column else columns[name]], dtype=float)


def times(series: PanelSeries, n: int) -> list[str]:
    """``n`` time stamps from ``series.start`` at the series' frequency."""
    import pandas as pd

    if series.frequency == "int":
        return [str(int(series.start) + i) for i in range(n)]
    offsets = {"M": "MS", "Q": "QS", "Y": "YS", "W": "7D", "30min": "30min"}
    stamps = pd.date_range(series.start, periods=n, freq=offsets[series.frequency])
    if series.frequency == "30min":
        return [s.strftime("%Y-%m-%d %H:%M:%S") for s in stamps]
    return [s.strftime("%Y-%m-%d") for s in stamps]


def export(out: Path, panel: tuple[PanelSeries, ...] = PANEL) -> list[Path]:
    """Write every series of ``panel`` to ``out/<name>.csv`` (``ds``, ``y``)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for series in panel:
        values = _values(series)
        path = out / f"{series.name}.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ds", "y"])
            writer.writerows(
                zip(times(series, len(values)), (repr(v) for v in values), strict=True)
            )
        paths.append(path)
    return paths


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write a panel's series as CSV files.")
    parser.add_argument("out", type=Path, nargs="?", default=Path("out/panel/data"))
    parser.add_argument("--panel", choices=sorted(PANELS), default="benchmark")
    args = parser.parse_args()
    for written in export(args.out, PANELS[args.panel]):
        print(written)
