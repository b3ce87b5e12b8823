"""Choosing the model to deploy on validation: every row of the demo's table as a candidate
with its validation and test forecasts, an ensemble of the best few on validation, the
scores each is judged by.

The ensemble (the mean forecast of the :data:`ENSEMBLE_SIZE` rows with the lowest validation
MAE) is what won the M4 competition's forecasting tracks: combining a few good forecasts
is rarely worse than the best of them and often better.  Candidates are ranked by their
validation MAE; ties go to the simpler kind (naive, then classical, network, hybrid,
ensemble), then to the name.  The ensemble is deployed unless the best single row beats it on
validation by more than the standard error of that comparison (:func:`select`): picking the
row with the lowest validation error adds the noise of those errors, which an equal-weight
combination avoids (the forecast-combination puzzle).  Only validation decides; the test
columns are read after the choice.

>>> import numpy as np
>>> target = np.array([[1.0, 2.0], [2.0, 3.0]])
>>> a = Candidate("a", "classical", target + 0.5, target + 0.5)
>>> b = Candidate("b", "network", target - 0.1, target + 1.0)
>>> select([a, b], target).name
'b'

With the ensemble among the candidates, a single row needs a lead larger than the noise:

>>> y = np.zeros((4, 1))
>>> steady = Candidate("steady", "network", np.array([[0.1], [0.5], [0.1], [0.3]]), y)
>>> other = Candidate("other", "classical", np.array([[0.6], [0.2], [0.7], [0.1]]), y)
>>> select([steady, other, ensemble([steady, other], y)], y).name  # lead 0.075, noise 0.116
'ensemble of the best 2 on validation'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .results import KINDS, Kind, Metrics, check_kind

__all__ = [
    "Candidate",
    "KINDS",
    "ENSEMBLE_SIZE",
    "scores",
    "mase_scale",
    "ensemble",
    "select",
    "rank",
    "margin_noise",
]

ENSEMBLE_SIZE = 3


@dataclass(frozen=True)
class Candidate:
    """A row that could be deployed: its forecasts ``(N, H)`` at the validation and the test
    origins, in series units."""

    name: str
    kind: Kind
    val: np.ndarray
    test: np.ndarray
    parts: tuple[str, ...] = ()  # an ensemble's members

    def __post_init__(self) -> None:
        check_kind(self.kind, f"Candidate {self.name!r}")


def mase_scale(values: np.ndarray, end: int, lag: int) -> float:
    """The in-sample MAE of the seasonal naive forecast (``lag`` steps back; 1: the naive
    one) over ``values[:end]``, the denominator of the MASE (Hyndman and Koehler 2006).
    Missing values (NaN) are left out; ``nan`` when nothing is left or the MAE is 0."""
    lag = max(1, int(lag))
    y = np.asarray(values, dtype=np.float64)[:end]
    diff = np.abs(y[lag:] - y[:-lag])
    diff = diff[np.isfinite(diff)]
    scale = float(diff.mean()) if diff.size else float("nan")
    return scale if scale > 0 else float("nan")


def scores(prediction: np.ndarray, target: np.ndarray, scale: float) -> Metrics:
    """``mae``, ``rmse``, ``mase`` (the MAE over ``scale``, :func:`mase_scale`) and ``smape``
    (the M4 competition's, in percent: ``200 |y - f| / (|y| + |f|)``, 0 where both are 0)."""
    f = np.asarray(prediction, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    if f.shape != y.shape:
        raise ValueError(
            f"scores: expected forecasts of the targets' shape {y.shape}, got {f.shape}"
        )
    diff = np.abs(f - y)
    denominator = np.abs(y) + np.abs(f)
    ratio = np.divide(200.0 * diff, denominator, out=np.zeros_like(diff), where=denominator > 0)
    mae = float(diff.mean())
    return Metrics(
        mae=mae,
        rmse=float(np.sqrt((diff**2).mean())),
        mase=mae / scale,
        smape=float(ratio.mean()),
    )


def _val_mae(candidate: Candidate, target: np.ndarray) -> float:
    return float(np.abs(candidate.val - target).mean())


def rank(candidates: Sequence[Candidate], val_target: np.ndarray) -> list[Candidate]:
    """``candidates`` from the lowest validation MAE up (ties: the simpler kind, then the
    name); a candidate whose validation forecast is not finite comes last."""

    def key(c: Candidate) -> tuple[float, int, str]:
        mae = _val_mae(c, val_target)
        return (mae if np.isfinite(mae) else float("inf"), KINDS.index(c.kind), c.name)

    return sorted(candidates, key=key)


def ensemble(
    candidates: Sequence[Candidate], val_target: np.ndarray, size: int = ENSEMBLE_SIZE
) -> Candidate | None:
    """The mean forecast of the ``size`` candidates with the lowest validation MAE (finite
    forecasts only; naive rows take part like any other); ``None`` with fewer than two."""
    usable = [
        c
        for c in rank(candidates, val_target)
        if np.isfinite(c.val).all() and np.isfinite(c.test).all()
    ]
    chosen = usable[:size]
    if len(chosen) < 2:
        return None
    names = tuple(c.name for c in chosen)
    return Candidate(
        f"ensemble of the best {len(chosen)} on validation",
        "ensemble",
        np.mean([c.val for c in chosen], axis=0),
        np.mean([c.test for c in chosen], axis=0),
        names,
    )


def margin_noise(first: Candidate, second: Candidate, target: np.ndarray) -> float:
    """The standard error of the difference between ``second``'s and ``first``'s validation
    MAE: the per-window MAE difference at the origins ``0, H, 2H, ...`` (``H`` the horizon,
    ``target.shape[1]``, so the windows do not overlap), ``sd / sqrt(n)`` over those ``n``
    windows; 0 with fewer than two."""
    horizon = target.shape[1] if target.ndim > 1 else 1
    rows = slice(None, None, max(1, horizon))
    per_window = np.abs(second.val[rows] - target[rows]) - np.abs(first.val[rows] - target[rows])
    diff = per_window.reshape(per_window.shape[0], -1).mean(axis=1)
    diff = diff[np.isfinite(diff)]
    if diff.size < 2:
        return 0.0
    return float(diff.std(ddof=1) / np.sqrt(diff.size))


def select(candidates: Sequence[Candidate], val_target: np.ndarray) -> Candidate:
    """The row to deploy: the ensemble among ``candidates`` (kind ``"ensemble"``) unless the
    row with the lowest validation MAE beats it by more than :func:`margin_noise`; that row
    when there is no ensemble.

    Raises:
        ValueError: ``candidates`` is empty.
    """
    if not candidates:
        raise ValueError("select: expected at least one candidate, got none")
    ranked = rank(candidates, val_target)
    best = ranked[0]
    combined = next((c for c in ranked if c.kind == "ensemble"), None)
    if combined is None or combined is best:
        return best
    lead = _val_mae(combined, val_target) - _val_mae(best, val_target)
    return best if lead > margin_noise(best, combined, val_target) else combined
