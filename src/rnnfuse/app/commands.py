"""The forecaster's command group: ``rnnfuse demo``, ``train`` and ``predict``, and the
forecaster's files as ``rnnfuse inspect`` and ``rnnfuse convert`` read them
(:data:`FILE_KINDS`; ``convert --stack NAME`` writes one of its stacks as a stack file)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._command import Converted, FileKind, fail
from .config import (
    FUSIONS,
    ConfigError,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    flag_fields,
    parse_names,
    parse_optional_int,
)
from .rundir import check_run_dir

if TYPE_CHECKING:  # the experiment module loads torch: imported when a command runs
    from .experiment import Budget

__all__ = ["add_commands", "FILE_KINDS"]

# the flags of `rnnfuse train`, from the configuration classes: (help group, [(section, class)])
_FLAG_GROUPS: tuple[tuple[str, tuple[tuple[str, type], ...]], ...] = (
    ("data (default: the embedded weekly CO2 series)", (("data", DataConfig),)),
    ("model", (("model", ModelConfig),)),
    ("optimisation", (("optim", OptimConfig), ("run", RunConfig))),
)
# flag dest -> (config section, key); sections: data, model, optim, run (seed, threads)
_FLAGS: dict[str, tuple[str, str]] = {
    name: (section, name)
    for _, sections in _FLAG_GROUPS
    for section, kind in sections
    for name, _ in flag_fields(kind)
}
_RESUME_MAY_CHANGE = {"epochs", "steps", "threads"}
EXTRA = "forecast"  # pip install 'rnnfuse[forecast]'
EXTRA_MODULES = (
    "matplotlib",
    "tqdm",
    "statsmodels",
    "statsforecast",
)  # what the extra adds to the core dependencies


def missing_extra() -> list[str]:
    """The modules of the ``forecast`` extra that are not installed (none: ``[]``)."""
    return [name for name in EXTRA_MODULES if _absent(name)]


def _absent(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is None  # None: blocked, as ``import`` treats it
    return importlib.util.find_spec(name) is None


def _need_extra(command: str) -> int | None:
    """A one-line error with the install command when the forecaster's extra is missing."""
    missing = missing_extra()
    if not missing:
        return None
    return fail(
        command,
        f"the forecaster is an optional part and needs {', '.join(missing)}; "
        f"install it with: pip install 'rnnfuse[{EXTRA}]'",
    )


def add_commands(subparsers: Any) -> None:
    """Register ``demo``, ``train`` and ``predict`` on the ``rnnfuse`` parser."""
    _add_demo(subparsers)
    _add_train(subparsers)
    _add_predict(subparsers)


def _add_demo(sub: Any) -> None:
    from .demo import DEMO_FUSIONS, DEMO_PATIENCE, DEMO_REFIT, DEMO_SEEDS, DEMO_STEPS, REFIT_CHOICES

    p = sub.add_parser(
        "demo", help="train one forecaster per fusion on the embedded CO2 data; table + plots"
    )
    p.add_argument(
        "--out", default="rnnfuse-demo", help="output directory (default ./rnnfuse-demo)"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEMO_STEPS,
        help=f"optimizer steps per model (default {DEMO_STEPS})",
    )
    p.add_argument(
        "--patience",
        type=parse_optional_int,
        default=DEMO_PATIENCE,
        help="stop a model after this many steps without a better early-stopping MAE (see "
        f"--stop-steps), keeping its best weights (default {DEMO_PATIENCE}; none: never)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="whole epochs per model instead of --steps"
    )
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument(
        "--seeds", type=int, default=DEMO_SEEDS, help=f"seeds per fusion (default {DEMO_SEEDS})"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="models trained side by side (default: up to 2)",
    )
    p.add_argument(
        "--fusions",
        default=",".join(DEMO_FUSIONS),
        help=f"comma-separated, from {','.join(FUSIONS)}",
    )
    p.add_argument(
        "--hybrids",
        default="zoph-knight",
        help="fusions also trained as hybrids on the errors of a classical forecast: the "
        "baseline or combination with the lowest validation MAE (comma-separated, or none)",
    )
    p.add_argument(
        "--baselines",
        default="default",
        help="classical baselines, comma-separated from dhr (statsmodels), autoets, autoarima, "
        "autotheta, snaive (statsforecast, choose themselves), ets, sarima (statsmodels, fixed), "
        "or none; default: dhr,autoets,autoarima,autotheta,snaive, with ets for autoets when the "
        "season exceeds 24 steps (AutoETS fits none that long), without dhr for "
        "a period of 2 or less",
    )
    p.add_argument(
        "--refit",
        choices=REFIT_CHOICES,
        default=DEMO_REFIT,
        help="networks retrained, once validation has chosen their settings, on every window "
        "before the test stretch to forecast it, as the classical parameters are re-estimated "
        f"there (default {DEMO_REFIT}; all doubles the training time)",
    )
    p.add_argument(
        "--decoder-feedback",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the networks' decoders read their previous forecast (trained on the true one); "
        "--no-decoder-feedback: only the forecast steps' known inputs, all steps in one pass "
        "(default: feedback)",
    )
    _add_demo_data_flags(p)
    p.set_defaults(handler=_demo)


