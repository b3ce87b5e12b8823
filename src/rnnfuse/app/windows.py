"""Cutting a series into forecasting windows: local (fine) and global (coarse) inputs, targets.

At an origin ``t`` (index of the last known value) with anchor ``a = y[t]`` and a scale
``s`` fitted on the training windows only (the standard deviation of ``y[t+h] - y[t]``):

* local input, ``local_steps`` rows: ``(y[i] - a) / s``, ``sin``/``cos`` of the phase of step ``i``;
* global input, up to ``global_blocks`` rows: the mean of each ``block`` consecutive values
  ending at ``t``, normalised the same way, with the phase of the block's last step; left
  aligned, ``global_len`` of them valid (fewer near the start of the series);
* targets: ``(y[t+h] - a) / s`` for ``h = 1..horizon``; decoder covariates: their phases;
* with covariates (``config.covariates``: other columns, each row's value known at its time),
  the encoders' rows also hold them, standardised by their mean and standard deviation over
  the rows up to the last training origin (:func:`fit_covariates`), block means for the
  global encoder: read up to ``t`` only, like the series.

Working relative to the last value keeps the inputs in range when the level leaves the
training range (the CO2 series rises every year).  The phase is the fraction
of the seasonal cycle when the series has dates (the year for weekly to quarterly data, the
day for hourly data), else ``(i mod period) / period``; zero for a non-seasonal series
(``period`` 1: see :class:`~rnnfuse.app.config.DataConfig`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from .config import DataConfig
from .data import DataError, Series
from .timegrid import DAYS_PER_YEAR

__all__ = [
    "SPLIT_WORDS",
    "fit_covariates",
    "CovariateNorm",
    "with_base",
    "deseasonalised",
    "deseasonalised_forecast",
    "Windows",
    "concat_windows",
    "per_window",
    "Splits",
    "Prepared",
    "prepare",
    "check_length",
    "phases",
    "cycle_days",
    "split_origins",
    "fit_scale",
    "make_windows",
    "min_length",
    "history_length",
]


@dataclass(frozen=True)
class Windows:
    """A batch-ready set of windows (float32 tensors; ``origins`` int64)."""

    origins: Tensor
    local: Tensor
    global_: Tensor
    global_len: Tensor
    targets: Tensor
    covariates: Tensor
    anchor: Tensor
    # the series' scale; windows of several series (a panel): each window's, (N,) float64 on
    # the CPU
    scale: float | Tensor
    # (N, H) a classical forecast in series units: targets are residuals from it
    base: Tensor | None = None

    def __len__(self) -> int:
        return int(self.origins.shape[0])

    def subset(self, index: Tensor) -> Windows:
        """The windows at ``index`` (a 1-D index tensor)."""
        return Windows(
            self.origins[index],
            self.local[index],
            self.global_[index],
            self.global_len[index],
            self.targets[index],
            self.covariates[index],
            self.anchor[index],
            self.scale if isinstance(self.scale, float) else self.scale[index.cpu()],
            None if self.base is None else self.base[index],
        )

    def to(self, device: torch.device) -> Windows:
        """The same windows on ``device``."""
        move = lambda t: t.to(device)  # noqa: E731
        return Windows(
            move(self.origins),
            move(self.local),
            move(self.global_),
            move(self.global_len),
            move(self.targets),
            move(self.covariates),
            move(self.anchor),
            self.scale,
            None if self.base is None else move(self.base),
        )

    def to_ppm(self, normalised: Tensor) -> Tensor:
        """Undo the normalisation of predictions ``(N, H, 1)`` → ``(N, H)`` in series units."""
        anchor = self.anchor.double().cpu().unsqueeze(1)
        if self.base is not None:  # a hybrid: the network forecasts the classical forecast's error
            anchor = self.base.double().cpu()
        return normalised[..., 0].double().cpu() * per_window(self.scale) + anchor

    def scales(self) -> np.ndarray:
        """Each window's scale ``(N,)`` (float64)."""
        if isinstance(self.scale, float):
            return np.full(len(self), self.scale)
        return self.scale.double().numpy()


def per_window(scale: float | Tensor) -> float | Tensor:
    """A scale to multiply or divide ``(N, H)`` values by: the float itself, or a per-window
    scale ``(N,)`` as a float64 column ``(N, 1)``."""
    return scale if isinstance(scale, float) else scale.double().cpu()[:, None]


