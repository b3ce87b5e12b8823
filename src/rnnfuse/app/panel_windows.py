"""One global model for a panel of series: each series cut and scaled on its own, the
windows joined.

Every series of a panel (:mod:`rnnfuse.app.panel`) is prepared as one series is
(:func:`~rnnfuse.app.windows.prepare`): its own last ``test_steps`` for test, the
``val_steps`` before for validation (and ``stop_steps`` before those for early stopping),
its scale fitted on its own training windows, its covariates standardised on its own
training rows.  The windows of all series are then concatenated, each window keeping its
series' scale (:func:`~rnnfuse.app.windows.concat_windows`), so one sampler draws the
training batches from every series and a series 1000 times larger weighs no more in the loss
than its number of windows says.

Every series must be long enough for the windows: a short one is an error naming it (leave it
out of the file, or lower the window flags), never skipped silently.

Errors on a panel: ``mae``/``rmse`` over all windows in each series' own units (a large series
dominates them), and ``scaled_mae``: the mean absolute error of each window over its series'
scale (the standard deviation of its training windows' changes over the horizon), the figure
early stopping and the best weights of a panel run are chosen on.  Per series, the report
gives the model's and the seasonal naive's MAE and their ratio; the panel's summary is the
geometric mean of those ratios over the series (the M4 competition's way of averaging
relative errors, which units do not sway).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import DataConfig
from .data import MAX_FIELD, DataError, Series
from .metrics import errors, seasonal_naive, truth
from .windows import CovariateNorm, Prepared, Windows, concat_windows, prepare

__all__ = [
    "PreparedPanel",
    "Scaling",
    "prepare_panel",
    "panel_errors",
    "panel_report",
    "report_lines",
    "scalings_from_metadata",
    "MAX_PANEL_SERIES",
]

MAX_PANEL_SERIES = (
    200_000  # series of a panel (the M4 competition had 100,000); bounds a model file's metadata
)
SHOWN_SERIES = 20  # series listed one per line at the end of training (all of them in metrics.json)


@dataclass(frozen=True)
class Scaling:
    """How one series' windows are normalised: its scale and its covariates' standardisation."""

    scale: float
    covariate_norm: CovariateNorm | None = None


@dataclass(frozen=True)
class PreparedPanel:
    """The series of a panel, each prepared on its own (``parts``, in the order of ``ids``), and
    their windows concatenated in that order (``train``, ``val``, ``test``; ``stop`` with
    ``data.stop_steps``), each window with its series' scale."""

    ids: tuple[str, ...]
    parts: tuple[Prepared, ...]
    train: Windows
    val: Windows
    test: Windows
    stop: Windows | None = None

    @property
    def stop_split(self) -> str:
        """The split early stopping and the best weights are chosen on: ``"stop"`` or ``"val"``."""
        return "val" if self.stop is None else "stop"

    def truth(self, split: str) -> np.ndarray:
        """The true values ``(N, H)`` of the concatenated ``split`` windows,
        in each series' units."""
        return np.concatenate([truth(p.series, _split(p, split)) for p in self.parts])

    def counts(self, split: str) -> list[int]:
        """Windows per series in ``split``, in the order of :attr:`ids`."""
        return [len(_split(p, split)) for p in self.parts]

    def scalings(self) -> dict[str, Scaling]:
        """Each series' :class:`Scaling`, by id."""
        return {
            name: Scaling(p.scale, p.covariate_norm)
            for name, p in zip(self.ids, self.parts, strict=True)
        }

    def metadata(self) -> dict[str, Any]:
        """What ``rnnfuse predict`` needs to normalise each series (read back by
        :func:`scalings_from_metadata`): ``{"ids": [...], "scales": [...]}``, and with covariates
        ``"covariates": {"mean": [[...] per series], "std": [...]}``."""
        out: dict[str, Any] = {"ids": list(self.ids), "scales": [p.scale for p in self.parts]}
        norms = [p.covariate_norm for p in self.parts]
        if all(n is not None for n in norms):
            out["covariates"] = {k: [list(getattr(n, k)) for n in norms] for k in ("mean", "std")}
        return out

    def describe(self, data: DataConfig) -> str:
        """One line: the file, the number of series and their lengths, the filled points."""
        lengths = [len(p.series) for p in self.parts]
        first = self.parts[0].series
        missing = sum(p.series.missing for p in self.parts)
        shown = ", ".join(
            f"{name} {n}" for name, n in zip(self.ids[:5], lengths[:5], strict=True)
        ) + (", ..." if len(lengths) > 5 else "")
        covariates = (
            f"; covariates {', '.join(first.covariate_names)}" if first.covariate_names else ""
        )
        return (
            f"{data.csv} column {first.column!r}: a panel of {len(self.ids)} series by "
            f"{data.id_column!r}, {min(lengths)} to {max(lengths)} rows ({shown}), {missing} "
            f"missing values filled by linear interpolation{covariates}"
        )