def _add_demo_data_flags(p: argparse.ArgumentParser) -> None:
    """``rnnfuse demo``'s data flags: absent unless given (the defaults scale with the period)."""
    S = argparse.SUPPRESS
    d = p.add_argument_group(
        "data (default: the embedded weekly CO2 series; "
        "window sizes not given scale with the period)"
    )
    d.add_argument("--csv", default=S, help="CSV file with a header line")
    d.add_argument("--column", default=S, help="column to forecast (with --csv)")
    d.add_argument(
        "--time-column", default=S, help="optional time column (dates or numbers, increasing)"
    )
    d.add_argument(
        "--period",
        default=S,
        help="seasonal period in steps, may be fractional (52.18 for weekly data), or 1 or none "
        "for a non-seasonal series (default: from the dates; required without dates)",
    )
    for flag in (
        "local-steps",
        "global-blocks",
        "block",
        "min-global-blocks",
        "horizon",
        "val-steps",
        "test-steps",
    ):
        d.add_argument(f"--{flag}", type=int, default=S)
    d.add_argument(
        "--stop-steps",
        type=int,
        default=S,
        help="steps before validation on which the networks stop early and keep their best "
        "weights, so that validation, where every row is chosen, stays unseen (default: half of "
        "--val-steps, at least --horizon + 7; 0: stop on validation)",
    )
    d.add_argument(
        "--covariates",
        type=parse_names,
        default=S,
        help="columns the encoders read beside the series, and the regression baselines as "
        "regressors (comma-separated, or none; default: nino12 on the embedded series, "
        "none with --csv)",
    )


def _demo(args: argparse.Namespace) -> int:
    if (status := _need_extra("demo")) is not None:
        return status
    from .data import DataError
    from .demo import run_demo

    try:
        fusions, hybrids, baselines = _demo_choices(args)
        budget = _demo_budget(args)
        data, period = _demo_data(args)
        run_demo(
            Path(args.out),
            budget=budget,
            seed=args.seed,
            seeds=args.seeds,
            jobs=args.jobs,
            fusions=fusions,
            data=data,
            period=period,
            baselines=baselines,
            hybrids=hybrids,
            refit=args.refit,
            feedback=args.decoder_feedback,
        )
    except (ConfigError, DataError) as exc:
        return fail("demo", str(exc))
    return 0


def _demo_choices(args: argparse.Namespace) -> tuple[list[str], list[str], list[str] | None]:
    """``--fusions``, ``--hybrids`` and ``--baselines`` (``None``: the default set), checked."""
    from .baselines import BASELINE_KEYS

    fusions = [f.strip() for f in args.fusions.split(",") if f.strip()]
    bad = [f for f in fusions if f not in FUSIONS]
    if bad or not fusions:
        raise ConfigError(
            f"--fusions: expected names from {list(FUSIONS)}, got {bad or args.fusions!r}"
        )
    hybrids = (
        []
        if args.hybrids.strip() == "none"
        else [f.strip() for f in args.hybrids.split(",") if f.strip()]
    )
    if any(f not in FUSIONS for f in hybrids):
        raise ConfigError(
            f"--hybrids: expected names from {list(FUSIONS)} or none, got {args.hybrids!r}"
        )
    chosen = args.baselines.strip()
    keys = (
        []
        if chosen in ("none", "default")
        else [k.strip() for k in args.baselines.split(",") if k.strip()]
    )
    if any(k not in BASELINE_KEYS for k in keys):
        raise ConfigError(
            f"--baselines: expected names from {list(BASELINE_KEYS)} or none, "
            f"got {args.baselines!r}"
        )
    return fusions, hybrids, None if chosen == "default" else [BASELINE_KEYS[k] for k in keys]