def concat_windows(parts: Sequence[Windows]) -> Windows:
    """The windows of several series (a panel) as one set, in order, each window keeping its
    series' scale (``scale`` becomes ``(N,)``); the parts must all have a base or none."""
    if not parts:
        raise ValueError("concat_windows: expected at least one set of windows, got none")
    if len({p.base is None for p in parts}) > 1:
        raise ValueError(
            "concat_windows: expected every set of windows with a base forecast or none with one"
        )
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    scale = torch.cat([torch.as_tensor(p.scales(), dtype=torch.float64) for p in parts])
    return Windows(
        cat("origins"),
        cat("local"),
        cat("global_"),
        cat("global_len"),
        cat("targets"),
        cat("covariates"),
        cat("anchor"),
        scale,
        None if parts[0].base is None else cat("base"),
    )


@dataclass(frozen=True)
class CovariateNorm:
    """The covariates' standardisation, fitted on the training rows:
    ``(x - mean) / std`` per column."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def apply(self, values: np.ndarray) -> np.ndarray:
        """``values`` ``(..., k)`` standardised."""
        return (values - np.asarray(self.mean)) / np.asarray(self.std)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


SPLIT_WORDS = {
    "val": "validation",
    "stop": "early-stopping",
}  # what reports call the early-stopping split


@dataclass(frozen=True)
class Prepared:
    """A series cut into training, validation and test windows, scaled on training only;
    ``stop``: the windows early stopping reads (``data.stop_steps`` > 0), ``None`` when it
    reads the validation windows."""

    series: Series
    splits: Splits
    scale: float
    train: Windows
    val: Windows
    test: Windows
    covariate_norm: CovariateNorm | None = None
    stop: Windows | None = None

    @property
    def stop_split(self) -> str:
        """The split early stopping and the best weights are chosen on: ``"stop"`` or ``"val"``."""
        return "val" if self.stop is None else "stop"


def prepare(series: Series, config: DataConfig, refit: bool = False) -> Prepared:
    """Split ``series``, fit the scale on the training windows, build every window set.

    ``refit``: the windows of a model refitted before the test stretch: it trains (and the
    scale is fitted) on every window whose targets all lie before the test stretch
    (``splits.before_test``: the training, early-stopping and validation windows and those
    between them); ``val`` and ``test`` are the same windows as without ``refit`` (``val`` is
    then seen in training) and there is no ``stop`` (a refit trains a fixed number of
    steps).  ``splits`` is the same either way."""
    splits = split_origins(series, config)
    names = ("train", "val", "test") + (("stop",) if config.stop_steps else ())
    for name in names:
        if len(getattr(splits, name)) == 0:
            raise DataError(
                f"{series.source}, column {series.column!r}: no {_SPLIT_NAMES[name]} window whose "
                f"{config.horizon} targets are all observed values; use a longer series or other "
                "window settings (--horizon, --val-steps, --test-steps, --stop-steps, "
                "--local-steps)"
            )
    train = splits.before_test if refit else splits.train
    scale = fit_scale(series, train, config.horizon)
    norm = fit_covariates(series, train) if config.covariates else None
    build = lambda origins: make_windows(series, origins, config, scale, covariate_norm=norm)  # noqa: E731
    stop = build(splits.stop) if config.stop_steps and not refit else None
    return Prepared(
        series, splits, scale, build(train), build(splits.val), build(splits.test), norm, stop
    )


_SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test", "stop": "early-stopping"}


@dataclass(frozen=True)
class Splits:
    """Origins (int64 arrays) of the training, validation and test windows; ``before_test``:
    every window whose targets all lie before the test stretch (``train``, ``stop``, ``val``
    and the windows whose targets straddle their starts), a refitted model's training windows;
    ``stop``: the early-stopping windows, whose targets lie in the ``stop_steps`` before
    ``val_start`` (from ``stop_start``; empty when ``stop_steps`` is 0)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    val_start: int
    test_start: int
    before_test: np.ndarray
    stop: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    stop_start: int | None = None


def history_length(config: DataConfig) -> int:
    """Rows before (and at) the first origin: the local encoder's steps, the fewest global
    blocks, and two periods (the seasonal naive + drift baseline reads them)."""
    return max(config.local_steps, config.block * config.min_global_blocks, 2 * config.period)


