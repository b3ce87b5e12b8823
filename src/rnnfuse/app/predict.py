"""Forecasting past the end of a series, or of every series of a panel, with a saved model
(``rnnfuse predict``).

A model trained on a panel (``data.id_column``) saved each series' scale (and covariates'
standardisation) fitted on that series' training windows; it forecasts the series of a panel
with those, so a series id it was not trained on is refused (its scale is unknown).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..io import check_state_dict
from ..seq2seq import Seq2Seq
from .checkpoint import MODEL_FORMAT, CheckpointError, load_model_file
from .config import DataConfig, RunConfig
from .data import DataError, Series, load_series
from .metrics import forecast
from .model import build_model
from .panel import load_named_panel
from .panel_windows import Scaling, scalings_from_metadata
from .windows import CovariateNorm, Windows, concat_windows, make_windows

__all__ = [
    "Forecast",
    "SavedModel",
    "load_saved",
    "load_model",
    "predict_next",
    "predict_panel",
    "format_forecast",
    "format_panel_forecast",
    "write_forecast_csv",
    "write_panel_forecast_csv",
    "load_panel_for_prediction",
]

SHOWN_SERIES = 20  # series whose forecast the terminal shows (all of them in --output)


@dataclass(frozen=True)
class Forecast:
    """The next ``horizon`` values after the last row of ``series``."""

    labels: list[str]
    values: np.ndarray
    series: Series


def model_file(path: str | Path) -> Path:
    """``path`` itself if it is a file, else ``path/best.safetensors``."""
    path = Path(path)
    return path / "best.safetensors" if path.is_dir() else path


@dataclass(frozen=True)
class SavedModel:
    """A trained model, its configuration and how it normalises each series it forecasts:
    ``scalings`` by series id (the key ``""`` for a model of one series)."""

    model: Seq2Seq
    config: RunConfig
    scalings: dict[str, Scaling]
    file: Path

    @property
    def is_panel(self) -> bool:
        """Whether the model was trained on a panel of series (``data.id_column``)."""
        return self.config.data.id_column is not None


def load_saved(path: str | Path) -> SavedModel:
    """A trained model from a run directory or a file, its metadata checked: the format, the
    configuration, the scale (a panel model's: each series', see
    :func:`~rnnfuse.app.panel_windows.scalings_from_metadata`) and covariates' standardisation,
    the tensors' shapes against the configuration."""
    file = model_file(path)
    tensors, meta = load_model_file(file)
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(
            f"{file}: not a model file written by `rnnfuse train`: expected format "
            f"{MODEL_FORMAT!r}, got {meta.get('format')!r}"
        )
    if "config" not in meta:
        raise CheckpointError(
            f"{file}: the metadata lacks ['config']; the file is incomplete or was edited"
        )
    config = RunConfig.from_dict(meta["config"], f"{file} metadata")
    scalings = _scalings(file, meta, config)
    with torch.device(
        "meta"
    ):  # shapes only: the sizes the metadata asks for, checked before any allocation
        skeleton = build_model(config.model, 0, len(config.data.covariates))
    try:
        check_state_dict(skeleton, tensors, file)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    model = build_model(config.model, 0, len(config.data.covariates))
    model.load_state_dict(tensors)
    model.eval()
    return SavedModel(model, config, scalings, file)


def load_model(path: str | Path) -> tuple[Seq2Seq, RunConfig, float, CovariateNorm | None]:
    """A model trained on one series, with its configuration, scale and covariates'
    standardisation (``None`` without covariates), from a run directory or a file (a panel's
    model: :func:`load_saved`)."""
    saved = load_saved(path)
    if saved.is_panel:
        raise CheckpointError(
            f"{saved.file}: a model of a panel of series (one scale per series); "
            "load it with load_saved"
        )
    scaling = saved.scalings[""]
    return saved.model, saved.config, scaling.scale, scaling.covariate_norm


def _scalings(file: Path, meta: dict, config: RunConfig) -> dict[str, Scaling]:
    """The metadata's scales by series id: a panel model's ``panel``, else ``{"": scale}``."""
    count = len(config.data.covariates)
    if config.data.id_column is not None:
        try:
            return scalings_from_metadata(meta.get("panel"), count, str(file))
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    if "scale" not in meta:
        raise CheckpointError(
            f"{file}: the metadata lacks ['scale']; the file is incomplete or was edited"
        )
    scale = meta["scale"]
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not math.isfinite(scale)
        or scale <= 0
    ):
        raise CheckpointError(
            f"{file}: expected a positive number as the metadata's scale, got {scale!r}"
        )
    return {"": Scaling(float(scale), _covariate_norm(file, meta, count))}


