"""``rnnfuse export --onnx MODEL OUT``: a saved model as an ONNX file, checked in onnxruntime.

``MODEL`` is a stack file written by :func:`rnnfuse.io.save` (a ``StackedRNN`` or
``BidirectionalRNN``: the ONNX graph takes ``x`` and ``lengths``) or a forecaster written by
``rnnfuse train`` (its ``best.safetensors`` or its run directory: the graph is the
autoregressive forecast, ``generate`` over the configured horizon, taking ``inputs_local``,
``inputs_global``, ``start``, ``covariates`` and ``lengths_global``).  Batch and time are
dynamic unless ``--no-dynamic``.  Where onnxruntime is installed, the file is run on a random
input of other sizes and compared with the eager model (the maximum difference is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._command import fail

__all__ = ["add_commands", "Exportable", "exportable_from_path", "export_file"]

_FORECASTER_PREFIX = "rnnfuse-forecaster/"
_TOLERANCE = 1e-4  # the check fails beyond this (float32 kernels differ in summation order only)


@dataclass
class Exportable:
    """A module with what exporting it takes: an example input (positional ``args`` and
    ``kwargs``), their ``dynamic_shapes``, and ``sample(batch, time)`` making an input of
    other sizes (a flat list in the ONNX graph's input order, and the same as ``(args,
    kwargs)`` for the eager module)."""

    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    dynamic_shapes: Any
    sample: Any
    description: str


def add_commands(subparsers: Any) -> None:
    """Register ``export`` on the ``rnnfuse`` parser."""
    p = subparsers.add_parser(
        "export",
        help="write a saved stack or forecaster as an ONNX file",
        description="Export a stack file (rnnfuse.io.save) or a forecaster (rnnfuse train's "
        "best.safetensors or run directory) to ONNX, with dynamic batch and time; checked in "
        "onnxruntime when it is installed.",
    )
    p.add_argument(
        "--onnx",
        nargs=2,
        metavar=("MODEL", "OUT"),
        required=True,
        help="the saved model and the .onnx file to write",
    )
    p.add_argument(
        "--dynamic",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch and time dimensions dynamic (default); --no-dynamic fixes "
        "them to the example's",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    model, out = args.onnx
    missing = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    if missing:
        return fail(
            "export",
            f"ONNX export needs {', '.join(missing)}; install it with: pip install 'rnnfuse[onnx]'",
        )
    try:
        item = exportable_from_path(model, dynamic=args.dynamic)
        export_file(item, out)
    except (ValueError, TypeError, OSError) as exc:  # CheckpointError is a ValueError
        return fail("export", exc)
    except Exception as exc:
        return fail(
            "export", f"{model}: the exporter failed: {type(exc).__name__}: {_first_line(exc)}"
        )
    print(
        f"wrote {out}: {item.description}, batch and time {'dynamic' if args.dynamic else 'fixed'}"
    )
    return _verify(item, out, args.dynamic)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def exportable_from_path(path: str | os.PathLike[str], *, dynamic: bool = True) -> Exportable:
    """The model saved at ``path`` with an example input: a stack file or a forecaster."""
    from ..io import read_safetensors_metadata

    file = Path(path)
    if file.is_dir():
        file = file / "best.safetensors"
    if not file.exists():
        raise ValueError(
            f"{path}: no such file (expected a stack file or a forecaster's best.safetensors)"
        )
    meta = read_safetensors_metadata(file)
    kind = meta.get("format")
    if isinstance(kind, str) and kind.startswith(_FORECASTER_PREFIX):
        return _forecaster(file, dynamic)
    return _stack(file, dynamic)


def _stack(file: Path, dynamic: bool) -> Exportable:
    from ..io import load

    module = load(file)  # a clear ValueError for a foreign or damaged file
    module.eval()
    size = int(getattr(module, "input_size"))
    batch_first = bool(getattr(module, "batch_first", True))

    def sample(batch: int, time: int) -> tuple[list[Tensor], tuple[Any, ...], dict[str, Any]]:
        x = torch.randn(batch, time, size) if batch_first else torch.randn(time, batch, size)
        lengths = _lengths(batch, time)
        return [x, lengths], (x, lengths), {}

    _, args, _ = sample(2, 5)
    shapes = None
    if dynamic:
        b, t = torch.export.Dim("batch"), torch.export.Dim("time")
        shapes = ({0: b, 1: t} if batch_first else {0: t, 1: b}, {0: b})
    return Exportable(
        module, args, {}, shapes, sample, f"{type(module).__name__} (inputs x, lengths)"
    )


def _forecaster(file: Path, dynamic: bool) -> Exportable:
    from ..app.predict import load_saved
    from . import Rollout

    saved = load_saved(file)  # a model of one series or of a panel: the network is the same
    model, config = saved.model, saved.config
    names = model.encoders.names
    horizon = config.data.horizon
    steps = {"local": config.data.local_steps, "global": config.data.global_blocks}
    sizes = {n: int(getattr(model.encoders.encoders[n], "input_size")) for n in names}

    def sample(batch: int, time: int) -> tuple[list[Tensor], tuple[Any, ...], dict[str, Any]]:
        scale = time / 5  # other encoder steps than the configuration's, when asked
        t = {n: max(2, round(steps[n] * scale)) for n in names}
        inputs = {n: torch.randn(batch, t[n], sizes[n]) for n in names}
        start = torch.randn(batch, 1)
        covariates = torch.randn(batch, horizon, model.covariate_size)
        lengths = {"global": _lengths(batch, t["global"])} if "global" in names else {}
        flat = [*inputs.values(), start, covariates, *lengths.values()]
        return flat, (inputs, start, covariates), {"lengths": lengths or None}

    _, args, kwargs = sample(2, 5)
    shapes = None
    if dynamic:
        b = torch.export.Dim("batch")
        shapes = {
            "inputs": {n: {0: b, 1: torch.export.Dim(f"t_{n}")} for n in names},
            "start": {0: b},
            "covariates": {0: b},
            "lengths": {"global": {0: b}} if "global" in names else None,
        }
    described = (
        f"forecaster ({', '.join(names)}; {horizon} steps; inputs "
        f"{', '.join(f'inputs_{n}' for n in names)}, start, "
        f"covariates{', lengths_global' if 'global' in names else ''})"
    )
    return Exportable(Rollout(model, horizon).eval(), args, kwargs, shapes, sample, described)


def _lengths(batch: int, time: int) -> Tensor:
    """Ragged lengths in 1..time, the first one full."""
    lengths = torch.randint(1, time + 1, (batch,))
    lengths[0] = time
    return lengths


def export_file(item: Exportable, out: str | os.PathLike[str]) -> None:
    """Write ``item`` to ``out`` as ONNX."""
    from . import export_onnx

    with _quiet():
        export_onnx(
            item.module,
            item.args,
            out,
            kwargs=item.kwargs or None,
            dynamic_shapes=item.dynamic_shapes,
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines, warnings and log records kept off the terminal (its
    errors still raise)."""
    loggers = [
        logging.getLogger(name)
        for name in ("torch.onnx", "torch.export", "torch._export", "onnxscript")
    ]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _verify(item: Exportable, out: str, dynamic: bool) -> int:
    if importlib.util.find_spec("onnxruntime") is None:
        print("not checked: onnxruntime is not installed (pip install onnxruntime)")
        return 0
    import onnxruntime

    batch, time = (3, 7) if dynamic else (2, 5)
    flat, args, kwargs = item.sample(batch, time)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, dict(zip(names, (t.numpy() for t in flat), strict=True)))
    with torch.no_grad():
        expected = [t for t in _leaves(item.module(*args, **kwargs))]
    error = max(
        float(abs(torch.from_numpy(g) - e).max()) for g, e in zip(got, expected, strict=True)
    )
    print(
        f"checked in onnxruntime {onnxruntime.__version__} at batch {batch}, time {time}: "
        f"max abs difference to eager {error:.2e}"
    )
    if len(got) != len(expected) or not error <= _TOLERANCE:
        return fail(
            "export",
            f"{out}: onnxruntime's outputs differ from eager's (max {error:.2e} > {_TOLERANCE:g})",
        )
    return 0


def _leaves(tree: Any) -> list[Tensor]:
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(tree) if isinstance(t, Tensor)]
