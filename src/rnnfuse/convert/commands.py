"""The files command group: ``rnnfuse inspect PATH`` and ``rnnfuse convert PATH --out FILE``.

Both read every kind of file the command groups list in their ``FILE_KINDS`` (handed over
by :mod:`rnnfuse.cli` as ``args.file_kinds``; the first kind whose test matches reads the
path): forecasters written by ``rnnfuse train`` (:mod:`rnnfuse.app.commands`), TF1
checkpoints (:mod:`rnnfuse.tf1.files`), TF2 object-based checkpoints, Keras and TF2
SavedModels, Keras ``.keras`` and ``.h5`` files (:mod:`rnnfuse.convert.keras_files`) and
stack files (:mod:`rnnfuse.describe`, tried last: any other file gets its clear error).
``inspect`` prints what the file holds; ``convert`` writes the stack it holds as a stack
file (:func:`rnnfuse.io.save`), which :func:`rnnfuse.io.load` reads back.  What a file
does not tell (a TF1 scope, cell classes, a GRU's ``reset_after``, which Keras layers)
comes from flags, each read by the kinds it names in its help; a flag given for a kind
that does not read it is an error naming the kind's own flags.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .. import describe
from .._command import FileKind, fail
from ..tf1 import files as tf1_files
from . import keras_files

__all__ = ["add_commands", "FILE_KINDS"]

FILE_KINDS = (*tf1_files.FILE_KINDS, *keras_files.FILE_KINDS)
_LAST = describe.FILE_KINDS  # any file: stack files, after every other group's kinds


def add_commands(subparsers: Any) -> None:
    """Register ``inspect`` and ``convert`` on the ``rnnfuse`` parser."""
    inspect = subparsers.add_parser(
        "inspect",
        help="show the variables, cells and state of a checkpoint or file",
        description="Print what a file holds: the variables, cells and state structure of a "
        "TF1 or TF2 checkpoint, the layers of a Keras file or SavedModel, the tensors and "
        "cells of an rnnfuse stack file, or the tensors and configuration of a forecaster "
        "written by `rnnfuse train`.",
    )
    inspect.add_argument(
        "path", help="checkpoint prefix, SavedModel directory, .keras/.h5 or .safetensors file"
    )
    inspect.set_defaults(handler=_inspect)
    _add_convert(subparsers)


def _add_convert(subparsers: Any) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="write the stack in a checkpoint or file as an rnnfuse .safetensors file",
        description="Convert the recurrent stack of any file `rnnfuse inspect` reads (TF1 "
        "and TF2 checkpoints, Keras and TF2 SavedModels, Keras .keras/.h5 files, a "
        "forecaster's stacks, rnnfuse stack files) into an rnnfuse stack file "
        "(rnnfuse.io.load reads it). Flags give what the file does not store.",
    )
    convert.add_argument(
        "path",
        metavar="PATH",
        help="checkpoint prefix (what Saver.save returned), SavedModel directory, "
        ".keras/.h5 file or .safetensors file",
    )
    convert.add_argument("--out", required=True, help="output .safetensors file")
    convert.add_argument(
        "--time-major", action="store_true", help="the stack takes (time, batch, features) inputs"
    )
    _add_tf1_options(convert.add_argument_group("TF1 checkpoints"))
    keras = convert.add_argument_group("Keras files, SavedModels and TF2 checkpoints")
    keras.add_argument(
        "--layer",
        action="append",
        metavar="NAME",
        help="the recurrent layers to stack, bottom first (repeatable; default: every "
        "recurrent layer, when they are one chain)",
    )
    keras.add_argument(
        "--reset-after",
        choices=["true", "false"],
        help="TF2 checkpoint or SavedModel without Keras metadata: reset_after of a GRU "
        "without bias (its weights do not tell it)",
    )
    forecaster = convert.add_argument_group("forecasters written by `rnnfuse train`")
    forecaster.add_argument(
        "--stack",
        metavar="NAME",
        help="the stack to write: an encoder (local, global) or decoder",
    )
    convert.set_defaults(handler=_convert)


def _add_tf1_options(group: Any) -> None:
    group.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="dynamic_rnn scope, e.g. rnn or encoder1/rnn (default: the only RNN "
        "scope in the checkpoint); give it several times to stack RNNs that fed "
        "each other into one stack, bottom first, e.g. GNMT's encoder: --scope "
        "encoder/bidirectional_rnn --scope encoder/rnn",
    )
    group.add_argument(
        "--residual",
        metavar="LAYERS",
        help="layers that add their input to their output (ResidualWrapper; TF "
        "stores no trace of it): 0-based layer numbers of the converted stack, "
        "comma-separated (GNMT's encoder: 2), or 'all' for every layer but the first",
    )
    group.add_argument(
        "--forget-bias",
        metavar="VALUE[,VALUE...]",
        help="forget bias the LSTM cells ran with (default 1.0, TF's; not stored); "
        "comma-separated: one per layer, bottom first",
    )
    group.add_argument(
        "--cell-type",
        action="append",
        metavar="NAME=CLASS",
        help="the TF class of a cell built with name= whose shapes fit two kinds, "
        "e.g. cell0=LSTMCell or plain=BasicRNNCell (repeatable)",
    )
    group.add_argument("--cell-clip", type=float, help="LSTMCell cell_clip (not stored)")
    group.add_argument("--proj-clip", type=float, help="LSTMCell proj_clip (not stored)")
    group.add_argument(
        "--activation",
        choices=tf1_files.ACTIVATION_NAMES,
        help="the cells' activation (TF's activation=; default tanh)",
    )
    group.add_argument(
        "--ignore",
        action="append",
        metavar="PATTERN",
        help="glob of variable names to leave out, e.g. '*/my_slot' (repeatable; "
        "optimizer slots, global_step and EMA shadows are skipped already)",
    )
    group.add_argument(
        "--ema",
        action="store_true",
        help="load the ExponentialMovingAverage shadows instead of the raw values",
    )


def _kinds(args: argparse.Namespace) -> tuple[FileKind, ...]:
    """Every group's kinds (``args.file_kinds``, from :mod:`rnnfuse.cli`), stack files last."""
    given = getattr(args, "file_kinds", None) or FILE_KINDS
    return (*given, *_LAST)


