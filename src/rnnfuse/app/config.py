"""The configuration of a training run: data windows, model, optimisation.

Defaults < a JSON file (``--config``) < command-line flags.  A JSON file has the sections
``data``, ``model``, ``optim`` and the top-level keys ``seed`` and ``threads``; an unknown
key is an error that names the file and the key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

__all__ = ["DataConfig", "ModelConfig", "OptimConfig", "RunConfig", "FUSIONS", "ConfigError"]

FUSIONS = ("local", "global", "concat", "sum", "mean", "max", "bridge", "zoph-knight", "child-sum", "gated")
CELLS = ("lstm", "gru", "rnn")
SCHEDULERS = ("none", "cosine", "step")


class ConfigError(ValueError):
    """A bad configuration value; the message names the key or flag."""


@dataclass(frozen=True)
class DataConfig:
    """Where the series comes from and how it is cut into windows.

    At an origin ``t`` (the last observed step) the local encoder reads ``local_steps``
    values up to ``t``; the global encoder reads up to ``global_blocks`` means of ``block``
    consecutive values ending at ``t`` (fewer near the start of the series: at least
    ``min_global_blocks``; ragged lengths); the decoder forecasts ``horizon`` steps.  The
    last ``test_steps`` steps are held out for evaluation, the ``val_steps`` before them
    for validation.  ``period`` is the seasonal period in steps (52 for weekly data).
    """

    csv: str | None = None
    column: str = "co2"
    time_column: str | None = "date"
    local_steps: int = 26
    global_blocks: int = 52
    block: int = 4
    min_global_blocks: int = 13
    horizon: int = 13
    period: int = 52
    val_steps: int = 208
    test_steps: int = 208


@dataclass(frozen=True)
class ModelConfig:
    """Encoders, fusion and decoder.  ``decoder_cell`` ``None``: the encoders' kind;
    ``decoder_sizes`` ``None``: the fused sizes (for ``bridge``: the local encoder's sizes,
    reached through a StateBridge)."""

    fusion: str = "concat"
    local_cell: str = "lstm"
    local_sizes: tuple[int, ...] = (32, 32)
    global_cell: str = "lstm"
    global_sizes: tuple[int, ...] = (32, 32)
    decoder_cell: str | None = None
    decoder_sizes: tuple[int, ...] | None = None
    attention: bool = False
    attention_size: int = 32


@dataclass(frozen=True)
class OptimConfig:
    """Adam(W) with gradient clipping and an optional per-epoch learning-rate schedule."""

    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    scheduler: str = "cosine"
    step_size: int = 10
    gamma: float = 0.5


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run; saved with every checkpoint."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "config") -> RunConfig:
        """Build and validate from a dictionary such as :meth:`to_dict` returns."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        sections = {"data": DataConfig, "model": ModelConfig, "optim": OptimConfig}
        unknown = sorted(set(raw) - set(sections) - {"seed", "threads"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected {sorted(sections) + ['seed', 'threads']}")
        parts = {name: _section(kind, raw.get(name, {}), f"{where}: {name}") for name, kind in sections.items()}
        config = cls(**parts, seed=raw.get("seed", 0), threads=raw.get("threads", 1))
        validate(config, where)
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> RunConfig:
        """Read a JSON configuration file."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}") from None
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
    """Raise :class:`ConfigError` for a value out of range or of the wrong type."""
    d, m, o = config.data, config.model, config.optim
    for name in ("local_steps", "global_blocks", "block", "min_global_blocks", "horizon", "period", "val_steps", "test_steps"):
        _positive_int(f"{where}: data.{name}", getattr(d, name))
    if d.min_global_blocks > d.global_blocks:
        raise ConfigError(f"{where}: data.min_global_blocks ({d.min_global_blocks}) must not exceed data.global_blocks ({d.global_blocks})")
    if d.horizon > d.period:
        raise ConfigError(f"{where}: data.horizon ({d.horizon}) must not exceed data.period ({d.period}) (the seasonal baseline reads one period back)")
    _choice(f"{where}: model.fusion", m.fusion, FUSIONS)
    for name in ("local_cell", "global_cell", "decoder_cell"):
        if getattr(m, name) is not None or name != "decoder_cell":
            _choice(f"{where}: model.{name}", getattr(m, name), CELLS)
    for name in ("local_sizes", "global_sizes", "decoder_sizes"):
        sizes = getattr(m, name)
        if sizes is None and name == "decoder_sizes":
            continue
        if not isinstance(sizes, tuple) or not sizes:
            raise ConfigError(f"{where}: model.{name}: expected a non-empty list of ints, got {sizes!r}")
        for s in sizes:
            _positive_int(f"{where}: model.{name}", s)
    _positive_int(f"{where}: model.attention_size", m.attention_size)
    for name in ("epochs", "batch_size", "step_size"):
        _positive_int(f"{where}: optim.{name}", getattr(o, name))
    for name in ("lr", "gamma"):
        if not isinstance(getattr(o, name), (int, float)) or getattr(o, name) <= 0:
            raise ConfigError(f"{where}: optim.{name}: expected a positive number, got {getattr(o, name)!r}")
    if not isinstance(o.weight_decay, (int, float)) or o.weight_decay < 0:
        raise ConfigError(f"{where}: optim.weight_decay: expected a number >= 0, got {o.weight_decay!r}")
    if o.grad_clip is not None and (not isinstance(o.grad_clip, (int, float)) or o.grad_clip <= 0):
        raise ConfigError(f"{where}: optim.grad_clip: expected a positive number or null, got {o.grad_clip!r}")
    _choice(f"{where}: optim.scheduler", o.scheduler, SCHEDULERS)
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ConfigError(f"{where}: seed: expected an int >= 0, got {config.seed!r}")
    _positive_int(f"{where}: threads", config.threads)


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}: expected a positive int, got {value!r}")


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name}: expected one of {list(options)}, got {value!r}")