def min_length(config: DataConfig) -> int:
    """Rows the windows need: history for one origin plus a horizon in each split."""
    return (
        history_length(config)
        + config.horizon
        + config.stop_steps
        + config.val_steps
        + config.test_steps
    )


def check_length(series: Series, config: DataConfig) -> None:
    """Raise :class:`DataError` (naming the file and column, the rows needed and available, and
    the flags that set them) if the series is too short, or if a validation or test stretch
    is shorter than the horizon."""
    where = f"{series.source}, column {series.column!r}"
    stretches = [("--val-steps", config.val_steps), ("--test-steps", config.test_steps)]
    for flag, steps in stretches + (
        [("--stop-steps", config.stop_steps)] if config.stop_steps else []
    ):
        if steps < config.horizon:
            raise DataError(
                f"{where}: {flag} {steps} is shorter than --horizon {config.horizon}; expected at "
                "least the horizon (a window's targets must fit in the stretch): raise "
                f"{flag} or lower --horizon"
            )
    need = min_length(config)
    if len(series) < need:
        raise DataError(
            f"{where}: too short for the windows: {len(series)} rows, need at least {need} = "
            f"history {history_length(config)} (the largest of --local-steps {config.local_steps}, "
            f"--block {config.block} x --min-global-blocks {config.min_global_blocks}, 2 x "
            f"--period {config.period}) + --horizon {config.horizon} "
            f"{f'+ --stop-steps {config.stop_steps} ' if config.stop_steps else ''}+ --val-steps "
            f"{config.val_steps} + --test-steps {config.test_steps}; lower these flags by "
            f"{need - len(series)} rows in all, or use a longer series"
        )


def phases(series: Series, index: np.ndarray, period: int) -> np.ndarray:
    """The seasonal phase in [0, 1) at integer ``index`` (may run past the end of the series):
    zero everywhere for a non-seasonal series (``period`` 1); for dates, the fraction of the
    seasonal cycle in time (:func:`cycle_days`: the year for weekly, monthly, quarterly data,
    the day for hourly data), else ``(index mod period) / period``."""
    index = np.asarray(index, dtype=np.int64)
    if period <= 1:
        return np.zeros(index.shape)
    if series.time_kind != "date" or series.times is None:
        return (index % period) / period
    inside = np.clip(index, 0, len(series) - 1)
    if series.grid is not None:
        days = np.where(index == inside, series.times[inside], series.grid.times(index))
        step = series.grid.days_per_step() or 1.0
    else:
        step = float(np.median(np.diff(series.times))) if len(series) > 1 else 1.0
        days = series.times[inside] + (index - inside) * step
    return (days / cycle_days(period * step)) % 1.0


def cycle_days(days: float) -> float:
    """A seasonal cycle of about ``days`` days, snapped to the calendar's year, week or day
    when within 5 % of it (52 weekly steps are 364 days: the cycle is still the year)."""
    for calendar in (DAYS_PER_YEAR, 7.0, 1.0):
        if abs(days - calendar) <= 0.05 * calendar:
            return calendar
    return days


def split_origins(series: Series, config: DataConfig) -> Splits:
    """Origins whose targets lie in training, validation or test, and are all observed."""
    check_length(series, config)
    n, h = len(series), config.horizon
    test_start = n - config.test_steps
    val_start = test_start - config.val_steps
    first = history_length(config) - 1
    origins = np.arange(first, n - h)
    observed = series.observed
    ok = np.array([observed[t + 1 : t + h + 1].all() for t in origins], dtype=bool)
    last = origins + h
    stop_start = val_start - config.stop_steps
    train = origins[ok & (last < stop_start)]
    stop = (
        origins[ok & (origins + 1 >= stop_start) & (last < val_start)]
        if config.stop_steps
        else origins[:0]
    )
    val = origins[ok & (origins + 1 >= val_start) & (last < test_start)]
    test = origins[ok & (origins + 1 >= test_start)]
    before_test = origins[ok & (last < test_start)]
    return Splits(
        train,
        val,
        test,
        val_start,
        test_start,
        before_test,
        stop,
        stop_start if config.stop_steps else None,
    )


