"""The demo's hybrid: a network that corrects a classical forecast.

The network forecasts the error of a classical forecast made at each origin (without
look-ahead) and reads that forecast as a decoder input (:func:`hybrid_data`); its encoders
read the series less DHR's fitted seasonal terms when DHR was fitted.  The classical base is
chosen on validation (:func:`hybrid_base`), and so is the share of the network's correction
that is kept (:func:`correction_weight`, :func:`blend`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .config import DataConfig
from .data import Series, load_data
from .metrics import truth
from .results import BaseChoice, ClassicalFit, Errors, HybridBase
from .windows import Prepared, prepare

__all__ = [
    "CORRECTION_WEIGHTS",
    "blend",
    "blend_base",
    "correction_weight",
    "hybrid_data",
    "hybrid_base",
]

CORRECTION_WEIGHTS = tuple(k / 10 for k in range(11))


def blend(windows: Any, prediction: Any, weight: float) -> Any:
    """A hybrid's forecast with ``weight`` of its network's correction: ``base + w (f - base)``
    (``windows.base``: the classical forecast)."""
    return blend_base(windows.base.double().numpy(), prediction, weight)


def blend_base(base: Any, prediction: Any, weight: float) -> Any:
    import numpy as np

    base = np.asarray(base, dtype=np.float64)
    return base + weight * (np.asarray(prediction, dtype=np.float64) - base)


def correction_weight(prediction: Any, windows: Any, series: Series) -> tuple[float, Errors]:
    """The weight in :data:`CORRECTION_WEIGHTS` whose :func:`blend` has the lowest MAE on the
    hybrid's validation ``windows`` (0: the classical forecast alone, 1: the network's), and
    those errors."""
    target = truth(series, windows)
    scored = {w: Errors.of(blend(windows, prediction, w), target) for w in CORRECTION_WEIGHTS}
    best = min(CORRECTION_WEIGHTS, key=lambda w: scored[w].mae)
    return best, scored[best]


def hybrid_data(data: DataConfig, base: HybridBase, refit: bool = False) -> Prepared:
    """The hybrid's windows: ``base`` holds a classical forecast ``(N, H)`` per split, made at
    each origin without look-ahead; the targets become its errors and the decoder reads it
    (:func:`~rnnfuse.app.windows.with_base`).  With ``base.dhr`` (DHR's fitted details) the
    encoders read the series less DHR's fitted seasonal terms and the decoder reads the base
    forecast less them too (:func:`~rnnfuse.app.windows.deseasonalised`,
    :func:`~rnnfuse.app.windows.deseasonalised_forecast`): the fit before validation for the
    training and validation windows, the one before test for the test windows.  Training
    origins where the base has no forecast (too little history) are left out.

    ``refit``: the training windows are every window whose targets lie before the test stretch
    (:func:`~rnnfuse.app.windows.prepare`), their base ``base.refit`` and their seasonal
    terms from the classical fit before the test stretch, as the training windows' come from
    the fit before validation; validation (then seen in training: the epoch report only) and
    test windows are built as without ``refit``."""
    import numpy as np
    import torch

    from .windows import with_base

    plain = prepare(load_data(data), data, refit=refit)
    forecasts = _base_forecasts(plain, base, refit)
    windows = {}
    for split, (encoders, decoder_input) in _hybrid_inputs(
        plain, data, forecasts, base.dhr, refit
    ).items():
        windows[split] = with_base(
            encoders, forecasts[split], None if decoder_input is None else [decoder_input]
        )
    for split in (
        ("train", "stop") if plain.stop is not None else ("train",)
    ):  # origins without a base forecast
        known = np.isfinite(forecasts[split]).all(axis=1)
        windows[split] = windows[split].subset(torch.from_numpy(np.flatnonzero(known)))
    return replace(
        plain,
        train=windows["train"],
        val=windows["val"],
        test=windows["test"],
        stop=windows.get("stop"),
    )


def _base_forecasts(plain: Prepared, base: HybridBase, refit: bool) -> dict[str, Any]:
    """The base's forecast ``(N, H)`` for each split of the hybrid's windows: ``base.train``
    holds the training origins' rows followed by the early-stopping origins' (see
    :func:`classical_one`), ``base.refit`` every origin before the test stretch."""
    import numpy as np

    out = {
        "val": np.asarray(base.val, dtype=np.float64),
        "test": np.asarray(base.test, dtype=np.float64),
    }
    if refit:
        if base.refit is None:
            raise ValueError(
                f"hybrid_data: base.refit: expected {base.name}'s forecasts at every origin before "
                "the test stretch for a refit, got None"
            )
        return out | {"train": np.asarray(base.refit, dtype=np.float64)}
    rows = np.asarray(base.train, dtype=np.float64)
    n = len(plain.train)
    return out | {"train": rows[:n]} | ({} if plain.stop is None else {"stop": rows[n:]})


def _hybrid_inputs(
    plain: Prepared,
    data: DataConfig,
    forecasts: dict[str, Any],
    dhr: dict[str, Any] | None,
    refit: bool = False,
) -> dict[str, tuple[Any, Any]]:
    """Per split, the windows whose encoder inputs the hybrid reads and its decoder's base input
    (``None``: the default, the base relative to the last value); see :func:`hybrid_data`.  The
    deseasonalised inputs are scaled like the plain ones, on the training windows only."""
    import numpy as np

    from .baselines import seasonal_part
    from .windows import deseasonalised, deseasonalised_forecast, fit_scale

    splits = [split for split in ("train", "stop", "val", "test") if split in forecasts]
    if dhr is None:
        return {split: (getattr(plain, split), None) for split in splits}
    n = len(plain.series) + data.horizon  # the seasonal terms reach the last target
    before_val = seasonal_part(n, dhr["period"], dhr["K"], dhr["val_params"])
    before_test = seasonal_part(n, dhr["period"], dhr["K"], dhr["params"])
    train_seasonal = before_test if refit else before_val
    series = plain.series
    scale = fit_scale(
        replace(series, values=series.values - train_seasonal[: len(series)]),
        plain.train.origins.numpy(),
        data.horizon,
    )
    seasonals = {
        "train": train_seasonal,
        "stop": before_val,
        "val": before_val,
        "test": before_test,
    }
    out: dict[str, tuple[Any, Any]] = {}
    for split in splits:
        windows, seasonal = getattr(plain, split), seasonals[split]
        forecast = np.nan_to_num(forecasts[split])  # NaN rows: left out of training
        out[split] = (
            deseasonalised(
                windows, series, seasonal[: len(series)], data, scale, plain.covariate_norm
            ),
            deseasonalised_forecast(windows, forecast, seasonal, scale),
        )
    return out


def hybrid_base(
    classical: Mapping[str, ClassicalFit],
    val_truth: Any,
    names: Sequence[str] | None = None,
) -> BaseChoice:
    """The classical forecast the hybrids correct, with the baselines it is made of and every
    candidate's validation MAE: among the fitted ``classical`` results (``names``' order) and the
    combinations of them in :data:`~rnnfuse.app.baselines.COMBINATIONS`, the one with the
    lowest validation MAE against ``val_truth`` (ties: fewer parts, then the earlier one; see
    :func:`~rnnfuse.app.baselines.choose_base`); named ``""`` if none was fitted."""
    from .baselines import choose_base

    return choose_base(classical, val_truth, names)