def _covariate_norm(file: Path, meta: dict, count: int) -> CovariateNorm | None:
    """The covariates' standardisation in the metadata: one finite mean and positive std per
    covariate the configuration names (none without covariates)."""
    if count == 0:
        return None
    raw = meta.get("covariates")
    if not isinstance(raw, dict):
        raw = {}
    ok = all(
        isinstance(raw.get(k), list)
        and len(raw[k]) == count
        and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in raw[k]
        )
        for k in ("mean", "std")
    )
    if not ok or min(raw["std"]) <= 0:
        raise CheckpointError(
            f"{file}: expected the metadata's covariates as {{'mean': [...], 'std': [...]}} with "
            f"{count} finite values each (std > 0), got {meta.get('covariates')!r}"
        )
    return CovariateNorm(tuple(map(float, raw["mean"])), tuple(map(float, raw["std"])))


def predict_next(
    model: Seq2Seq,
    config: RunConfig,
    scale: float,
    series: Series,
    covariate_norm: CovariateNorm | None = None,
) -> Forecast:
    """Forecast ``config.data.horizon`` steps after the last row of ``series`` (with the
    covariates' standardisation the model was trained with, if it reads covariates)."""
    d = config.data
    windows = _last_window(series, config, Scaling(scale, covariate_norm))
    with torch.no_grad():
        values = forecast(model, windows)[0]
    return Forecast(_future_labels(series, d.horizon), values, series)


def _last_window(
    series: Series, config: RunConfig, scaling: Scaling, rows: int | None = None
) -> Windows:
    """The window at the last row of ``series``, normalised by ``scaling``; a series shorter
    than the model reads is a :class:`DataError`.  ``rows``: the longest series forecast
    together (a panel's windows share one global length; default ``len(series)``)."""
    d = config.data
    need = max(d.local_steps, d.block * d.min_global_blocks)
    if len(series) < need:
        raise DataError(
            f"{series.source}, column {series.column!r}: too short to forecast from: {len(series)} "
            f"rows, the model reads at least {need} (local_steps {d.local_steps}, "
            f"block*min_global_blocks {d.block * d.min_global_blocks})"
        )
    d = _filled_blocks(d, rows or len(series))
    return make_windows(
        series,
        np.array([len(series) - 1]),
        d,
        scaling.scale,
        targets=False,
        covariate_norm=scaling.covariate_norm,
    )


def predict_panel(saved: SavedModel, panel: dict[str, Series]) -> dict[str, Forecast]:
    """Forecast ``horizon`` steps after the last row of every series of ``panel`` (by id) with
    a panel's model, each series normalised by the scale saved for its id; a series id the model
    was not trained on is a :class:`DataError` naming it (its scale is unknown)."""
    id_column = saved.config.data.id_column
    unknown = [name for name in panel if name not in saved.scalings]
    if unknown:
        known = list(saved.scalings)
        shown = ", ".join(map(repr, known[:5])) + (", ..." if len(known) > 5 else "")
        raise DataError(
            f"{panel[unknown[0]].source}: series {id_column} {unknown[0]!r} was not in the panel "
            f"the model was trained on ({len(known)} series: {shown}); a global model forecasts "
            f"the series whose scales it saved: leave {len(unknown)} unknown series out of the "
            "file, or train on a panel that holds them"
        )
    rows = max(len(series) for series in panel.values())
    windows = concat_windows(
        [
            _last_window(series, saved.config, saved.scalings[name], rows)
            for name, series in panel.items()
        ]
    )
    with torch.no_grad():
        values = forecast(saved.model, windows)
    horizon = saved.config.data.horizon
    return {
        name: Forecast(_future_labels(series, horizon), values[i], series)
        for i, (name, series) in enumerate(panel.items())
    }


