"""Time columns: reading their cells, finding their regular grid, and the time and label of
any step on it (the steps past the end of the series included).

Dates are kept as days since 1970-01-01 (a fraction for a time of day).  Their grid is either

* **calendar months** (``kind="months"``): monthly, quarterly, half-yearly or yearly dates,
  ``step`` whole months apart, each on the same day of its month (``anchor``: day 1 for month,
  quarter or year starts, day 15 ..., or 31 for the last day of each month, which covers
  quarter and year ends such as 1990-03-31, 1990-06-30); a date on a day past its month's
  end (the 30th in February) falls on the month's last day; or
* **a fixed step** (``kind="days"``): daily, weekly, hourly, half-hourly ... rows (the step in
  days, fractional below a day).

Numbers (``kind="number"``) have a fixed step in their own units.  A step larger than the
grid's step is a gap: :func:`fit_grid` returns each row's position on the grid, so that the
caller can insert missing values at the absent steps.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

__all__ = ["TimeGrid", "OffGrid", "fit_grid", "parse_date", "parse_number", "DAYS_PER_YEAR"]

DAYS_PER_YEAR = 365.2425  # the Gregorian year
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DAY = np.datetime64("1970-01-01", "D")
_MONTH_END = 31  # the anchor of dates on the last day of their month
# beside ISO 8601 (Python 3.10's fromisoformat reads neither 19900331 nor a Z suffix)
_EXTRA_FORMATS = ("%Y%m%d", "%Y/%m/%d", "%Y-%m", "%Y/%m", "%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M")
_QUARTER = re.compile(r"^(\d{4})[- ]?[Qq]([1-4])$")  # 1990Q1, 1990-Q1, 1990 q1


class OffGrid(ValueError):
    """A row whose time is not on the grid of the others: ``row`` (0-based) and why."""

    def __init__(self, row: int, reason: str) -> None:
        super().__init__(reason)
        self.row = row
        self.reason = reason


def parse_date(text: str) -> float | None:
    """Days since 1970-01-01 of an ISO date or date-time (``1990-03-31``, ``19900331``,
    ``2014-01-01 00:30:00``, ``2014-01-01T00:30Z``: an offset is converted to UTC), of
    ``1990/03/31``, of a month ``1990-03``, or of a quarter ``1990Q1`` (its first day);
    ``None`` for anything else."""
    text = text.strip()
    stamp = _parse_stamp(text)
    if stamp is None:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (stamp - _EPOCH).total_seconds() / 86400.0


def _parse_stamp(text: str) -> dt.datetime | None:
    if len(text) < 6 or not text[:4].isdigit():  # a year first; 1990 alone is a number
        return None
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    except ValueError:
        pass
    quarter = _QUARTER.match(text)
    if quarter:
        return dt.datetime(int(quarter[1]), 3 * int(quarter[2]) - 2, 1)
    for fmt in _EXTRA_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def parse_number(text: str) -> float | None:
    """A finite number, else ``None``."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


