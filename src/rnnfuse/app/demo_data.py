"""The demo's data: the seasonal period a series implies and the window sizes that follow from it.

``rnnfuse demo`` derives what the user does not give: the period from the dates' calendar
(:func:`true_period`), the windows from the period (:func:`demo_data`), and an early-stopping
stretch before validation (:func:`with_stop_stretch`), so that one set of defaults serves a
100-row yearly series and a 4,000-row half-hourly one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .config import ConfigError, DataConfig
from .data import EMBEDDED_COVARIATES, Series, load_series

__all__ = ["true_period", "parse_period", "demo_data", "with_stop_stretch"]


def true_period(series: Series, data: DataConfig, given: float | None = None) -> float:
    """The seasonal period in steps: ``given`` (``--period``, may be fractional; 1: none), else
    the one the dates' calendar suggests (:meth:`~rnnfuse.app.timegrid.TimeGrid.natural_period`:
    daily 365.2425, weekly 52.18, monthly 12, quarterly 4, yearly 1 = non-seasonal, hourly 24,
    half-hourly 48), else ``data.period``."""
    if given is not None:
        return float(given)
    found = (
        series.grid.natural_period()
        if series.time_kind == "date" and series.grid is not None
        else None
    )
    return float(data.period) if found is None else found


def parse_period(text: str | None) -> float | None:
    """``--period``: a finite number >= 2 of steps per season, or ``1`` / ``none`` for a
    non-seasonal series (returned as 1.0); ``None`` when not given; ValueError otherwise."""
    import math

    if text is None:
        return None
    if text.strip().lower() == "none":
        return 1.0
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            "expected a number of steps such as 52 or 52.18, or 1 or none for a non-seasonal "
            f"series, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 1 or 1 < value < 2:
        raise ValueError(
            f"expected a finite number of steps >= 2 such as 52 or 52.18, or 1 or none for a "
            f"non-seasonal series, got {text!r}"
        )
    return value


def demo_data(given: dict[str, Any], period: float | None) -> tuple[DataConfig, float | None]:
    """The demo's data configuration: the flags in ``given`` (``DataConfig`` field names);
    window sizes not given are derived (:func:`_seasonal_windows`, :func:`_nonseasonal_windows`).
    ``period`` ``None``: found from the dates (:func:`true_period`); a CSV without dates
    (numbers or no time column) then needs ``--period``, which is refused here (``ConfigError``)
    rather than guessed.  The embedded series comes with its covariates (``nino12``) unless
    ``covariates`` is given; a CSV with none unless given."""
    base = DataConfig()
    if "csv" in given:
        given = {"time_column": None, **given}
    else:
        given = {"covariates": EMBEDDED_COVARIATES, **given}
    probe = replace(
        base, **{k: v for k, v in given.items() if k in ("csv", "column", "time_column")}
    )
    series = None
    if "csv" in given and (period is None or round(period) <= 1):
        series = load_series(probe.csv, probe.column, probe.time_column)
        if period is None:
            period = _period_from_dates(series, probe)
    rows = None if series is None else len(series)
    if period is None:
        return with_stop_stretch(replace(base, **given), given, rows), None
    p = max(1, round(period))
    if p == 1:
        if rows is None:
            rows = len(load_series(None, base.column, base.time_column))
        scaled = _nonseasonal_windows(rows, given.get("horizon"))
    else:
        scaled = _seasonal_windows(p, given.get("horizon"))
    return with_stop_stretch(replace(base, **{**scaled, **given}), given, rows), float(period)


def with_stop_stretch(
    config: DataConfig, given: dict[str, Any], length: int | None = None
) -> DataConfig:
    """``config`` with the demo's early-stopping stretch (unless ``given`` sets ``stop_steps``):
    the networks stop, and keep their best weights, on windows before validation, so that the
    validation errors every row is chosen on are not the ones a network was stopped on.  Half
    the validation stretch, at least the horizon plus 7 steps (8 windows), and no more than
    leaves the series long enough for its other windows (:func:`~rnnfuse.app.windows.min_length`;
    0, stopping on validation, when even the least does not fit: the report says so).
    ``length``: the series' rows, when the caller has read it (else it is read here)."""
    from .windows import min_length

    if "stop_steps" in given:
        return config
    least, wanted = config.horizon + 7, max(config.horizon + 7, config.val_steps // 2)
    if length is None:  # the series' rows, when the caller has not read it already
        length = len(load_series(config.csv, config.column, config.time_column))
    spare = length - min_length(replace(config, stop_steps=0))
    return replace(config, stop_steps=min(wanted, spare) if spare >= least else 0)


def _period_from_dates(series: Series, probe: DataConfig) -> float:
    """The period the dates of ``series`` suggest; ``ConfigError`` naming ``--period`` when it
    has none (numbers or row order: no calendar to read a season from)."""
    if series.time_kind == "date" and series.grid is not None:
        return true_period(series, probe)
    what = (
        f"numbers in its time column {probe.time_column!r}"
        if series.time_kind == "number"
        else "no time column"
    )
    raise ConfigError(
        f"--period: {series.source} has {what}, so the seasonal period cannot be read from dates; "
        "expected --period N (steps per season: 12 for monthly rows, 4 for quarterly, 7 for daily "
        "with a weekly cycle, 24 for hourly) or --period 1 (none, e.g. yearly rows)"
    )


def _seasonal_windows(p: int, horizon: int | None) -> dict[str, int]:
    """Window sizes for a period of ``p`` > 1 steps (the CO2 defaults at 52): local P/2, blocks
    of P/13, 4 periods of global history, horizon P/4 (unless given), 4 periods each of
    validation and test, and at least twice the horizon."""
    block = max(1, round(p / 13))
    blocks = max(4, round(4 * p / block))
    h = horizon if horizon is not None else max(1, round(p / 4))
    stretch = max(8, round(4 * p), 2 * h)
    return {
        "period": p,
        "local_steps": max(4, round(p / 2)),
        "block": block,
        "global_blocks": blocks,
        "min_global_blocks": max(1, blocks // 4),
        "horizon": h,
        "val_steps": stretch,
        "test_steps": stretch,
    }


def _nonseasonal_windows(length: int, horizon: int | None) -> dict[str, int]:
    """Window sizes for a non-seasonal series (period 1) of ``length`` rows, from its length and
    the horizon: horizon ``length // 20`` between 1 and 12 (unless given), validation and test
    15 % of the rows each (at least the horizon), local ``2 x horizon`` steps (at least 4),
    global history 4 times that in 16 blocks (at least 4 of them)."""
    h = horizon if horizon is not None else min(max(1, length // 20), 12)
    local = max(4, 2 * h)
    block = max(1, round(local / 4))
    stretch = max(h, round(0.15 * length))
    return {
        "period": 1,
        "local_steps": local,
        "block": block,
        "global_blocks": 16,
        "min_global_blocks": 4,
        "horizon": h,
        "val_steps": stretch,
        "test_steps": stretch,
    }
