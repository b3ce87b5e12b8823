"""Forecasting past the end of a series with a saved model (``rnnfuse predict``)."""

from __future__ import annotations

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
from .windows import CovariateNorm, make_windows

__all__ = ["Forecast", "load_model", "predict_next", "format_forecast", "write_forecast_csv"]


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


def load_model(path: str | Path) -> tuple[Seq2Seq, RunConfig, float, CovariateNorm | None]:
    """A trained model with its configuration, scale and covariates' standardisation (``None``
    without covariates), from a run directory or a file."""
    file = model_file(path)
    tensors, meta = load_model_file(file)
    if meta.get("format") != MODEL_FORMAT:
        raise CheckpointError(f"{file}: not a model file written by `rnnfuse train`: expected format "
                              f"{MODEL_FORMAT!r}, got {meta.get('format')!r}")
    lacking = [key for key in ("config", "scale") if key not in meta]
    if lacking:
        raise CheckpointError(f"{file}: the metadata lacks {lacking}; the file is incomplete or was edited")
    scale = meta["scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise CheckpointError(f"{file}: expected a positive number as the metadata's scale, got {scale!r}")
    config = RunConfig.from_dict(meta["config"], f"{file} metadata")
    norm = _covariate_norm(file, meta, len(config.data.covariates))
    with torch.device("meta"):  # shapes only: the sizes the metadata asks for, checked before any allocation
        skeleton = build_model(config.model, 0, len(config.data.covariates))
    try:
        check_state_dict(skeleton, tensors, file)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None
    model = build_model(config.model, 0, len(config.data.covariates))
    model.load_state_dict(tensors)
    model.eval()
    return model, config, float(scale), norm


def _covariate_norm(file: Path, meta: dict, count: int) -> CovariateNorm | None:
    """The covariates' standardisation in the metadata: one finite mean and positive std per
    covariate the configuration names (none without covariates)."""
    if count == 0:
        return None
    raw = meta.get("covariates")
    if not isinstance(raw, dict):
        raw = {}
    ok = all(
        isinstance(raw.get(k), list) and len(raw[k]) == count
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in raw[k])
        for k in ("mean", "std")
    )
    if not ok or min(raw["std"]) <= 0:
        raise CheckpointError(f"{file}: expected the metadata's covariates as {{'mean': [...], 'std': [...]}} with {count} "
                              f"finite values each (std > 0), got {meta.get('covariates')!r}")
    return CovariateNorm(tuple(map(float, raw["mean"])), tuple(map(float, raw["std"])))


def predict_next(model: Seq2Seq, config: RunConfig, scale: float, series: Series,
                 covariate_norm: CovariateNorm | None = None) -> Forecast:
    """Forecast ``config.data.horizon`` steps after the last row of ``series`` (with the
    covariates' standardisation the model was trained with, if it reads covariates)."""
    d = config.data
    need = max(d.local_steps, d.block * d.min_global_blocks)
    if len(series) < need:
        raise DataError(
            f"{series.source}, column {series.column!r}: too short to forecast from: {len(series)} rows, the model "
            f"reads at least {need} (local_steps {d.local_steps}, block*min_global_blocks {d.block * d.min_global_blocks})"
        )
    d = _filled_blocks(d, len(series))
    windows = make_windows(series, np.array([len(series) - 1]), d, scale, targets=False, covariate_norm=covariate_norm)
    with torch.no_grad():
        values = forecast(model, windows)[0]
    return Forecast(_future_labels(series, d.horizon), values, series)


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
    lines = [f"forecast of {s.column!r} ({s.source}) after its last row ({s.labels[-1]}):", "step  time          value"]
    lines += [f"{k:>4}  {label:<12}  {value:.3f}" for k, (label, value) in enumerate(zip(result.labels, result.values), 1)]
    return "\n".join(lines)


def write_forecast_csv(result: Forecast, path: str | Path) -> None:
    """Write ``step,time,<column>`` rows."""
    rows = [f"step,time,{result.series.column}"]
    rows += [f"{k},{label},{value:.6f}" for k, (label, value) in enumerate(zip(result.labels, result.values), 1)]
    try:
        Path(path).write_text("\n".join(rows) + "\n")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def load_for_prediction(config: RunConfig, csv: str | None, column: str | None, time_column: str | None) -> Series:
    """The series to forecast from: ``--csv`` if given, else the embedded series when the model
    was trained on it.  A path is never taken from the model file: its metadata records the
    training data, but reading a file it names would let a model file read any file."""
    if csv is None:
        if config.data.csv is not None:
            raise DataError("--csv: this model was trained on a CSV file, not the embedded series; "
                            "give the series to forecast from with --csv FILE --column NAME")
        return load_series(None, config.data.column, config.data.time_column, config.data.covariates)
    if column is None:  # the names the model was trained with (names, never paths)
        column, time_column = config.data.column, time_column or config.data.time_column
    return load_series(csv, column, time_column, config.data.covariates)