def _split(prepared: Prepared | PreparedPanel, split: str) -> Windows:
    windows = getattr(prepared, split)
    if windows is None:
        raise ValueError(
            f"split: {split!r} has no windows (data.stop_steps is 0); expected 'val' or 'test'"
        )
    return windows


def prepare_panel(panel: dict[str, Series], config: DataConfig) -> PreparedPanel:
    """Prepare every series of ``panel`` (by id) with ``config`` and concatenate the windows.

    Raises :class:`~rnnfuse.app.data.DataError` for an empty panel, one of more than
    :data:`MAX_PANEL_SERIES` series, and, naming the series, for the errors of
    :func:`~rnnfuse.app.windows.prepare` (a series too short for the windows, one whose
    training windows do not vary)."""
    if not panel:
        raise DataError(
            f"{config.csv}: no series in the panel; expected at least one id in column "
            f"{config.id_column!r}"
        )
    if len(panel) > MAX_PANEL_SERIES:
        raise DataError(
            f"{config.csv}: {len(panel):,} series in column {config.id_column!r} (--id-column); "
            f"expected at most {MAX_PANEL_SERIES:,}"
        )
    parts = []
    for name, series in panel.items():
        try:
            parts.append(prepare(series, config))
        except DataError as exc:
            raise DataError(
                f"{exc} (every series of a panel needs these windows: leave {config.id_column} "
                f"{name!r} out of the file, or change the flags)"
            ) from None
    join = lambda split: concat_windows([_split(p, split) for p in parts])  # noqa: E731
    stop = join("stop") if parts[0].stop is not None else None
    return PreparedPanel(tuple(panel), tuple(parts), join("train"), join("val"), join("test"), stop)


def panel_errors(prediction: np.ndarray, target: np.ndarray, scales: np.ndarray) -> dict[str, Any]:
    """:func:`~rnnfuse.app.metrics.errors` of windows of several series (their own units), and
    ``scaled_mae``: the mean of each window's absolute errors over its series' scale ``(N,)``."""
    diff = np.abs(np.asarray(prediction, dtype=np.float64) - np.asarray(target, dtype=np.float64))
    scaled = (
        float((diff / np.asarray(scales, dtype=np.float64)[:, None]).mean())
        if len(diff)
        else math.nan
    )
    return errors(prediction, target) | {"scaled_mae": scaled}


def panel_report(
    panel: PreparedPanel, forecasts: dict[str, np.ndarray], period: int
) -> dict[str, Any]:
    """The end-of-training metrics of a panel run from the model's ``forecasts`` of the
    concatenated ``val`` and ``test`` windows: over all windows (``model``, ``seasonal_naive``:
    :func:`panel_errors`), per series (``series``: each one's MAE and scaled MAE for the model
    and the seasonal naive, and the model's MAE relative to the seasonal naive's), and the
    geometric mean of those ratios over the series (``geometric_mean_relative_mae``; a series
    whose seasonal naive is exact, MAE 0, has no ratio and is left out of it)."""
    naive = {
        s: np.concatenate([seasonal_naive(p.series, _split(p, s), period) for p in panel.parts])
        for s in forecasts
    }
    report: dict[str, Any] = {}
    for name, predictions in (("model", forecasts), ("seasonal_naive", naive)):
        report[name] = {
            s: panel_errors(predictions[s], panel.truth(s), _split(panel, s).scales())
            for s in forecasts
        }
    bounds = {s: np.cumsum([0, *panel.counts(s)]) for s in forecasts}
    rows = []
    for i, (name, part) in enumerate(zip(panel.ids, panel.parts, strict=True)):
        row: dict[str, Any] = {
            "id": name,
            "scale": part.scale,
            "windows": {s: int(bounds[s][i + 1] - bounds[s][i]) for s in forecasts},
        }
        for key, predictions in (("model", forecasts), ("seasonal_naive", naive)):
            row[key] = {
                s: _series_errors(predictions[s][bounds[s][i] : bounds[s][i + 1]], part, s)
                for s in forecasts
            }
        row["relative_mae"] = {
            s: _ratio(row["model"][s]["mae"], row["seasonal_naive"][s]["mae"]) for s in forecasts
        }
        rows.append(row)
    report["series"] = rows
    report["geometric_mean_relative_mae"] = {
        s: _geometric_mean([r["relative_mae"][s] for r in rows]) for s in forecasts
    } | {
        "series": sum(r["relative_mae"]["test"] is not None for r in rows)
    }  # those with a test ratio
    return report


def _series_errors(prediction: np.ndarray, part: Prepared, split: str) -> dict[str, float]:
    """One series' MAE (its units) and MAE over its scale."""
    mae = float(np.abs(prediction - truth(part.series, _split(part, split))).mean())
    return {"mae": mae, "scaled_mae": mae / part.scale}