def _demo_budget(args: argparse.Namespace) -> Budget:
    """The demo's :class:`~rnnfuse.app.experiment.Budget` from ``--steps --patience --epochs``
    (and ``--seeds --jobs --seed`` checked)."""
    from .experiment import Budget

    for flag in ("steps", "patience", "epochs", "seeds", "jobs"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise ConfigError(f"--{flag}: expected a positive int, got {getattr(args, flag)}")
    if args.seed < 0:
        raise ConfigError(f"--seed: expected an int >= 0, got {args.seed}")
    return Budget(
        steps=None if args.epochs else args.steps, patience=args.patience, epochs=args.epochs
    )


def _demo_data(args: argparse.Namespace) -> tuple[DataConfig, float | None]:
    """The demo's data configuration and period from the data flags, checked."""
    from .config import validate
    from .demo_data import demo_data, parse_period

    try:
        period = parse_period(getattr(args, "period", None))
    except ValueError as exc:
        raise ConfigError(f"--period: {exc}") from None
    given = {
        k: getattr(args, k)
        for k in _FLAGS
        if _FLAGS[k][0] == "data" and k != "period" and hasattr(args, k)
    }
    if "csv" in given:
        given["csv"] = str(Path(given["csv"]).resolve())
        if "column" not in given:
            raise ConfigError("--csv: needs --column NAME (the column to forecast)")
    elif "column" in given or "time_column" in given:
        raise ConfigError(
            "--column/--time-column: only with --csv (the embedded data set has its own)"
        )
    data, period = demo_data(given, period)
    validate(RunConfig(data=data), "command line")
    return data, period


def _add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train one forecaster (checkpoints, --resume, torchrun for several processes)"
    )
    p.add_argument(
        "--out", required=True, help="run directory (checkpoints, config.json, best.safetensors)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.add_argument("--config", help="JSON file with data/model/optim sections; flags override it")
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (per-epoch lines only)"
    )
    for title, sections in _FLAG_GROUPS:
        group = p.add_argument_group(title)
        for _section, kind in sections:
            for name, kwargs in flag_fields(kind):
                group.add_argument(
                    "--" + name.replace("_", "-"), default=argparse.SUPPRESS, **kwargs
                )
    p.set_defaults(handler=_train)


def _given(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k) for k in _FLAGS if hasattr(args, k)}


def _train_config(args: argparse.Namespace) -> RunConfig:
    given = _given(args)
    if not args.out.strip():
        raise ConfigError(f"--out: expected a run directory, got {args.out!r}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--out: {out} is a file; expected a run directory (new or holding a run)"
        )
    check_run_dir(out)  # before config.json is read: links and FIFOs in it are refused
    if args.resume:
        changed = sorted(set(given) - _RESUME_MAY_CHANGE)
        if changed or args.config:
            flag = "--config" if args.config else "--" + changed[0].replace("_", "-")
            raise ConfigError(
                f"{flag}: --resume continues the run saved in {out} with its config "
                f"({out / 'config.json'}); only --epochs, --steps and --threads may be given"
            )
        base = RunConfig.from_file(out / "config.json", follow_symlinks=False)
    else:
        base = RunConfig.from_file(args.config) if args.config else RunConfig()
        if "csv" in given:
            given["csv"] = str(Path(given["csv"]).resolve())  # predict may run from elsewhere
            given.setdefault("time_column", None)
            if "column" not in given:
                raise ConfigError("--csv: needs --column NAME (the column to forecast)")
        elif ("column" in given or "time_column" in given) and base.data.csv is None:
            raise ConfigError(
                "--column/--time-column: only with --csv (the embedded data set has its own)"
            )
    overrides: dict[str, dict[str, Any]] = {}
    for key, value in given.items():
        section, name = _FLAGS[key]
        overrides.setdefault(section, {})[name] = value
    return base.updated(overrides)