@dataclass(frozen=True)
class TimeGrid:
    """A regular grid of times; position 0 is the series' first row.

    ``kind``: ``"months"`` (``step`` whole calendar months, dates on day ``anchor`` of their
    month, 31: the last day), ``"days"`` (a fixed ``step`` in days) or ``"number"`` (a fixed
    ``step`` in the time column's units); ``start``: the time at position 0 (days since
    1970-01-01 for dates); ``clock``: dates with a time of day (their labels show it).
    """

    kind: str
    step: float
    start: float
    anchor: int = 0
    clock: bool = False

    def times(self, positions: np.ndarray | Sequence[int]) -> np.ndarray:
        """The time at each (integer) position, before or after the series' rows too."""
        pos = np.asarray(positions, dtype=np.int64)
        if self.kind != "months":
            return self.start + pos * self.step
        first, fraction = _day(self.start), self.start - np.floor(self.start)
        month0 = int(first.astype("datetime64[M]").astype(np.int64))
        months = (month0 + pos * int(self.step)).astype("datetime64[M]")
        length = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(
            np.int64
        )
        day = months.astype("datetime64[D]") + (np.minimum(self.anchor, length) - 1).astype(
            "timedelta64[D]"
        )
        return (day - _EPOCH_DAY).astype(np.int64).astype(np.float64) + fraction

    def labels(self, positions: np.ndarray | Sequence[int]) -> list[str]:
        """The label of each position: an ISO date (with the time of day for ``clock``
        grids), or the number."""
        return [self.label(float(t)) for t in self.times(positions)]

    def label(self, value: float) -> str:
        """A time of this grid as shown: ``1990-03-31``, ``2014-01-01 00:30:00``, ``1990``."""
        if self.kind == "number":
            return str(int(value)) if float(value).is_integer() else f"{value:.12g}"
        stamp = _EPOCH + dt.timedelta(seconds=round(value * 86400.0))
        return stamp.strftime("%Y-%m-%d %H:%M:%S" if self.clock else "%Y-%m-%d")

    def shifted(self, rows: int) -> TimeGrid:
        """The same grid with position 0 moved to position ``rows``."""
        return replace(self, start=float(self.times([rows])[0]))

    @property
    def shown(self) -> str:
        """The step in words: ``1 month``, ``3 months``, ``7 days``, ``30 minutes``, ``0.5``."""
        if self.kind == "number":
            return f"{self.step:g}"
        if self.kind == "months":
            return _plural(int(self.step), "month")
        for unit, size in (
            ("day", 1.0),
            ("hour", 1 / 24),
            ("minute", 1 / 1440),
            ("second", 1 / 86400),
        ):
            count = self.step / size
            if count >= 1 and abs(count - round(count)) < 1e-6:
                return _plural(round(count), unit)
        return f"{self.step:g} days"

    def days_per_step(self) -> float | None:
        """The mean length of a step in days (``None`` for numbers)."""
        if self.kind == "number":
            return None
        return self.step * DAYS_PER_YEAR / 12 if self.kind == "months" else self.step

    def natural_period(self) -> float | None:
        """The seasonal period in steps the calendar suggests: a year's steps for steps of a
        day or longer (daily 365.2425, weekly 52.18, monthly 12, quarterly 4), a day's steps
        below a day (hourly 24, half-hourly 48); 1 (no season) when a year holds fewer than
        two steps (yearly data); ``None`` for numbers (no calendar)."""
        days = self.days_per_step()
        if days is None:
            return None
        steps = (
            1.0 / days
            if days < 1
            else (12 / self.step if self.kind == "months" else DAYS_PER_YEAR / days)
        )
        return steps if steps >= 2 else 1.0


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}" + ("" if count == 1 else "s")


def _day(days: float) -> np.datetime64:
    return _EPOCH_DAY + np.timedelta64(int(np.floor(days)), "D")


def fit_grid(
    times: np.ndarray, kind: str, cells: Sequence[str], lines: Sequence[int]
) -> tuple[TimeGrid, np.ndarray]:
    """The grid of increasing ``times`` (``kind`` ``"date"`` or ``"number"``) and each row's
    position on it (int64, from 0; a jump over several steps leaves absent positions).

    Dates with a median spacing of four weeks or more are tried on calendar months first
    (monthly, quarterly, yearly), then on a fixed step; others on a fixed step (the most
    common spacing).  Raises :class:`OffGrid` (with ``cells`` and ``lines`` in its reason) for a row
    that fits no grid."""
    if len(times) < 2:
        grid = TimeGrid(
            "days" if kind == "date" else "number",
            1.0,
            float(times[0]) if len(times) else 0.0,
            clock=kind == "date" and _has_clock(times),
        )
        return grid, np.zeros(len(times), dtype=np.int64)
    if kind != "date":
        step, positions = _fixed_step(times, cells, lines, "")
        return TimeGrid("number", step, float(times[0])), positions
    clock = _has_clock(times)
    if float(np.median(np.diff(times))) >= 27.5:
        try:
            return _months_grid(times, cells, lines)
        except OffGrid as calendar_error:
            try:
                step, positions = _fixed_step(times, cells, lines, "days")
            except OffGrid:
                raise calendar_error from None
            return TimeGrid("days", step, float(times[0]), clock=clock), positions
    step, positions = _fixed_step(times, cells, lines, "days")
    return TimeGrid("days", step, float(times[0]), clock=clock or step < 1), positions