def _ratio(model: float, naive: float) -> float | None:
    return model / naive if naive > 0 else None


def _geometric_mean(ratios: Sequence[float | None]) -> float | None:
    """The geometric mean of the positive ratios (``None`` without any)."""
    kept = [r for r in ratios if r is not None and r > 0]
    return float(np.exp(np.mean(np.log(kept)))) if kept else None


def report_lines(report: dict[str, Any], id_column: str) -> list[str]:
    """The terminal's summary of :func:`panel_report`: one line per series (the first
    :data:`SHOWN_SERIES`) and the geometric mean of the relative test MAE."""
    rows = report["series"]
    width = max(len(id_column), *(len(r["id"]) for r in rows[:SHOWN_SERIES]))
    lines = [
        f"{id_column:<{width}}  {'val MAE':>10}  {'test MAE':>10}  {'naive val':>10}  "
        f"{'naive test':>10}  test MAE / naive"
    ]
    for r in rows[:SHOWN_SERIES]:
        m, n, rel = r["model"], r["seasonal_naive"], r["relative_mae"]["test"]
        lines.append(
            f"{r['id']:<{width}}  {m['val']['mae']:>10.4g}  {m['test']['mae']:>10.4g}  "
            f"{n['val']['mae']:>10.4g}  {n['test']['mae']:>10.4g}  "
            f"{'-' if rel is None else f'{rel:.3f}'}"
        )
    if len(rows) > SHOWN_SERIES:
        lines.append(f"... {len(rows) - SHOWN_SERIES} more series in metrics.json")
    gm = report["geometric_mean_relative_mae"]
    shown = "-" if gm["test"] is None else f"{gm['test']:.3f}"
    lines.append(
        f"geometric mean over {gm['series']} series of test MAE / seasonal naive's: {shown} (below "
        "1: better than the seasonal naive); scaled test MAE "
        f"{report['model']['test']['scaled_mae']:.3f}, seasonal naive's "
        f"{report['seasonal_naive']['test']['scaled_mae']:.3f}"
    )
    return lines


def scalings_from_metadata(raw: Any, covariates: int, where: str) -> dict[str, Scaling]:
    """The per-series :class:`Scaling` of a panel model's metadata (what
    :meth:`PreparedPanel.metadata` wrote), every value checked: 1 to :data:`MAX_PANEL_SERIES`
    distinct ids (non-empty strings of at most the CSV field limit), one finite positive scale
    each, and with ``covariates`` > 0 one finite mean and positive std per covariate and series.
    Raises ``ValueError`` naming ``where``."""
    expected = (
        f"{where}: expected the metadata's panel as {{'ids': [...], 'scales': [...]"
        f"{', covariates: {mean: [[...]], std: [[...]]}' if covariates else ''}}} with 1 to "
        f"{MAX_PANEL_SERIES:,} series"
    )
    if not isinstance(raw, dict):
        raise ValueError(f"{expected}, got {type(raw).__name__}")
    ids, scales = raw.get("ids"), raw.get("scales")
    if (
        not isinstance(ids, list)
        or not isinstance(scales, list)
        or not 1 <= len(ids) <= MAX_PANEL_SERIES
        or len(scales) != len(ids)
    ):
        raise ValueError(f"{expected}; the ids or scales are not lists of one length in that range")
    if not all(isinstance(i, str) and 0 < len(i) <= MAX_FIELD for i in ids) or len(set(ids)) < len(
        ids
    ):
        raise ValueError(f"{expected}; the ids are not distinct non-empty strings")
    if not all(_finite(s) and s > 0 for s in scales):
        raise ValueError(f"{expected}; a scale is not a finite positive number")
    norms: list[CovariateNorm | None] = [None] * len(ids)
    if covariates:
        norms = list(_covariate_norms(raw.get("covariates"), len(ids), covariates, expected))
    return {i: Scaling(float(s), n) for i, s, n in zip(ids, scales, norms, strict=True)}


def _covariate_norms(raw: Any, series: int, count: int, expected: str) -> list[CovariateNorm]:
    ok = isinstance(raw, dict) and all(
        isinstance(raw.get(k), list)
        and len(raw[k]) == series
        and all(
            isinstance(row, list) and len(row) == count and all(_finite(v) for v in row)
            for row in raw[k]
        )
        for k in ("mean", "std")
    )
    if not ok or min(min(row) for row in raw["std"]) <= 0:
        raise ValueError(
            f"{expected}; the covariates' standardisation is not {count} finite means and "
            "positive stds per series"
        )
    return [
        CovariateNorm(tuple(map(float, m)), tuple(map(float, s)))
        for m, s in zip(raw["mean"], raw["std"], strict=True)
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
