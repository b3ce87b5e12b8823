"""The demo's results as types: what a worker returns (:class:`NetworkRun`, :class:`RefitRun`,
:class:`ClassicalFit`), the hybrids' base (:class:`BaseChoice`, :class:`HybridBase`), the
table's rows (:class:`ModelRow`, :class:`BaselineRow`), the selection on validation
(:class:`Selection`, :class:`Row`, :class:`Metrics`) and the whole (:class:`DemoResults`).

Every type is a frozen dataclass (picklable: the workers return them through
:mod:`multiprocessing`); ``to_json()`` gives the form ``results.json`` holds, keys in the order
it has always had.

>>> row = Row("DHR", "classical", Metrics(1.0, 2.0, 0.5, 3.0), Metrics(1.5, 2.5, 0.6, 4.0))
>>> row.to_json()["val"]
{'mae': 1.0, 'rmse': 2.0, 'mase': 0.5, 'smape': 3.0}
>>> Row.from_json("DHR", row.to_json()) == row
True
>>> Row("x", "deep", row.val, row.test)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: Row 'x': kind: expected one of ['naive', 'classical', ..., 'ensemble'], got 'deep'
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

import numpy as np

if TYPE_CHECKING:
    from .selection import Candidate

__all__ = [
    "Kind",
    "KINDS",
    "check_kind",
    "Errors",
    "Metrics",
    "NetworkRun",
    "RefitRun",
    "Refitted",
    "ClassicalFit",
    "BaseChoice",
    "HybridBase",
    "MeanErrors",
    "SeedErrors",
    "UnrefittedErrors",
    "ModelRow",
    "BaselineRow",
    "Row",
    "Selection",
    "DemoResults",
]

Kind = Literal["naive", "classical", "network", "hybrid", "ensemble"]
KINDS: tuple[Kind, ...] = get_args(Kind)  # from the simplest: ties in the selection go first


def check_kind(kind: object, where: str) -> Kind:
    """``kind`` if it is one of :data:`KINDS`; a ValueError naming ``where`` otherwise."""
    if kind not in KINDS:
        raise ValueError(f"{where}: kind: expected one of {list(KINDS)}, got {kind!r}")
    return cast(Kind, kind)


@dataclass(frozen=True)
class Errors:
    """MAE, RMSE and the MAE per forecast step of a forecast (series units)."""

    mae: float
    rmse: float
    mae_by_step: list[float]

    @classmethod
    def of(cls, prediction: Any, target: Any) -> Errors:
        """The errors of ``prediction`` against ``target`` (:func:`~rnnfuse.app.metrics.errors`)."""
        from .metrics import errors  # imported here: the classical workers need no torch

        return cls.from_json(errors(prediction, target))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Errors:
        return cls(data["mae"], data["rmse"], list(data["mae_by_step"]))

    def to_json(self) -> dict[str, Any]:
        return {"mae": self.mae, "rmse": self.rmse, "mae_by_step": list(self.mae_by_step)}


@dataclass(frozen=True)
class Metrics:
    """The selection's scores of a row on one stretch: MAE, RMSE, MASE and sMAPE (percent)."""

    mae: float
    rmse: float
    mase: float
    smape: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Metrics:
        return cls(data["mae"], data["rmse"], data["mase"], data["smape"])

    def to_json(self) -> dict[str, float]:
        return {"mae": self.mae, "rmse": self.rmse, "mase": self.mase, "smape": self.smape}


@dataclass(frozen=True)
class Refitted:
    """What a refit before the test stretch changed in its run: the test errors the model
    trained on the training windows had, the refit's seconds and training windows."""

    test_without_refit: Errors
    seconds: float
    windows: int


@dataclass(frozen=True)
class NetworkRun:
    """One network trained with one seed (:func:`~rnnfuse.app.experiment.train_one`): its
    errors, forecasts ``(N, H)`` at the validation and test origins, training history and, for a
    hybrid, the share of its correction kept (``correction_weight``); ``refitted`` once a refit's
    test forecast took the place of its own (:func:`~rnnfuse.app.experiment.apply_refits`)."""

    name: str
    seed: int
    decoder: str
    params: int
    seconds: float
    history: list[dict[str, Any]]
    best_step: int | None
    steps: int
    val: Errors
    test: Errors
    test_forecast: list[list[float]]
    val_forecast: list[list[float]]
    correction_weight: float | None = None
    log: list[str] = field(default_factory=list)
    refitted: Refitted | None = None


