"""The configuration of a training run: data windows, model, optimisation.

Defaults < a JSON file (``--config``) < command-line flags.  A JSON file has the sections
``data``, ``model``, ``optim`` and the top-level keys ``seed`` and ``threads``; an unknown
key is an error that names the file and the key.

Every setting is declared once, with :func:`option`: its default, and the help and parser of
its ``rnnfuse train`` flag (``--local-steps`` for ``data.local_steps``), which
:func:`flag_fields` hands to the command line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .._files import MIB, NotRegularFileError, loads_json, read_regular_file

__all__ = [
    "DataConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "FUSIONS",
    "ConfigError",
    "option",
    "flag_fields",
    "available_cpus",
    "capped_threads",
    "planned_epochs",
]

FUSIONS = (
    "local",
    "global",
    "concat",
    "sum",
    "mean",
    "max",
    "bridge",
    "zoph-knight",
    "child-sum",
    "gated",
)
CELLS = ("lstm", "gru", "rnn")
SCHEDULERS = ("none", "cosine", "step")
MAX_CONFIG_BYTES = 1 * MIB  # a config.json or --config file


class ConfigError(ValueError):
    """A bad configuration value; the message names the key or flag."""


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"32,32"`` -> ``(32, 32)`` (the parser of the ``--*-sizes`` flags)."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes like 32,32, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive layer sizes, got {text!r}")
    return sizes


def parse_names(text: str) -> tuple[str, ...]:
    """``"a,b"`` -> ``("a", "b")``; ``none`` (or an empty text) -> ``()``
    (the parser of ``--covariates``)."""
    if text.strip().lower() in ("", "none"):
        return ()
    names = tuple(part.strip() for part in text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated column names like nino12,soi (or none), got {text!r}"
        )
    return names


def parse_optional_int(text: str) -> int | None:
    """A positive int, or ``none`` (the parser of ``--steps`` and ``--patience``)."""
    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number or 'none', got {text!r}"
        ) from None


def parse_clip(text: str) -> float | None:
    """A positive number, or ``none``/``0`` for no clipping (the parser of ``--grad-clip``)."""
    if text.lower() in ("none", "0"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive number or 'none', got {text!r}"
        ) from None


def option(
    default: Any,
    help: str = "",
    *,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    show_default: bool = True,
) -> Any:
    """A configuration field and its command-line flag: ``help`` (the default is appended in
    parentheses when ``show_default``), ``parse`` (default: the type of ``default``) and
    ``choices``.  A bool becomes ``--name/--no-name``; a ``None`` or bool default is not shown."""
    meta = {"help": help, "parse": parse, "choices": choices, "show_default": show_default}
    return field(default=default, metadata=meta)


def flag_fields(section: type) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(field name, argparse keyword arguments)`` for each flag of a configuration class."""
    for f in fields(section):
        if "help" not in f.metadata:
            continue  # a nested section, not a setting
        meta = f.metadata
        kwargs: dict[str, Any] = {"help": _help(meta, f.default) or None}
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        elif isinstance(f.default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = meta["parse"] or (str if f.default is None else type(f.default))
        yield f.name, kwargs


def _help(meta: Any, default: Any) -> str:
    """The flag's help with its default: ``"steps to forecast (13)"``, or ``"default 0.003"``."""
    if not meta["show_default"] or default is None or isinstance(default, bool):
        return meta["help"]
    shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
    return f"{meta['help']} ({shown})" if meta["help"] else f"default {shown}"


@dataclass(frozen=True)
class DataConfig:
    """Where the series comes from and how it is cut into windows.

    At an origin ``t`` (the last observed step) the local encoder reads ``local_steps``
    values up to ``t``; the global encoder reads up to ``global_blocks`` means of ``block``
    consecutive values ending at ``t`` (fewer near the start of the series: at least
    ``min_global_blocks``; ragged lengths); the decoder forecasts ``horizon`` steps.  The
    last ``test_steps`` steps are held out for evaluation, the ``val_steps`` before them
    for validation.  ``stop_steps`` > 0 holds out the last steps before validation as well:
    early stopping and the best weights are chosen on those windows instead of the validation
    ones, so that validation stays an unbiased estimate (``rnnfuse demo`` chooses its rows
    on validation and sets it); 0, the default, stops on validation.  ``period`` is the seasonal
    period in steps (52 for weekly data); ``1`` means **non-seasonal** (:attr:`seasonal` is false):
    the encoders' and decoder's phase features are constant, the seasonal naive forecast is the
    naive one (the last value), and the classical models should drop their seasonal terms.
    ``horizon`` may exceed ``period``.
    ``covariates``: other columns the encoders read beside the series, each row's value known
    at that row's time (the embedded series has ``nino12``, see :mod:`rnnfuse.app.data`).
    ``id_column``: the CSV file is a panel in long format (:mod:`rnnfuse.app.panel`), this
    column naming each row's series; one model is trained on the windows of every series, each
    series split and scaled on its own (:mod:`rnnfuse.app.panel_windows`); ``None``: one series.
    """

    csv: str | None = option(None, "CSV file with a header line")
    column: str = option("co2", "column to forecast (with --csv)", show_default=False)
    time_column: str | None = option(
        "date", "optional time column (dates or numbers, increasing)", show_default=False
    )
    local_steps: int = option(26, "steps the local encoder reads")
    global_blocks: int = option(52, "coarse steps of the global encoder")
    block: int = option(4, "steps averaged per coarse step")
    min_global_blocks: int = option(13, "fewest coarse steps")
    horizon: int = option(13, "steps to forecast")
    period: int = option(52, "seasonal period in steps; 1: non-seasonal")
    val_steps: int = option(208, "validation stretch")
    test_steps: int = option(208, "held-out test stretch")
    stop_steps: int = option(
        0, "steps before validation held out for early stopping (0: stop on validation)"
    )
    covariates: tuple[str, ...] = option(
        (),
        "columns the encoders read beside the series, e.g. nino12 (a row's value "
        "must be known at its time), or none",
        parse=parse_names,
        show_default=False,
    )
    id_column: str | None = option(
        None,
        "column naming each row's series in a long-format CSV (unique_id,ds,y): one "
        "model for every series of the panel, each scaled on its own "
        "(with --csv and --time-column)",
    )

    @property
    def seasonal(self) -> bool:
        """Whether the series has a season (``period`` > 1); ``period`` 1 means none."""
        return self.period > 1


@dataclass(frozen=True)
class ModelConfig:
    """Encoders, fusion and decoder.  ``decoder_cell`` ``None``: the encoders' kind;
    ``decoder_sizes`` ``None``: the fused sizes (for ``bridge``: the local encoder's sizes,
    reached through a StateBridge)."""

    fusion: str = option("concat", "how the two encoders' states are joined", choices=FUSIONS)
    local_cell: str = option("lstm", choices=CELLS)
    local_sizes: tuple[int, ...] = option((32, 32), "per-layer sizes", parse=parse_sizes)
    global_cell: str = option("lstm", choices=CELLS)
    global_sizes: tuple[int, ...] = option((32, 32), "per-layer sizes", parse=parse_sizes)
    decoder_cell: str | None = option(None, "default: the encoders' kind", choices=CELLS)
    decoder_sizes: tuple[int, ...] | None = option(
        None, "per-layer sizes, e.g. 32,32 (default: the fused sizes)", parse=parse_sizes
    )
    attention: bool = option(False, "Luong attention over both encoders")
    attention_size: int = option(32)
    decoder_feedback: bool = option(
        True,
        "the decoder reads its previous forecast (teacher forcing in training); "
        "--no-decoder-feedback: only the forecast steps' known inputs, all steps in one pass",
    )


@dataclass(frozen=True)
class OptimConfig:
    """Adam(W) with gradient clipping and an optional per-epoch learning-rate schedule.

    ``steps``: a budget in optimizer steps instead of ``epochs`` (as many epochs as it takes,
    the last one whole), so that a short series gets as many updates as a long one.
    ``patience``: stop once this many optimizer steps have passed since the best validation
    MAE (checked at each epoch's end).  Either way the model ends with the weights of its best
    validation epoch (those of ``best.safetensors``)."""

    epochs: int = option(20)
    steps: int | None = option(
        None, "optimizer steps in all, instead of --epochs", parse=parse_optional_int
    )
    patience: int | None = option(
        None,
        "stop after this many optimizer steps without a better validation MAE (early-stopping MAE "
        "with --stop-steps) (none: never)",
        parse=parse_optional_int,
    )
    lr: float = option(3e-3)
    batch_size: int = option(64, "per process")
    weight_decay: float = option(0.0)
    grad_clip: float | None = option(1.0, "max gradient norm, or none", parse=parse_clip)
    scheduler: str = option("cosine", choices=SCHEDULERS)
    step_size: int = option(10)
    gamma: float = option(0.5)


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved with every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = option(0)
    threads: int = option(1, "torch threads per process")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, raw: object, where: str = "config") -> RunConfig:
        """Build and validate from a dictionary such as :meth:`to_dict` returns."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        sections = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig}
        unknown = sorted(set(raw) - set(sections) - {"seed", "threads"})
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; expected "
                f"{sorted(sections) + ['seed', 'threads']}"
            )
        parts = {
            name: _section(kind, raw.get(name, {}), f"{where}: {name}")
            for name, kind in sections.items()
        }
        defaults = cls()
        config = cls(
            **parts,
            seed=raw.get("seed", defaults.seed),
            threads=raw.get("threads", defaults.threads),
        )
        validate(config, where)
        return config

    @classmethod
    def from_file(cls, path: str | Path, *, follow_symlinks: bool = True) -> RunConfig:
        """Read a JSON configuration file: a regular file of at most :data:`MAX_CONFIG_BYTES`
        (``follow_symlinks=False`` for a run directory's, which is never a link)."""
        try:
            data = read_regular_file(
                path, "a JSON config file", MAX_CONFIG_BYTES, follow_symlinks=follow_symlinks
            )
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except NotRegularFileError as exc:
            raise ConfigError(str(exc)) from None
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the config file ({exc.strerror or exc})"
            ) from None
        try:
            raw = loads_json(data, str(path))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls.from_dict(raw, str(path))

    def updated(self, overrides: dict[str, dict[str, Any]]) -> RunConfig:
        """A copy with ``{"data": {...}, "model": {...}, "optim": {...}, "run": {...}}`` applied."""
        new = replace(
            self,
            data=replace(self.data, **overrides.get("data", {})),
            model=replace(self.model, **overrides.get("model", {})),
            optim=replace(self.optim, **overrides.get("optim", {})),
            **overrides.get("run", {}),
        )
        validate(new, "command line")
        return new


