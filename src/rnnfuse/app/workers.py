"""The demo's experiment grid, run side by side in worker processes: every classical model and
network first, the hybrids once every classical model has arrived and their base is chosen on
validation, each refit once its run has found its best step (:func:`run_all`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any

from .config import DataConfig
from .experiment import Budget, classical_one, run_label, train_one
from .hybrid import hybrid_base
from .results import BaseChoice, ClassicalFit, HybridBase, NetworkRun, RefitRun
from .worker_lifetime import pool_options

__all__ = ["WorkerResult", "network_tasks", "refit_task", "run_all"]

WorkerResult = NetworkRun | RefitRun | ClassicalFit  # what a worker sends back (picklable)

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


_COST = {
    "concat": 5,
    "bridge": 4,
    "child-sum": 4,
    "gated": 4,
    "zoph-knight": 4,
    "sum": 3,
    "mean": 3,
    "max": 3,
    "global": 2,
    "local": 1,
}


def _star(task: tuple | dict[str, Any]) -> WorkerResult:
    """Run one task in a worker: ``("baseline", ...)`` (:func:`classical_one`), or a network's
    keyword arguments for :func:`train_one`."""
    if isinstance(task, tuple):
        return classical_one(*task[1:])
    return train_one(**{k: v for k, v in task.items() if k != "then_refit"})


def network_tasks(
    fusions: Sequence[str],
    seeds: Sequence[int],
    budget: Budget,
    out: str,
    data: DataConfig,
    refit: bool,
    feedback: bool = True,
) -> list[dict[str, Any]]:
    """:func:`train_one`'s arguments for every fusion and seed (``then_refit``: a refit before
    the test stretch follows once the run has found its best step, see :func:`refit_task`;
    ``feedback``: the decoders read their previous forecasts); longest first, which packs the
    workers best."""
    tasks = [
        {
            "fusion": f,
            "budget": budget,
            "seed": s,
            "out": out,
            "data": data,
            "refit": False,
            "then_refit": refit,
            "feedback": feedback,
        }
        for s in seeds
        for f in fusions
    ]
    return sorted(tasks, key=lambda t: -_COST.get(t["fusion"], 3))


def refit_task(task: dict[str, Any], run: NetworkRun) -> dict[str, Any]:
    """The refit of ``task`` whose run on the training windows was ``run``: as many optimizer
    steps as its best validation took (all of them when it never improved), no early stop."""
    steps = max(1, run.best_step or run.steps or 1)
    return task | {"refit": True, "then_refit": False, "budget": Budget(steps=steps, patience=None)}


def run_all(
    tasks: Sequence[tuple | dict[str, Any]],
    jobs: int,
    log: Callable[[str], None],
    hybrids: Sequence[dict[str, Any]] = (),
    names: Sequence[str] = (),
    val_truth: Any = None,
    chosen: list[BaseChoice] | None = None,
) -> list[WorkerResult]:
    """Run ``tasks``; the ``hybrids`` (network tasks) start once every classical baseline of
    ``names`` has arrived: their base, the one among them and their combinations with the lowest
    validation MAE against ``val_truth`` (:func:`hybrid_base`), fitted once and shared by every
    seed, is added to their arguments (no hybrids if none was fitted).  ``chosen`` receives the
    choice (:class:`~rnnfuse.app.results.BaseChoice`: the base's name, parts and every
    candidate's validation MAE), which the caller adds to its parts' ``details["hybrid_base"]``
    (:func:`with_choice`).  The hybrids' encoders read the series less DHR's seasonal terms
    whenever DHR was fitted, whatever the base.  A network task with ``then_refit`` is followed
    by its refit (:func:`refit_task`) once it has run."""
    network = [t for t in [*tasks, *hybrids] if isinstance(t, dict)]
    total = len(tasks) + len(hybrids) + sum(bool(t.get("then_refit")) for t in network)
    runs: list[WorkerResult] = []
    parts: dict[str, ClassicalFit] = {}
    chosen = [] if chosen is None else chosen
    refitted = {(t["fusion"], t["seed"]) for t in tasks if isinstance(t, dict) and t["then_refit"]}
    planned: dict[tuple[str, int], dict[str, Any]] = {}  # the tasks whose refit follows them

    def plan(new: list[tuple | dict[str, Any]]) -> list[tuple | dict[str, Any]]:
        for task in new:
            if isinstance(task, dict) and task.get("then_refit"):
                planned[(run_label(task["fusion"], task.get("base")), task["seed"])] = task
        return new

    def record(run: WorkerResult) -> list[tuple | dict[str, Any]]:
        runs.append(run)
        log(_done_line(run, len(runs), total, refitted))
        if isinstance(run, NetworkRun):
            task = planned.pop((run.name, run.seed), None)
            return [] if task is None else [refit_task(task, run)]
        if not isinstance(run, ClassicalFit) or run.name not in names or not hybrids:
            return []
        parts[run.name] = run
        if len(parts) < len(names):
            return []
        choice = hybrid_base(parts, val_truth, names)
        chosen.append(choice)
        if not choice.parts:
            log("no classical baseline was fitted: the hybrids are not trained")
            return []
        name = choice.name
        log(f"the hybrids' base, chosen on validation: {name} (val MAE {choice.val_mae[name]:.4g})")
        refitted.update((f"{t['fusion']} + {name}", t["seed"]) for t in hybrids if t["then_refit"])
        base = _hybrid_base(parts, choice)
        return plan([h | {"base": base} for h in hybrids])

    plan(list(tasks))
    if jobs <= 1:
        queue = list(tasks)
        while queue:
            queue += record(_star(queue.pop(0)))
        return runs
    # one BLAS/OpenMP thread per worker (statsmodels' filters otherwise oversubscribe the cores);
    # read by the spawned processes when they load NumPy
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        import queue as queues

        finished: queues.Queue = queues.Queue()
        with multiprocessing.get_context("spawn").Pool(
            jobs, **pool_options()
        ) as pool:  # workers end with us

            def submit(task: tuple | dict[str, Any]) -> None:
                pool.apply_async(_star, (task,), callback=finished.put, error_callback=finished.put)

            pending = len(tasks)
            for task in tasks:
                submit(task)
            while pending:
                item = finished.get()
                pending -= 1
                if isinstance(item, BaseException):
                    raise item
                for task in record(item):
                    submit(task)
                    pending += 1
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return runs


def _hybrid_base(parts: dict[str, ClassicalFit], choice: BaseChoice) -> HybridBase:
    """The hybrids' base: the mean forecast of the chosen parts, with their choice in their
    details, and DHR's fitted details whenever DHR was fitted (the hybrids' encoders read the
    series without its seasonal component)."""
    from .baselines import combine

    chosen = [with_choice(parts[p], choice) for p in choice.parts]
    forecasts = combine(chosen, choice.name).forecasts
    dhr = parts.get("DHR")
    return HybridBase(
        name=choice.name,
        train=forecasts["train"],
        val=forecasts["val"],
        test=forecasts["test"],
        refit=forecasts.get("refit"),
        dhr=None if dhr is None or dhr.error is not None else with_choice(dhr, choice).details,
    )


def with_choice(fit: ClassicalFit, choice: BaseChoice | None) -> ClassicalFit:
    """``fit`` with the hybrids' base ``choice`` in its details (``details["hybrid_base"]``,
    as results.json gives it) when it is one of the base's parts; ``fit`` itself otherwise."""
    if choice is None or fit.name not in choice.parts:
        return fit
    return replace(fit, details=fit.details | {"hybrid_base": choice.to_json()})


def _done_line(
    run: WorkerResult, done: int, total: int, refitted: Collection[tuple[str, int]] = ()
) -> str:
    """One line of progress; ``refitted``: the (name, seed) of the runs refitted before test."""
    head = f"[{done}/{total}] "
    if isinstance(run, ClassicalFit):
        what = f"failed: {run.error}" if run.error else "fitted"
        return f"{head}{run.name:<12} (classical) {what}  ({run.seconds:.1f} s)"
    if isinstance(run, RefitRun):
        return (
            f"{head}{run.name:<12} seed {run.seed}  refitted on the {run.windows} windows before "
            f"the test stretch  ({run.seconds:.1f} s, {run.epochs} epochs)"
        )
    later = " (before its refit)" if (run.name, run.seed) in refitted else ""
    return (
        f"{head}{run.name:<12} seed {run.seed}  val MAE {run.val.mae:.3f}  "
        f"test MAE {run.test.mae:.3f}{later}  ({run.seconds:.1f} s, {run.steps} steps, best at "
        f"{run.best_step})"
    )