def fit_scale(series: Series, train_origins: np.ndarray, horizon: int) -> float:
    """Standard deviation of ``y[t+h] - y[t]`` over the training windows (training data only)."""
    y = series.values
    deltas = np.stack([y[train_origins + h] - y[train_origins] for h in range(1, horizon + 1)])
    scale = float(deltas.std())
    where = f"{series.source}, column {series.column!r}"
    if not np.isfinite(scale):
        raise DataError(
            f"{where}: the changes over the training windows overflow (values up to "
            f"{float(np.nanmax(np.abs(y))):.3g}); rescale the column"
        )
    if scale <= 0:
        raise DataError(
            f"{where}: the training windows do not vary "
            f"(every change over {horizon} steps is 0); cannot scale"
        )
    if scale < 1e-30:
        raise DataError(
            f"{where}: the changes over the training windows are tiny (standard deviation "
            f"{scale:.3g}), below what the model computes in; rescale the column"
        )
    return scale


def fit_covariates(series: Series, train_origins: np.ndarray) -> CovariateNorm:
    """Each covariate's mean and standard deviation over the rows up to the last training
    origin (the rows the training windows' encoders read); a constant column gets 1."""
    if series.covariates is None:
        raise DataError(
            f"{series.source}: expected the series to carry covariates "
            "(load it naming them), found none"
        )
    rows = series.covariates[: int(np.max(train_origins)) + 1]
    std = rows.std(axis=0)
    return CovariateNorm(
        tuple(rows.mean(axis=0).tolist()), tuple(np.where(std > 0, std, 1.0).tolist())
    )


def _check_covariates(
    series: Series, config: DataConfig, norm: CovariateNorm | None
) -> np.ndarray | None:
    """The series' covariates standardised, ``None`` without; errors when config,
    series and norm disagree."""
    if not config.covariates:
        return None
    if series.covariates is None or series.covariate_names != tuple(config.covariates):
        raise DataError(
            f"{series.source}: expected the covariates {list(config.covariates)}, "
            f"got {list(series.covariate_names)}"
        )
    if norm is None or len(norm.mean) != len(config.covariates):
        raise ValueError(
            f"make_windows: covariate_norm: expected one mean and std per covariate "
            f"({len(config.covariates)}), got {norm!r}"
        )
    return norm.apply(series.covariates)


def make_windows(
    series: Series,
    origins: np.ndarray,
    config: DataConfig,
    scale: float,
    targets: bool = True,
    covariate_norm: CovariateNorm | None = None,
) -> Windows:
    """Build the windows at ``origins``; ``targets=False`` for forecasting past the end;
    ``covariate_norm``: the covariates' standardisation (needed with ``config.covariates``)."""
    origins = np.asarray(origins, dtype=np.int64)
    covariates = _check_covariates(series, config, covariate_norm)
    y = series.values
    anchor = y[origins]
    local_idx = origins[:, None] + np.arange(1 - config.local_steps, 1)[None, :]
    local = _features(
        (y[local_idx] - anchor[:, None]) / scale, phases(series, local_idx, config.period)
    )
    glob, glob_len = _global(series, origins, config, anchor, scale, covariates)
    if covariates is not None:
        local = np.concatenate([local, covariates[local_idx]], axis=-1)
    future = origins[:, None] + np.arange(1, config.horizon + 1)[None, :]
    cov = _phase_features(phases(series, future, config.period))
    tgt = (y[future] - anchor[:, None]) / scale if targets else np.zeros(future.shape)
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    return Windows(
        torch.from_numpy(origins),
        as_t(local),
        as_t(glob),
        torch.from_numpy(glob_len),
        as_t(tgt[..., None]),
        as_t(cov),
        as_t(anchor),
        float(scale),
    )


