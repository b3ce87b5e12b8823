"""One run of the demo's experiment: a network trained (:func:`train_one`) or a classical model
fitted (:func:`classical_one`) on the demo's windows, each returning a picklable result for
the worker processes (:mod:`rnnfuse.app.workers`), and the refits' test forecasts put in
place of their runs' (:func:`apply_refits`).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .config import DataConfig, ModelConfig, OptimConfig, RunConfig
from .data import Series, load_data
from .hybrid import blend, blend_base, correction_weight, hybrid_data
from .metrics import forecast, truth
from .model import count_parameters
from .results import ClassicalFit, Errors, HybridBase, NetworkRun, RefitRun, Refitted
from .windows import Prepared, prepare

__all__ = [
    "DEMO_STEPS",
    "DEMO_PATIENCE",
    "Budget",
    "batch_size_for",
    "demo_config",
    "train_one",
    "run_label",
    "apply_refits",
    "classical_one",
]

DEMO_STEPS = (
    300  # optimizer steps per model: as many for a 100-window series as for a 2,000-window one
)


DEMO_PATIENCE = (
    100  # steps without a better early-stopping MAE before a run stops (its best weights kept)
)


@dataclass(frozen=True)
class Budget:
    """How long each demo model trains: ``steps`` optimizer steps (``epochs`` whole epochs
    instead, when given), stopping early after ``patience`` steps without a better MAE on the
    early-stopping windows (``None``: never), the best weights there kept."""

    steps: int | None = DEMO_STEPS
    patience: int | None = DEMO_PATIENCE
    epochs: int | None = None

    def __post_init__(self) -> None:
        for name in ("steps", "patience", "epochs"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"Budget: {name}: expected a positive int or None, got {value!r}")
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"Budget: expected steps or epochs (one of them), got steps={self.steps}, "
                f"epochs={self.epochs}"
            )

    def describe(self) -> str:
        """``"300 optimizer steps (patience 100)"``, for the report."""
        amount = (
            f"{self.epochs} epochs" if self.epochs is not None else f"{self.steps} optimizer steps"
        )
        return amount + (
            f" at most, stopping after {self.patience} without a better early-stopping MAE"
            if self.patience
            else ""
        )


def batch_size_for(windows: int) -> int:
    """The demo's batch size for ``windows`` training windows: 64, smaller for short series
    (about 16 batches per epoch, at least 16 windows per batch)."""
    return min(64, max(16, windows // 16))


def demo_config(
    fusion: str,
    budget: Budget,
    seed: int,
    data: DataConfig | None = None,
    windows: int = 1024,
    feedback: bool = True,
) -> RunConfig:
    """The configuration of one demo model (defaults of ``rnnfuse train`` otherwise);
    ``windows``: the training windows (they set the batch size, :func:`batch_size_for`);
    ``feedback``: the decoder reads its previous forecast (``ModelConfig.decoder_feedback``)."""
    optim = OptimConfig(
        epochs=budget.epochs or 1,
        steps=budget.steps if budget.epochs is None else None,
        patience=budget.patience,
        batch_size=batch_size_for(windows),
    )
    model = ModelConfig(fusion=fusion, decoder_feedback=feedback)
    return RunConfig(data or DataConfig(), model, optim, seed=seed, threads=1)


def train_one(
    fusion: str,
    budget: Budget,
    seed: int,
    out: str | None,
    data: DataConfig | None = None,
    base: HybridBase | None = None,
    refit: bool = False,
    feedback: bool = True,
) -> NetworkRun | RefitRun:
    """Train one demo model; return its history, errors and test forecasts (picklable).

    ``base``: a hybrid; the forecasts ``(N, H)`` of a classical model at every origin (without
    look-ahead); the network learns their errors (:func:`hybrid_data`), and the share of its
    correction kept is chosen on validation (:func:`correction_weight`, returned as
    ``correction_weight``).  ``feedback``: as :func:`demo_config`'s.

    ``refit``: train on every window whose targets lie before the test stretch instead, for
    ``budget`` (the steps the training-windows model's best validation took; a hybrid's then
    need ``base.refit``), and return only what the test column needs (a
    :class:`~rnnfuse.app.results.RefitRun`): the test forecast (a hybrid's before any
    correction share: :func:`apply_refits` blends it with the share its training-windows model
    chose on validation), the test windows' ``base``, the seconds and the number of training
    windows.
    """
    from .training import Trainer  # imported here: runs in a fresh worker process

    data = data or DataConfig()
    name = run_label(fusion, base)
    run_dir = (
        None
        if out is None
        else Path(out) / "runs" / _run_name(fusion, seed, base is not None, refit)
    )
    if run_dir is not None and run_dir.exists():
        shutil.rmtree(run_dir)
    lines: list[str] = []
    if base is not None:
        prepared = hybrid_data(data, base, refit)
    else:
        prepared = prepare(load_data(data), data, refit=refit)
    trainer = Trainer(
        demo_config(fusion, budget, seed, data, len(prepared.train), feedback),
        run_dir,
        log=lines.append,
        show_progress=False,
        prepared=prepared,
        extra_covariates=0 if base is None else 1,
    )
    trainer.start()
    began = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - began
    test_forecast = forecast(trainer.model, trainer.data.test)
    if refit:
        test = trainer.data.test
        return RefitRun(
            name=name,
            seed=seed,
            seconds=seconds,
            windows=len(trainer.data.train),
            epochs=len(trainer.progress.history),
            test_forecast=test_forecast.tolist(),
            test_base=None if test.base is None else test.base.double().numpy().tolist(),
            log=lines,
        )
    val = Errors.from_json(trainer.evaluate("val"))
    val_forecast = forecast(trainer.model, trainer.data.val)
    weight = None
    if base is not None:  # the share of the network's correction, chosen on validation
        weight, val = correction_weight(val_forecast, trainer.data.val, trainer.data.series)
        test_forecast = blend(trainer.data.test, test_forecast, weight)
        val_forecast = blend(trainer.data.val, val_forecast, weight)
    return NetworkRun(
        name=name,
        seed=seed,
        decoder=_describe_decoder(trainer.model),
        params=count_parameters(trainer.model),
        seconds=seconds,
        history=trainer.progress.history,
        best_step=trainer.progress.best_step,
        steps=trainer.progress.step,
        val=val,
        test=Errors.of(test_forecast, truth(trainer.data.series, trainer.data.test)),
        test_forecast=test_forecast.tolist(),
        val_forecast=val_forecast.tolist(),
        correction_weight=weight,
        log=lines,
    )


def _run_name(fusion: str, seed: int, hybrid: bool, refit: bool) -> str:
    """A run's folder under ``out/runs``: ``zoph-knight-seed0``,
    ``zoph-knight-hybrid-seed0-refit``."""
    return f"{fusion}{'-hybrid' if hybrid else ''}-seed{seed}{'-refit' if refit else ''}"


def run_label(fusion: str, base: HybridBase | None) -> str:
    """The name a network run reports: the fusion, ``"<fusion> + <base>"`` for a hybrid."""
    return fusion if base is None else f"{fusion} + {base.name}"


def _describe_decoder(model: Any) -> str:
    dec = model.decoder
    sizes = ",".join(str(s) for s in dec.hidden_sizes)
    how = "bridge" if model.bridge is not None else "direct"
    fed = "" if model.feedback else ", no feedback"
    return f"{dec.layers[0].kind.upper()} {sizes} ({how}{fed})"


def apply_refits(runs: list[NetworkRun | RefitRun], series: Series, test: Any) -> list[NetworkRun]:
    """The network runs with their refitted models' test forecasts in place of their own: each
    refit (``train_one(..., refit=True)``) replaces the ``test`` errors and forecast of the
    run with the same name and seed, a hybrid's blended with the correction share that run
    chose on validation; the run's own test errors move to ``refitted``.  ``test``: the test
    windows (for the truth)."""
    import numpy as np

    refits = {(r.name, r.seed): r for r in runs if isinstance(r, RefitRun)}
    target = truth(series, test)
    out = []
    for run in runs:
        if isinstance(run, RefitRun):
            continue
        fit = refits.pop((run.name, run.seed), None)
        if fit is None:
            out.append(run)
            continue
        prediction = np.asarray(fit.test_forecast, dtype=np.float64)
        if run.correction_weight is not None:
            prediction = blend_base(fit.test_base, prediction, run.correction_weight)
        out.append(
            replace(
                run,
                test=Errors.of(prediction, target),
                test_forecast=prediction.tolist(),
                refitted=Refitted(run.test, fit.seconds, fit.windows),
            )
        )
    if refits:
        raise ValueError(
            "apply_refits: refits without their model trained on the training "
            f"windows: {sorted(refits)}"
        )
    return out


def classical_one(
    name: str, data: DataConfig, period: float, train: bool = False, refit: bool = False
) -> ClassicalFit:
    """One classical baseline on the demo's validation and test windows (in a worker);
    ``train``/``refit``: also at the training origins, with the parameters fitted before
    validation, and at every origin before the test stretch, with those fitted before it (a
    part of the hybrids' base)."""
    import numpy as np

    from .baselines import classical_baselines

    prepared = prepare(load_data(data), data)
    splits = _baseline_splits(prepared)
    if train:  # the training origins, then the early-stopping ones (both before validation)
        origins = [prepared.train.origins.numpy()] + (
            [] if prepared.stop is None else [prepared.stop.origins.numpy()]
        )
        splits["train"] = (prepared.splits.val_start, np.concatenate(origins), None)
    if refit:
        splits["refit"] = (prepared.splits.test_start, prepared.splits.before_test, None)
    return classical_baselines(
        _observed(prepared.series),
        splits,
        data.horizon,
        period,
        names=[name],
        covariates=prepared.series.covariates,
    )[name]


def _observed(series: Series) -> Any:
    import numpy as np

    return np.where(series.observed, series.values, np.nan)


def _baseline_splits(prepared: Prepared) -> dict[str, tuple[int, Any, Any]]:
    sp = prepared.splits
    return {
        split: (
            start,
            getattr(prepared, split).origins.numpy(),
            truth(prepared.series, getattr(prepared, split)),
        )
        for split, start in (("val", sp.val_start), ("test", sp.test_start))
    }