def _train(args: argparse.Namespace) -> int:
    if (status := _need_extra("train")) is not None:
        return status
    from .checkpoint import CheckpointError
    from .data import DataError
    from .distributed import barrier, setup, teardown
    from .runlock import RunLock
    from .training import StopSignal, Trainer, TrainingError

    try:
        config = _train_config(args)
        env = setup()
    except (ConfigError, DataError, ValueError) as exc:
        return fail("train", str(exc))
    lock = RunLock(Path(args.out))
    try:
        if (message := _lock_run(lock, Path(args.out), args.resume, env)) is not None:
            return fail("train", message)
        trainer = Trainer(
            config, Path(args.out), env=env, show_progress=False if args.no_progress else None
        )
        trainer.start(resume=args.resume)
        if env.is_main:
            print(_run_summary(trainer), flush=True)
        with StopSignal() as stop:
            result = trainer.run(stop)
        if result.status == "finished" and env.is_main:
            _final_report(trainer, Path(args.out))
        barrier(env)  # leave together: a gloo rank torn down while its peer still works can abort
        return result.exit_code
    except (ConfigError, DataError, CheckpointError, TrainingError, OSError) as exc:
        return fail("train", str(exc))
    finally:
        lock.release()
        teardown(env)


def _lock_run(lock: Any, out: Path, resume: bool, env: Any) -> str | None:
    """Take the run directory's lock on rank 0 and remove temporaries a kill left there; the
    error message, on every rank, if rank 0 could not (``None`` when it could)."""
    from .checkpoint import remove_stale_temporaries
    from .distributed import any_flag
    from .rundir import RunDirError
    from .runlock import RunLockedError

    message = None
    if env.is_main and (out.is_dir() or not resume):  # nothing to lock: resume says so
        try:
            out.mkdir(parents=True, exist_ok=True)
            check_run_dir(out)
            lock.acquire()
            remove_stale_temporaries(out)
        except (RunLockedError, RunDirError, OSError) as exc:
            message = (
                str(exc)
                if isinstance(exc, (RunLockedError, RunDirError))
                else f"--out: cannot use {out} ({exc.strerror or exc})"
            )
    if any_flag(message is not None, env):
        return (
            message or "rank 0 could not take the lock of --out (see its message); every rank stops"
        )
    return None


def _run_summary(trainer: Any) -> str:
    from .model import count_parameters
    from .panel_windows import PreparedPanel

    data, cfg = trainer.prepared, trainer.config
    where = f", {trainer.env.world_size} processes (rank 0 writes)" if trainer.env.active else ""
    described = (
        data.describe(cfg.data) if isinstance(data, PreparedPanel) else data.series.describe()
    )
    return (
        f"data: {described}\n"
        f"windows: {len(data.train)} train, {len(data.val)} validation, {len(data.test)} test; "
        f"model: fusion {cfg.model.fusion}, {count_parameters(trainer.model):,} parameters{where}"
    )


def _final_report(trainer: Any, out: Path) -> None:
    from .checkpoint import atomic_write, json_bytes
    from .metrics import errors, seasonal_naive, seasonal_naive_drift, truth
    from .panel_windows import PreparedPanel
    from .windows import SPLIT_WORDS

    if isinstance(trainer.prepared, PreparedPanel):
        return _final_panel_report(trainer, out)
    data, period = trainer.data, trainer.config.data.period
    report: dict[str, Any] = {"model": {s: trainer.evaluate(s) for s in ("val", "test")}}
    for name, fn in (
        ("seasonal_naive", seasonal_naive),
        ("seasonal_naive_drift", seasonal_naive_drift),
    ):
        report[name] = {
            s: errors(
                fn(data.series, getattr(data, s), period), truth(data.series, getattr(data, s))
            )
            for s in ("val", "test")
        }
    report["best_val_mae"], report["best_epoch"] = (
        trainer.progress.best_metric,
        trainer.progress.best_epoch,
    )
    atomic_write(out / "metrics.json", json_bytes(report))
    for name in ("model", "seasonal_naive", "seasonal_naive_drift"):
        r = report[name]
        print(
            f"{name:<22} val MAE {r['val']['mae']:.3f}  test MAE {r['test']['mae']:.3f}  test RMSE "
            f"{r['test']['rmse']:.3f}"
        )
    chosen_on = SPLIT_WORDS[data.stop_split]
    print(
        f"best {chosen_on} MAE {report['best_val_mae']:.3f} at epoch {report['best_epoch']} -> "
        f"{out / 'best.safetensors'}"
    )