@dataclass(frozen=True)
class RefitRun:
    """A network refitted on every window before the test stretch: its test forecast (a
    hybrid's before any correction share) and the test windows' base forecast (hybrids)."""

    name: str
    seed: int
    seconds: float
    windows: int
    epochs: int
    test_forecast: list[list[float]]
    test_base: list[list[float]] | None = None
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClassicalFit:
    """One classical model (or a combination of several) fitted: its forecasts ``(N, H)`` per
    split (``val``, ``test``; ``train``, ``refit`` for the hybrids), what was fitted
    (``details``, as results.json gives it), the seconds, and why it failed (``error``; then no
    forecasts)."""

    name: str
    forecasts: dict[str, np.ndarray]
    details: dict[str, Any]
    error: str | None
    seconds: float


@dataclass(frozen=True)
class BaseChoice:
    """The hybrids' classical base chosen on validation: its name (``""``: nothing was fitted),
    the baselines it is the mean of, and every candidate's validation MAE."""

    name: str
    parts: tuple[str, ...]
    val_mae: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"val_mae": dict(self.val_mae), "chosen": self.name or None}


@dataclass(frozen=True)
class HybridBase:
    """What a hybrid network corrects: the base's forecasts ``(N, H)`` at the training (then the
    early-stopping), validation and test origins, at every origin before the test stretch
    (``refit``), and DHR's fitted details when DHR was fitted (``dhr``: the encoders read the
    series less its seasonal terms)."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    refit: np.ndarray | None = None
    dhr: dict[str, Any] | None = None


@dataclass(frozen=True)
class MeanErrors:
    """A network row's validation errors: means over its seeds."""

    mae: float
    rmse: float

    def to_json(self) -> dict[str, float]:
        return {"mae": self.mae, "rmse": self.rmse}


@dataclass(frozen=True)
class SeedErrors:
    """A network row's test errors: means over its seeds, the MAE's spread and per-seed values,
    and the mean MAE per forecast step."""

    mae: float
    rmse: float
    mae_std: float
    mae_per_seed: list[float]
    mae_by_step: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "mae": self.mae,
            "rmse": self.rmse,
            "mae_std": self.mae_std,
            "mae_per_seed": list(self.mae_per_seed),
            "mae_by_step": list(self.mae_by_step),
        }


@dataclass(frozen=True)
class UnrefittedErrors:
    """A refitted row's test errors before its refit (the training-windows models')."""

    mae: float
    mae_std: float
    mae_per_seed: list[float]
    rmse: float

    def to_json(self) -> dict[str, Any]:
        return {
            "mae": self.mae,
            "mae_std": self.mae_std,
            "mae_per_seed": list(self.mae_per_seed),
            "rmse": self.rmse,
        }


@dataclass(frozen=True)
class ModelRow:
    """A network (or hybrid) row of the table: its seeds' runs summed up, the first seed's
    history and test forecast, the seeds' mean forecasts (the row's candidate forecast), and for
    a refitted row its errors before the refit with the refits' mean seconds and windows."""

    name: str
    decoder: str
    params: int
    seconds: float
    seeds: list[int]
    val: MeanErrors
    test: SeedErrors
    history: list[dict[str, Any]]
    test_forecast: list[list[float]]
    val_forecast_mean: list[list[float]]
    test_forecast_mean: list[list[float]]
    correction_weights: list[float] | None = None
    test_without_refit: UnrefittedErrors | None = None
    refit_seconds: float | None = None
    refit_windows: int | None = None

    @property
    def refit(self) -> bool:
        """Whether a refit before the test stretch gave the test columns."""
        return self.test_without_refit is not None

    @property
    def kind(self) -> Kind:
        return "hybrid" if self.correction_weights is not None else "network"

    @property
    def label(self) -> str:
        """The row's name in the table and the selection: ``"<name> (refit)"`` when refitted."""
        return f"{self.name} (refit)" if self.refit else self.name

    def to_json(self) -> dict[str, Any]:
        """The row as results.json gives it (without forecasts: they go to forecasts.csv)."""
        out: dict[str, Any] = {
            "name": self.name,
            "decoder": self.decoder,
            "params": self.params,
            "seconds": self.seconds,
            "seeds": list(self.seeds),
            "val": self.val.to_json(),
            "test": self.test.to_json(),
            "history": self.history,
            "refit": self.refit,
        }
        if self.correction_weights is not None:
            out["correction_weights"] = list(self.correction_weights)
        if self.test_without_refit is not None:
            out["test_without_refit"] = self.test_without_refit.to_json()
            out["refit_seconds"] = self.refit_seconds
            out["refit_windows"] = self.refit_windows
        return out