def _global(
    series: Series,
    origins: np.ndarray,
    config: DataConfig,
    anchor: np.ndarray,
    scale: float,
    covariates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The global encoder's rows ``(N, global_blocks, 3 + k)`` (``k`` covariates: their block
    means) and valid counts: row ``j < count``
    of origin ``t`` is the block ending at ``t - block * (count - 1 - j)`` (chronological, left
    aligned); the rows past ``count`` are zeros.  All origins at once."""
    blocks, size = config.global_blocks, config.block
    counts = np.minimum(blocks, (origins + 1) // size)
    j = np.arange(blocks)[None, :]
    valid = j < counts[:, None]
    ends = np.where(
        valid, origins[:, None] - size * (counts[:, None] - 1 - j), size - 1
    )  # padding: any whole block
    idx = ends[..., None] - np.arange(size - 1, -1, -1)
    means = (series.values[idx].mean(axis=-1) - anchor[:, None]) / scale
    out = _features(means, phases(series, ends, config.period))
    if covariates is not None:
        out = np.concatenate([out, covariates[idx].mean(axis=-2)], axis=-1)
    out[~valid] = 0.0
    return out, counts.astype(np.int64)


def _features(values: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return np.concatenate([values[..., None], _phase_features(phase)], axis=-1)


def _phase_features(phase: np.ndarray) -> np.ndarray:
    angle = 2 * np.pi * phase
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def with_base(
    windows: Windows, base: np.ndarray, decoder_inputs: list[np.ndarray] | None = None
) -> Windows:
    """Hybrid windows: ``base`` ``(N, H)`` is a classical forecast (series units) made at each
    origin without look-ahead; the targets become its errors ``(y - base) / s`` and the decoder
    gets one more covariate per step for each ``(N, H)`` array in ``decoder_inputs``, already
    normalised (default: ``[(base - anchor) / s]``).  ``to_ppm`` adds ``base`` back."""
    b = torch.as_tensor(np.asarray(base, dtype=np.float64))
    shape = tuple(windows.targets.shape[:2])
    if tuple(b.shape) != shape:
        raise ValueError(
            f"with_base: expected a base forecast of shape {shape}, got {tuple(b.shape)}"
        )
    relative = ((b - windows.anchor.double()[:, None]) / per_window(windows.scale)).float()[
        ..., None
    ]
    extra = (
        [relative]
        if decoder_inputs is None
        else [torch.as_tensor(np.asarray(f, dtype=np.float32))[..., None] for f in decoder_inputs]
    )
    if any(tuple(e.shape[:2]) != shape for e in extra):
        raise ValueError(
            f"with_base: expected decoder inputs of shape {shape}, got "
            f"{[tuple(e.shape[:2]) for e in extra]}"
        )
    return Windows(
        windows.origins,
        windows.local,
        windows.global_,
        windows.global_len,
        windows.targets - relative,
        torch.cat([windows.covariates, *extra], dim=-1),
        windows.anchor,
        windows.scale,
        b,
    )


def deseasonalised_forecast(
    windows: Windows, forecast: np.ndarray, seasonal: np.ndarray, scale: float
) -> np.ndarray:
    """A forecast ``(N, H)`` (series units) on the deseasonalised encoders' footing: less the
    known ``seasonal`` component at its target steps, relative to the deseasonalised anchor
    ``y[t] - seasonal[t]``, over ``scale``.  ``seasonal`` must reach the last target
    (``origin + H``); it is read at the origin and the target steps only."""
    origins = windows.origins.numpy()
    steps = origins[:, None] + np.arange(1, np.shape(forecast)[1] + 1)[None, :]
    if len(seasonal) <= steps.max(initial=-1):
        raise ValueError(
            f"deseasonalised_forecast: the seasonal component ({len(seasonal)} steps) does not "
            f"reach step {steps.max()}"
        )
    anchor = windows.anchor.double().numpy() - seasonal[origins]
    return (np.asarray(forecast, dtype=np.float64) - seasonal[steps] - anchor[:, None]) / scale


def deseasonalised(
    windows: Windows,
    series: Series,
    seasonal: np.ndarray,
    config: DataConfig,
    scale: float,
    covariate_norm: CovariateNorm | None = None,
) -> Windows:
    """``windows`` whose encoders read ``series`` minus ``seasonal`` (a known seasonal
    component, ``(len(series),)``, e.g. a classical model's fitted Fourier terms) normalised by
    ``scale``, as the ES-RNN feeds its network deseasonalised values; targets, decoder inputs,
    anchor and base are unchanged.  The window at origin ``t`` reads ``seasonal`` up to ``t``
    only."""
    seasonal = np.asarray(seasonal, dtype=np.float64)
    if seasonal.shape != (len(series),):
        raise ValueError(
            f"deseasonalised: expected a seasonal component of shape ({len(series)},), "
            f"got {seasonal.shape}"
        )
    adjusted = replace(series, values=series.values - seasonal)
    rebuilt = make_windows(
        adjusted,
        windows.origins.numpy(),
        config,
        scale,
        targets=False,
        covariate_norm=covariate_norm,
    )
    return replace(windows, local=rebuilt.local, global_=rebuilt.global_)