def _final_panel_report(trainer: Any, out: Path) -> None:
    """metrics.json and the terminal's summary of a panel run: over all windows, per series,
    and the geometric mean of the relative test MAE
    (:func:`~rnnfuse.app.panel_windows.panel_report`)."""
    from .checkpoint import atomic_write, json_bytes
    from .panel_windows import panel_report, report_lines
    from .windows import SPLIT_WORDS

    report = panel_report(
        trainer.prepared,
        {s: trainer.forecasts(s) for s in ("val", "test")},
        trainer.config.data.period,
    )
    report["best_val_scaled_mae"], report["best_epoch"] = (
        trainer.progress.best_metric,
        trainer.progress.best_epoch,
    )
    atomic_write(out / "metrics.json", json_bytes(report))
    print("\n".join(report_lines(report, trainer.config.data.id_column)))
    chosen_on = SPLIT_WORDS[trainer.prepared.stop_split]
    print(
        f"best {chosen_on} scaled MAE {report['best_val_scaled_mae']:.3f} at epoch "
        f"{report['best_epoch']} -> {out / 'best.safetensors'}"
    )


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="forecast past the end of a series with a trained model")
    p.add_argument(
        "--model",
        required=True,
        help="run directory (uses best.safetensors) or a .safetensors file",
    )
    p.add_argument(
        "--csv", help="series to forecast from (default: the data the model was trained on)"
    )
    p.add_argument("--column")
    p.add_argument("--time-column")
    p.add_argument(
        "--id-column",
        help="the column naming each row's series, for a model trained on a panel "
        "(default: the one it was trained with); forecasts every series of --csv",
    )
    p.add_argument("--output", help="also write the forecast to this CSV file")
    p.add_argument("--threads", type=int, default=1)
    p.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    if (status := _need_extra("predict")) is not None:
        return status
    import torch

    from .checkpoint import CheckpointError
    from .config import capped_threads
    from .data import DataError
    from .predict import (
        format_forecast,
        load_for_prediction,
        load_saved,
        predict_next,
        write_forecast_csv,
    )

    if args.threads < 1:
        return fail("predict", f"--threads: expected a positive int, got {args.threads}")
    torch.set_num_threads(
        capped_threads(args.threads, lambda msg: print(f"rnnfuse predict: {msg}", file=sys.stderr))
    )
    try:
        saved = load_saved(args.model)
        if saved.is_panel or args.id_column is not None:
            return _predict_panel(args, saved)
        series = load_for_prediction(saved.config, args.csv, args.column, args.time_column)
        scaling = saved.scalings[""]
        result = predict_next(
            saved.model, saved.config, scaling.scale, series, scaling.covariate_norm
        )
    except (ConfigError, DataError, CheckpointError) as exc:
        return fail("predict", str(exc))
    print(format_forecast(result))
    return _write_output(args.output, lambda path: write_forecast_csv(result, path))


def _predict_panel(args: argparse.Namespace, saved: Any) -> int:
    """``rnnfuse predict`` with a panel's model: every series of ``--csv``,
    each with its own scale."""
    from .predict import (
        format_panel_forecast,
        load_panel_for_prediction,
        predict_panel,
        write_panel_forecast_csv,
    )

    panel = load_panel_for_prediction(
        saved, args.csv, args.column, args.time_column, args.id_column
    )
    results = predict_panel(saved, panel)
    id_column = args.id_column or saved.config.data.id_column
    print(format_panel_forecast(results, id_column))
    return _write_output(
        args.output, lambda path: write_panel_forecast_csv(results, id_column, path)
    )