def _has_clock(days: np.ndarray) -> bool:
    """Whether any time has a time of day other than midnight (to the second)."""
    seconds = np.rint(np.asarray(days) * 86400.0) % 86400
    return bool(np.any(seconds != 0))


def _common_step(diffs: np.ndarray) -> float:
    """The most common spacing (the smallest of equally common ones; spacings equal to 1e-6
    of the median count as one), the mean of its occurrences."""
    scaled = np.round(diffs / np.median(diffs), 6)
    values, counts = np.unique(scaled, return_counts=True)
    mode = values[counts == counts.max()].min()
    return float(diffs[scaled == mode].mean())


def _span(days: float) -> str:
    """A spacing in days in words: ``3 days``, ``30 minutes``, ``0.3 days``."""
    return TimeGrid("days", days, 0.0).shown


def _fixed_step(
    times: np.ndarray, cells: Sequence[str], lines: Sequence[int], unit: str
) -> tuple[float, np.ndarray]:
    """The most common spacing and each row's position;
    every spacing must be a whole number of it."""
    diffs = np.diff(times)
    step = _common_step(diffs)
    if unit == "days" and step * 86400 >= 0.5:
        step = round(step * 86400) / 86400  # whole seconds: no drift over many steps
    ratio = diffs / step
    whole = np.rint(ratio)
    bad = np.flatnonzero((np.abs(ratio - whole) > 1e-6 * np.maximum(whole, 1)) | (whole < 1))
    if bad.size:
        i = int(bad[0]) + 1
        gap, shown = (
            (_span(diffs[i - 1]), _span(step))
            if unit == "days"
            else (f"{diffs[i - 1]:g} units", f"{step:g}")
        )
        raise OffGrid(
            i,
            f"the times are not on one grid: {cells[i]!r} is {gap} after {cells[i - 1]!r} (line "
            f"{lines[i - 1]}), not a multiple of the step {shown} (the most common spacing)",
        )
    return step, np.concatenate([[0], np.cumsum(whole.astype(np.int64))])


def _months_grid(
    days: np.ndarray, cells: Sequence[str], lines: Sequence[int]
) -> tuple[TimeGrid, np.ndarray]:
    """Dates on calendar months: the anchor day, the step in months, each row's position."""
    stamps = _EPOCH_DAY + np.floor(days).astype(np.int64).astype("timedelta64[D]")
    months = stamps.astype("datetime64[M]")
    day = (stamps - months.astype("datetime64[D]")).astype(np.int64) + 1
    length = ((months + 1).astype("datetime64[D]") - months.astype("datetime64[D]")).astype(
        np.int64
    )
    inside = day < length  # not the month's last day
    anchor = int(np.bincount(day[inside]).argmax()) if inside.any() else _MONTH_END
    where = (
        "the last day of its month"
        if anchor == _MONTH_END
        else f"day {anchor} of its month (or its last day, if shorter)"
    )
    off = np.flatnonzero(day != np.minimum(anchor, length))
    if off.size:
        i = int(off[0])
        raise OffGrid(
            i,
            f"the dates are not on one calendar grid: {cells[i]!r} is not on {where}, "
            "as the other dates are",
        )
    index = months.astype(np.int64)
    diffs = np.diff(index)
    step = max(int(round(_common_step(diffs))), 1)
    bad = np.flatnonzero((diffs % step != 0) | (diffs < step))
    if bad.size:
        i = int(bad[0]) + 1
        raise OffGrid(
            i,
            f"the dates are not on one calendar grid: {cells[i]!r} is "
            f"{_plural(int(diffs[i - 1]), 'month')} after {cells[i - 1]!r} (line {lines[i - 1]}), "
            f"not a multiple of the step {_plural(step, 'month')} (the most common spacing)",
        )
    positions = np.concatenate([[0], np.cumsum(diffs // step)]).astype(np.int64)
    return TimeGrid("months", float(step), float(days[0]), anchor=anchor), positions