@dataclass(frozen=True)
class BaselineRow:
    """A naive or classical row of the table: its errors on validation and test (none when the
    fit failed: ``error``), its seconds, a classical model's ``details`` and forecasts."""

    kind: Literal["naive", "classical"]
    seconds: float
    error: str | None = None
    val: Errors | None = None
    test: Errors | None = None
    details: dict[str, Any] = field(default_factory=dict)
    val_forecast: list[list[float]] | None = None
    test_forecast: list[list[float]] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("naive", "classical"):
            raise ValueError(
                f"BaselineRow: kind: expected 'naive' or 'classical', got {self.kind!r}"
            )

    @property
    def fitted(self) -> bool:
        """A row with errors (a naive row, or a classical fit that did not fail)."""
        return self.error is None and self.val is not None and self.test is not None

    def to_json(self) -> dict[str, Any]:
        """The row as results.json gives it (without forecasts)."""
        scores = (
            {}
            if self.val is None or self.test is None
            else {
                "val": self.val.to_json(),
                "test": self.test.to_json(),
            }
        )
        head = {"kind": self.kind, "seconds": self.seconds, "error": self.error}
        if self.kind == "naive":
            return scores | head
        return head | {"details": self.details} | scores


@dataclass(frozen=True)
class Row:
    """A candidate row of the selection: its kind and scores on validation and test; an
    ensemble's members (``parts``)."""

    name: str
    kind: Kind
    val: Metrics
    test: Metrics
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_kind(self.kind, f"Row {self.name!r}")

    @classmethod
    def from_json(cls, name: str, data: Mapping[str, Any]) -> Row:
        """The row ``name`` from its results.json form (``results["rows"][name]``)."""
        return cls(
            name,
            data["kind"],
            Metrics.from_json(data["val"]),
            Metrics.from_json(data["test"]),
            tuple(data.get("parts", ())),
        )

    def to_json(self) -> dict[str, Any]:
        out = {"kind": self.kind, "val": self.val.to_json(), "test": self.test.to_json()}
        return out | ({"parts": list(self.parts)} if self.parts else {})


@dataclass(frozen=True)
class Selection:
    """The choice on validation (:func:`~rnnfuse.app.report.selection_summary`): every row's
    scores, the selected row's name, the ensemble's members (``None``: no ensemble), the test
    origins' time labels, the MASE scale per stretch, and the candidates with their forecasts
    (for forecasts.csv; not in results.json)."""

    rows: dict[str, Row]
    selected: str
    ensemble: tuple[str, ...] | None
    test_origins: list[str]
    mase_scale: dict[str, float]
    candidates: Sequence[Candidate] = ()

    def __post_init__(self) -> None:
        if self.selected not in self.rows:
            raise ValueError(
                f"Selection: selected: expected one of the rows {list(self.rows)}, "
                f"got {self.selected!r}"
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": {name: row.to_json() for name, row in self.rows.items()},
            "selected": self.selected,
            "ensemble": None if self.ensemble is None else list(self.ensemble),
            "test_origins": list(self.test_origins),
            "mase_scale": dict(self.mase_scale),
        }


@dataclass(frozen=True)
class DemoResults:
    """Everything ``rnnfuse demo`` reports: the protocol's facts, the network rows
    (``models``), the naive and classical rows (``baselines``, by label), the best network
    (``winner``, ``runner_up``) and classical row, the hybrids' base, the selection on
    validation and the wall time (once known)."""

    data: str
    budget: str
    seeds: list[int]
    jobs: int
    threads_per_job: int
    models: list[ModelRow]
    baselines: dict[str, BaselineRow]
    winner: str
    runner_up: str | None
    cpu_count: int | None
    period: float
    best_classical: str | None
    covariates: list[str]
    stop_steps: int
    hybrid_base: str | None = None
    refit: str | None = None
    refit_windows: int | None = None
    selection: Selection | None = None
    wall_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        """results.json's content: every row's scores, no forecasts (forecasts.csv has them)."""
        out: dict[str, Any] = {
            "data": self.data,
            "budget": self.budget,
            "seeds": list(self.seeds),
            "jobs": self.jobs,
            "threads_per_job": self.threads_per_job,
            "models": [m.to_json() for m in self.models],
            "baselines": {name: b.to_json() for name, b in self.baselines.items()},
            "winner": self.winner,
            "runner_up": self.runner_up,
            "cpu_count": self.cpu_count,
            "period": self.period,
            "best_classical": self.best_classical,
            "covariates": list(self.covariates),
            "stop_steps": self.stop_steps,
            "hybrid_base": self.hybrid_base,
            "refit": self.refit,
            "refit_windows": self.refit_windows,
        }
        if self.selection is not None:
            out |= self.selection.to_json()
        if self.wall_seconds is not None:
            out["wall_seconds"] = self.wall_seconds
        return out