def _write_output(output: str | None, write: Any) -> int:
    """Write ``--output`` with ``write(path)`` when given;
    a path that cannot be written is a one-line error."""
    if output:
        try:
            write(output)
        except OSError as exc:
            return fail("predict", f"--output: cannot write {output} ({exc.strerror or exc})")
        print(f"written to {output}")
    return 0


# --------------------------------------------------------------------------- inspect, convert
def _describe(path: str) -> int:
    """``rnnfuse inspect`` of a model file written by ``rnnfuse train``."""
    try:
        return _inspect_forecaster(path)
    except (ValueError, OSError) as exc:
        return fail("inspect", exc)


def _convert(path: str, args: argparse.Namespace) -> Converted:
    """``rnnfuse convert`` of a model file written by ``rnnfuse train``: the stack that
    ``--stack`` names (an encoder, or the decoder)."""
    from .checkpoint import CheckpointError as ModelFileError
    from .predict import load_saved

    try:
        model = load_saved(path).model
    except (ModelFileError, ConfigError) as exc:
        raise ValueError(str(exc)) from None
    stacks = {**dict(model.encoders.encoders.items()), "decoder": model.decoder}
    if args.stack not in stacks:
        raise ValueError(
            f"--stack: a forecaster holds the stacks {list(stacks)} (its encoders and its "
            f"decoder); pick one, e.g. --stack {next(iter(stacks))}; got "
            f"{'none' if args.stack is None else repr(args.stack)}"
        )
    return Converted(stacks[args.stack], f"the forecaster's {args.stack!r} stack")


def _is_forecaster_file(path: str) -> bool:
    """Whether ``path`` is a safetensors file of a forecaster format (any version)."""
    from ..io import read_safetensors_metadata
    from .checkpoint import MODEL_FORMAT

    try:
        shown = read_safetensors_metadata(path).get("format")
    except (ValueError, OSError):
        return False
    return isinstance(shown, str) and shown.split("/")[0] == MODEL_FORMAT.split("/")[0]


def _inspect_forecaster(path: str) -> int:
    """Describe a model file written by ``rnnfuse train``: tensors, configuration, scale."""
    from .checkpoint import CheckpointError as ModelFileError
    from .checkpoint import load_model_file
    from .predict import load_saved

    try:
        saved = load_saved(path)
        model, config = saved.model, saved.config
        meta = load_model_file(path)[1]
    except (ModelFileError, ConfigError) as exc:
        raise ValueError(str(exc)) from None
    tensors = model.state_dict()
    count = sum(p.numel() for p in model.parameters())
    print(
        f"rnnfuse forecaster {path} (format {meta['format']!r}, written by `rnnfuse train`): "
        f"{len(tensors)} tensors, {count:,} parameters"
    )
    width = max((len(n) for n in tensors), default=0)
    for name, t in tensors.items():
        print(f"  {name:<{width}}  {list(t.shape)}  {str(t.dtype).replace('torch.', '')}")
    print("configuration:")
    for key, value in config.to_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        print(
            f"  {key}: "
            + ", ".join(f"{k}={json.dumps(v)}" if k else json.dumps(v) for k, v in items)
        )
    best = meta.get("best_val_mae")
    scales = [s.scale for s in saved.scalings.values()]
    scale = (
        f"scale {scales[0]:.6g}"
        if not saved.is_panel
        else f"a panel of {len(scales)} series by {config.data.id_column!r}, scales "
        f"{min(scales):.6g} to {max(scales):.6g}"
    )
    print(
        f"{scale}, epoch {meta.get('epoch')}, best validation "
        f"{'scaled MAE' if saved.is_panel else 'MAE'} "
        + (f"{best:.4g}" if isinstance(best, (int, float)) else str(best))
    )
    print(f"forecast with: rnnfuse predict --model {path}")
    return 0


def _is_forecaster_path(path: str) -> bool:
    return os.path.isfile(path) and _is_forecaster_file(path)


FILE_KINDS = (
    FileKind(
        "a forecaster written by `rnnfuse train`",
        _is_forecaster_path,
        _describe,
        _convert,
        ("--stack",),
    ),
)