def _filled_blocks(d: DataConfig, rows: int) -> DataConfig:
    """``d`` with ``global_blocks`` cut to the blocks ``rows`` can fill: the rows past them
    are padding that the encoder's lengths leave out, so the forecast is the same, but a
    model file's setting no longer makes the encoder run over 500,000 padded steps."""
    filled = max(d.min_global_blocks, rows // d.block)
    return replace(d, global_blocks=filled) if filled < d.global_blocks else d


def _future_labels(series: Series, steps: int) -> list[str]:
    """The labels of the ``steps`` steps after the last row, on the series' time grid (the
    next month, quarter, year, hour ...; ``row +k`` without a time column)."""
    n = len(series)
    if series.grid is None:
        return [f"row +{k}" for k in range(1, steps + 1)]
    return series.grid.labels(np.arange(n, n + steps))


def format_forecast(result: Forecast) -> str:
    """A plain-text table of the forecast."""
    s = result.series
    lines = [
        f"forecast of {s.column!r} ({s.source}) after its last row ({s.labels[-1]}):",
        "step  time          value",
    ]
    lines += [
        f"{k:>4}  {label:<12}  {value:.3f}"
        for k, (label, value) in enumerate(zip(result.labels, result.values, strict=True), 1)
    ]
    return "\n".join(lines)


def format_panel_forecast(results: dict[str, Forecast], id_column: str) -> str:
    """The tables of the first :data:`SHOWN_SERIES` series' forecasts, each under its id."""
    parts = [
        f"{id_column} {name!r}: {format_forecast(result)}"
        for name, result in list(results.items())[:SHOWN_SERIES]
    ]
    if len(results) > SHOWN_SERIES:
        parts.append(f"... {len(results) - SHOWN_SERIES} more series (all of them with --output)")
    return "\n".join(parts)


def write_forecast_csv(result: Forecast, path: str | Path) -> None:
    """Write ``step,time,<column>`` rows."""
    rows = [f"step,time,{result.series.column}"]
    rows += [
        f"{k},{label},{value:.6f}"
        for k, (label, value) in enumerate(zip(result.labels, result.values, strict=True), 1)
    ]
    try:
        Path(path).write_text("\n".join(rows) + "\n")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def write_panel_forecast_csv(
    results: dict[str, Forecast], id_column: str, path: str | Path
) -> None:
    """Write ``<id_column>,step,time,<column>`` rows (long format, series after series)."""
    column = next(iter(results.values())).series.column
    rows = [_csv_line([id_column, "step", "time", column])]
    for name, result in results.items():
        rows += [
            _csv_line([name, str(k), label, f"{value:.6f}"])
            for k, (label, value) in enumerate(zip(result.labels, result.values, strict=True), 1)
        ]
    Path(path).write_text("".join(rows))


def _csv_line(cells: list[str]) -> str:
    """One CSV line, cells quoted where they need it (an id may hold a comma)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    return out.getvalue()


def load_for_prediction(
    config: RunConfig, csv: str | None, column: str | None, time_column: str | None
) -> Series:
    """The series to forecast from: ``--csv`` if given, else the embedded series when the model
    was trained on it.  A path is never taken from the model file: its metadata records the
    training data, but reading a file it names would let a model file read any file."""
    if csv is None:
        if config.data.csv is not None:
            raise DataError(
                "--csv: this model was trained on a CSV file, not the embedded series; "
                "give the series to forecast from with --csv FILE --column NAME"
            )
        return load_series(
            None, config.data.column, config.data.time_column, config.data.covariates
        )
    if column is None:  # the names the model was trained with (names, never paths)
        column, time_column = config.data.column, time_column or config.data.time_column
    return load_series(csv, column, time_column, config.data.covariates)


def load_panel_for_prediction(
    saved: SavedModel,
    csv_path: str | None,
    column: str | None,
    time_column: str | None,
    id_column: str | None,
) -> dict[str, Series]:
    """The panel to forecast from a long-format ``--csv`` (by series id), with the column names
    the model was trained with where not given; a model of one series is refused."""
    if not saved.is_panel:
        raise DataError(
            f"--id-column: {saved.file} was trained on one series (it has one scale); expected a "
            "model trained with --id-column, or no --id-column"
        )
    d = saved.config.data
    assert (
        d.id_column is not None and d.time_column is not None
    )  # a panel's configuration has them (config.validate)
    if csv_path is None:
        raise DataError(
            "--csv: this model was trained on a panel of series; give the long-format file to "
            "forecast from with --csv FILE"
        )
    return load_named_panel(
        csv_path,
        column or d.column,
        time_column or d.time_column,
        id_column or d.id_column,
        d.covariates,
    )