def _kind_of(path: str, kinds: tuple[FileKind, ...]) -> FileKind:
    for kind in kinds:
        if kind.matches(path):
            return kind
    raise ValueError(
        f"{path!r} is neither a TF1 checkpoint prefix or TF2 one ({path}.index not found) "
        f"nor a file or SavedModel directory"
    )


def _inspect(args: argparse.Namespace) -> int:
    path = os.fspath(args.path)
    try:
        kind = _kind_of(path, _kinds(args))
    except ValueError as exc:
        return fail("inspect", exc)
    return int(kind.describe(path))


def _convert(args: argparse.Namespace) -> int:
    from ..io import save

    path = os.fspath(args.path)
    try:
        kinds = _kinds(args)
        kind = _kind_of(path, kinds)
        _check_options(kind, path, given_options(args, kinds))
        converted = kind.convert(path, args)
        module = _with_layout(converted.module, batch_first=not args.time_major)
        save(module, args.out)
    except (ValueError, TypeError, OSError) as exc:
        return fail("convert", exc)
    count = sum(p.numel() for p in module.parameters())
    residual = [k for k, r in enumerate(getattr(module, "residual", ())) if r]
    extra = f", residual layers {residual}" if residual else ""
    print(
        f"wrote {args.out}: {type(module).__name__} from {converted.source}, "
        f"{count} parameters{extra}"
    )
    for note in converted.notes:
        print(note)
    return 0


def given_options(args: argparse.Namespace, kinds: tuple[FileKind, ...]) -> list[str]:
    """The flags of ``kinds`` that ``args`` sets.

    >>> kinds = (FileKind("a file", bool, int, print, ("--scope", "--ema", "--layer")),)
    >>> given_options(argparse.Namespace(scope=["rnn"], ema=False, layer=None), kinds)
    ['--scope']
    """
    flags = dict.fromkeys(flag for kind in kinds for flag in kind.options)
    return [
        flag
        for flag in flags
        if getattr(args, flag[2:].replace("-", "_"), None) not in (None, False, [])
    ]


def _check_options(kind: FileKind, path: str, given: list[str]) -> None:
    """``ValueError`` naming the flags ``given`` that ``kind`` does not read, and its own."""
    unread = [flag for flag in given if flag not in kind.options]
    if unread:
        own = ", ".join(kind.options) or "none beyond --out and --time-major"
        raise ValueError(
            f"{', '.join(unread)}: not an option for {kind.name} ({path!r}); its options: {own}"
        )


def _with_layout(module: Any, batch_first: bool) -> Any:
    """``module`` taking batch-first inputs or not (a stack file's or a forecaster's stack
    keeps its own layout unless ``--time-major`` is given)."""
    if batch_first:
        return module
    for stack in (module.fw, module.bw) if hasattr(module, "fw") else (module,):
        stack.batch_first = False
    return module