def _section(kind: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return kind(**values)


def validate(config: RunConfig, where: str) -> None:
    """Raise :class:`ConfigError` for a value out of range or of the wrong type; the message
    names the setting."""
    _validate_data(config.data, where)
    _validate_model(config.model, where)
    _validate_optim(config.optim, where)
    if (
        isinstance(config.seed, bool)
        or not isinstance(config.seed, int)
        or not 0 <= config.seed <= MAX_SEED
    ):
        raise ConfigError(f"{where}: seed: expected an int in [0, {MAX_SEED}], got {config.seed!r}")
    _positive_int(f"{where}: threads", config.threads, MAX_THREADS)


MAX_SEED = 2**32 - 1  # NumPy's and the samplers' seeds
MAX_STEPS = 1_000_000  # window lengths, stretches, epochs, batch sizes
MAX_HORIZON = 1000  # decoder steps per forecast: each is a step of every decoder layer, in sequence
MAX_LAYER_SIZE = 4096  # units per layer (an LSTM layer of 4096 holds 134M weights)
MAX_LAYERS = 32
MAX_THREADS = 4096  # before the cap at the CPUs this process may use
MAX_LR = 10.0


def _validate_data(d: DataConfig, where: str) -> None:
    for name in ("csv", "column", "time_column"):
        value = getattr(d, name)
        if not (isinstance(value, str) and value) and not (value is None and name != "column"):
            expected = "a non-empty string" + ("" if name == "column" else " or null")
            raise ConfigError(f"{where}: data.{name}: expected {expected}, got {value!r}")
    _validate_covariates(d, where)
    _validate_id_column(d, where)
    for name in (
        "local_steps",
        "global_blocks",
        "block",
        "min_global_blocks",
        "period",
        "val_steps",
        "test_steps",
    ):
        _positive_int(f"{where}: data.{name}", getattr(d, name), MAX_STEPS)
    _positive_int(f"{where}: data.horizon", d.horizon, MAX_HORIZON)
    if (
        isinstance(d.stop_steps, bool)
        or not isinstance(d.stop_steps, int)
        or not 0 <= d.stop_steps <= MAX_STEPS
    ):
        raise ConfigError(
            f"{where}: data.stop_steps: expected an int from 0 to {MAX_STEPS}, got {d.stop_steps!r}"
        )
    if d.min_global_blocks > d.global_blocks:
        raise ConfigError(
            f"{where}: data.min_global_blocks ({d.min_global_blocks}) must not exceed "
            f"data.global_blocks ({d.global_blocks})"
        )
    if d.block * d.global_blocks > MAX_STEPS:
        raise ConfigError(
            f"{where}: data.block * data.global_blocks: expected at most {MAX_STEPS} steps, "
            f"got {d.block * d.global_blocks}"
        )


MAX_COVARIATES = 64


def _validate_covariates(d: DataConfig, where: str) -> None:
    names = d.covariates
    if (
        not isinstance(names, tuple)
        or len(names) > MAX_COVARIATES
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise ConfigError(
            f"{where}: data.covariates: expected a list of at most {MAX_COVARIATES} column "
            f"names, got {names!r}"
        )
    if len(set(names)) < len(names):
        raise ConfigError(
            f"{where}: data.covariates: expected distinct column names, got {list(names)}"
        )
    taken = [n for n in names if n in (d.column, d.time_column)]
    if taken:
        raise ConfigError(
            f"{where}: data.covariates: {taken[0]!r} is the series' own column or its time column; "
            f"expected other columns"
        )


def _validate_id_column(d: DataConfig, where: str) -> None:
    """``None``, or a column name of a CSV file with a time column,
    other than the series' own columns."""
    if d.id_column is None:
        return
    if not isinstance(d.id_column, str) or not d.id_column:
        raise ConfigError(
            f"{where}: data.id_column (--id-column): expected a column name or null, "
            f"got {d.id_column!r}"
        )
    if d.csv is None or d.time_column is None:
        flag = "--csv FILE" if d.csv is None else "--time-column NAME"
        raise ConfigError(
            f"{where}: data.id_column (--id-column): a panel needs {flag} (a long-format CSV file "
            "whose time column shows that every series has the same frequency), got "
            f"{'no file' if d.csv is None else 'no time column'}"
        )
    if d.id_column in (d.column, d.time_column, *d.covariates):
        raise ConfigError(
            f"{where}: data.id_column (--id-column): {d.id_column!r} is the series', its time "
            "column or a covariate; expected the column that names each row's series"
        )


def _validate_model(m: ModelConfig, where: str) -> None:
    _choice(f"{where}: model.fusion", m.fusion, FUSIONS)
    for name in ("local_cell", "global_cell", "decoder_cell"):
        if getattr(m, name) is not None or name != "decoder_cell":
            _choice(f"{where}: model.{name}", getattr(m, name), CELLS)
    for name in ("local_sizes", "global_sizes", "decoder_sizes"):
        sizes = getattr(m, name)
        if sizes is None and name == "decoder_sizes":
            continue
        if not isinstance(sizes, tuple) or not sizes or len(sizes) > MAX_LAYERS:
            raise ConfigError(
                f"{where}: model.{name}: expected a list of 1 to {MAX_LAYERS} ints, got {sizes!r}"
            )
        for s in sizes:
            _positive_int(f"{where}: model.{name}", s, MAX_LAYER_SIZE)
    for name in ("attention", "decoder_feedback"):
        if not isinstance(getattr(m, name), bool):
            raise ConfigError(
                f"{where}: model.{name}: expected true or false, got {getattr(m, name)!r}"
            )
    _positive_int(f"{where}: model.attention_size", m.attention_size, MAX_LAYER_SIZE)


def _validate_optim(o: OptimConfig, where: str) -> None:
    for name in ("epochs", "batch_size", "step_size"):
        _positive_int(f"{where}: optim.{name}", getattr(o, name), MAX_STEPS)
    for name in ("steps", "patience"):
        if getattr(o, name) is not None:
            _positive_int(f"{where}: optim.{name} (or null)", getattr(o, name), MAX_STEPS)
    _number(f"{where}: optim.lr", o.lr, 0.0, MAX_LR, low_open=True)
    _number(f"{where}: optim.gamma", o.gamma, 0.0, 1.0, low_open=True)
    _number(f"{where}: optim.weight_decay", o.weight_decay, 0.0, 1e6)
    if o.grad_clip is not None:
        _number(
            f"{where}: optim.grad_clip",
            o.grad_clip,
            0.0,
            1e12,
            low_open=True,
            what="or null (no clipping)",
        )
    _choice(f"{where}: optim.scheduler", o.scheduler, SCHEDULERS)


def _number(
    name: str, value: Any, low: float, high: float, *, low_open: bool = False, what: str = ""
) -> None:
    """A finite int or float in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (low < value if low_open else low <= value) or value > high:
        kind = "a positive number" if low_open and low == 0 else f"a number >= {low:g}"
        extra = f" {what}" if what else ""
        raise ConfigError(
            f"{name}: expected {kind}{extra}, got {value!r} "
            f"(it must be finite and at most {high:g})"
        )


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def capped_threads(threads: int, log: Callable[[str], None] | None = None) -> int:
    """``threads``, at most :func:`available_cpus`; ``log`` says so when it caps (more threads
    than CPUs only slow torch down, and thousands of them crash it)."""
    cpus = available_cpus()
    if threads <= cpus:
        return threads
    if log is not None:
        log(f"--threads {threads}: more than the {cpus} CPUs this process may use; using {cpus}")
    return cpus


def _positive_int(name: str, value: Any, high: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < 1
        or (high is not None and value > high)
    ):
        expected = "a positive int" if high is None else f"an int in [1, {high}]"
        raise ConfigError(f"{name}: expected {expected}, got {value!r}")


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name}: expected one of {list(options)}, got {value!r}")


def planned_epochs(optim: OptimConfig, windows: int) -> int:
    """The epochs a run plans: ``optim.epochs``, or with a step budget as many epochs of
    ``windows`` training windows (batches of ``optim.batch_size``) as ``optim.steps`` needs."""
    if optim.steps is None:
        return optim.epochs
    batches = max(1, -(-windows // optim.batch_size))
    return max(1, -(-optim.steps // batches))
