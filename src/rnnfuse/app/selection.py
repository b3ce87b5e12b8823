"""Choosing the model to deploy on validation: every row of the demo's table as a candidate
with its validation and test forecasts, an ensemble of the best few on validation, the
scores each is judged by.

The ensemble (the mean forecast of the :data:`ENSEMBLE_SIZE` rows with the lowest validation
MAE) is what won the M4 competition's forecasting tracks: combining a few good forecasts
is rarely worse than the best of them and often better.  The selected row is the candidate,
that ensemble included, with the lowest validation MAE; ties go to the simpler kind (naive,
then classical, network, hybrid, ensemble), then to the name.  Only validation decides; the
test columns are read after the choice.

>>> import numpy as np
>>> target = np.array([[1.0, 2.0], [2.0, 3.0]])
>>> a = Candidate("a", "classical", target + 0.5, target + 0.5)
>>> b = Candidate("b", "network", target - 0.1, target + 1.0)
>>> select([a, b], target).name
'b'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Candidate",
    "KINDS",
    "ENSEMBLE_SIZE",
    "scores",
    "mase_scale",
    "ensemble",
    "select",
    "rank",
]

KINDS = ("naive", "classical", "network", "hybrid", "ensemble")
ENSEMBLE_SIZE = 3


@dataclass(frozen=True)
class Candidate:
    """A row that could be deployed: its forecasts ``(N, H)`` at the validation and the test
    origins, in series units."""

    name: str
    kind: str
    val: np.ndarray
    test: np.ndarray
    parts: tuple[str, ...] = ()  # an ensemble's members

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"Candidate {self.name!r}: kind: expected one of {list(KINDS)}, got {self.kind!r}"
            )


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


def scores(prediction: np.ndarray, target: np.ndarray, scale: float) -> dict[str, float]:
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
    return {
        "mae": mae,
        "rmse": float(np.sqrt((diff**2).mean())),
        "mase": mae / scale,
        "smape": float(ratio.mean()),
    }


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


def select(candidates: Sequence[Candidate], val_target: np.ndarray) -> Candidate:
    """The candidate with the lowest validation MAE against ``val_target`` (see the module
    docstring)."""
    if not candidates:
        raise ValueError("select: expected at least one candidate, got none")
    return rank(candidates, val_target)[0]
