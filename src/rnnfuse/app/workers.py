"""The demo's experiment grid, run side by side in worker processes: every classical model and
network first, the hybrids once every classical model has arrived and their base is chosen on
validation, each refit once its run has found its best step (:func:`run_all`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Collection, Sequence
from typing import Any

from .config import DataConfig
from .experiment import Budget, classical_one, run_label, train_one
from .hybrid import hybrid_base
from .worker_lifetime import pool_options

__all__ = ["network_tasks", "refit_task", "run_all"]

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


def _star(task: tuple | dict[str, Any]) -> dict[str, Any]:
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
) -> list[dict[str, Any]]:
    """:func:`train_one`'s arguments for every fusion and seed (``then_refit``: a refit before
    the test stretch follows once the run has found its best step, see :func:`refit_task`);
    longest first, which packs the workers best."""
    tasks = [
        {
            "fusion": f,
            "budget": budget,
            "seed": s,
            "out": out,
            "data": data,
            "refit": False,
            "then_refit": refit,
        }
        for s in seeds
        for f in fusions
    ]
    return sorted(tasks, key=lambda t: -_COST.get(t["fusion"], 3))


def refit_task(task: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The refit of ``task`` whose run on the training windows was ``run``: as many optimizer
    steps as its best validation took (all of them when it never improved), no early stop."""
    steps = max(1, run.get("best_step") or run.get("steps") or 1)
    return task | {"refit": True, "then_refit": False, "budget": Budget(steps=steps, patience=None)}


def run_all(
    tasks: Sequence[tuple | dict[str, Any]],
    jobs: int,
    log: Callable[[str], None],
    hybrids: Sequence[dict[str, Any]] = (),
    names: Sequence[str] = (),
    val_truth: Any = None,
    chosen: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run ``tasks``; the ``hybrids`` (network tasks) start once every classical baseline of
    ``names`` has arrived: their base, the one among them and their combinations with the lowest
    validation MAE against ``val_truth`` (:func:`hybrid_base`), fitted once and shared by every
    seed, is added to their arguments (no hybrids if none was fitted).  ``chosen`` receives the
    base's ``name``, ``parts`` and ``choice`` (every candidate's validation MAE), which also goes
    into its parts' ``details["hybrid_base"]``.  The hybrids' encoders read the series less
    DHR's seasonal terms whenever DHR was fitted, whatever the base.  A network task with
    ``then_refit`` is followed by its refit (:func:`refit_task`) once it has run."""
    from .baselines import combine

    network = [t for t in [*tasks, *hybrids] if isinstance(t, dict)]
    total = len(tasks) + len(hybrids) + sum(bool(t.get("then_refit")) for t in network)
    runs: list[dict[str, Any]] = []
    parts: dict[str, dict[str, Any]] = {}
    chosen = {} if chosen is None else chosen
    refitted = {(t["fusion"], t["seed"]) for t in tasks if isinstance(t, dict) and t["then_refit"]}
    planned: dict[tuple[str, int], dict[str, Any]] = {}  # the tasks whose refit follows them

    def plan(new: list[tuple | dict[str, Any]]) -> list[tuple | dict[str, Any]]:
        for task in new:
            if isinstance(task, dict) and task.get("then_refit"):
                planned[(run_label(task["fusion"], task.get("base")), task["seed"])] = task
        return new

    def record(run: dict[str, Any]) -> list[tuple | dict[str, Any]]:
        runs.append(run)
        log(_done_line(run, len(runs), total, refitted))
        task = (
            planned.pop((run.get("name", ""), run.get("seed", -1)), None)
            if not run.get("refit")
            else None
        )
        if task is not None:
            return [refit_task(task, run)]
        if run.get("baseline") not in names or not hybrids:
            return []
        parts[run["baseline"]] = run
        if len(parts) < len(names):
            return []
        name, base_parts, choice = hybrid_base(parts, val_truth, names)
        chosen.update(name=name, parts=base_parts, choice=choice)
        if not base_parts:
            log("no classical baseline was fitted: the hybrids are not trained")
            return []
        log(
            f"the hybrids' base, chosen on validation: {name} (val MAE "
            f"{choice['val_mae'][name]:.4g})"
        )
        refitted.update((f"{t['fusion']} + {name}", t["seed"]) for t in hybrids if t["then_refit"])
        for p in base_parts:
            parts[p]["details"]["hybrid_base"] = choice
        base = combine([parts[p] for p in base_parts])["forecasts"]
        base = {k: v.tolist() for k, v in base.items()} | {"name": name}
        if (
            "DHR" in parts and parts["DHR"]["error"] is None
        ):  # its seasonal component: the hybrids' encoders read the series without it
            base["dhr"] = parts["DHR"]["details"]
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


def _done_line(
    run: dict[str, Any], done: int, total: int, refitted: Collection[tuple[str, int]] = ()
) -> str:
    """One line of progress; ``refitted``: the (name, seed) of the runs refitted before test."""
    head = f"[{done}/{total}] "
    if "baseline" in run:
        what = f"failed: {run['error']}" if run["error"] else "fitted"
        return f"{head}{run['baseline']:<12} (classical) {what}  ({run['seconds']:.1f} s)"
    if run.get("refit"):
        return (
            f"{head}{run['name']:<12} seed {run['seed']}  refitted on the {run['windows']} windows "
            f"before the test stretch  ({run['seconds']:.1f} s, {run['epochs']} epochs)"
        )
    later = " (before its refit)" if (run["name"], run["seed"]) in refitted else ""
    return (
        f"{head}{run['name']:<12} seed {run['seed']}  val MAE {run['val']['mae']:.3f}  "
        f"test MAE {run['test']['mae']:.3f}{later}  ({run['seconds']:.1f} s, {run['steps']} steps, "
        f"best at {run['best_step']})"
    )
