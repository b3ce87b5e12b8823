"""The ``rnnfuse`` command.  Each group of subcommands lives beside what it drives:
``rnnfuse.app.commands`` (demo, train, predict), ``rnnfuse.tf1.commands`` (convert),
``rnnfuse.convert.commands`` (Keras files), ``rnnfuse.export_commands`` (ONNX) and
``rnnfuse.describe`` (rnnfuse files), ``rnnfuse.kernels.build_command`` (build-kernels); this module
only assembles them.  Nothing imports back from it.

``rnnfuse inspect PATH`` asks each group in turn: a group's ``inspect_path(path)`` returns
an exit status when the path is of its kind (it printed a description or an error), or
``None`` to let the next group look.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ._command import fail

__all__ = ["main", "build_parser"]

_COMMAND_MODULES = (
    "rnnfuse.app.commands",
    "rnnfuse.tf1.commands",
    "rnnfuse.convert.commands",
    "rnnfuse.export_commands",
    "rnnfuse.describe",
    "rnnfuse.kernels.build_command",
)


def _command_modules() -> list[ModuleType]:
    """The command groups whose dependencies are installed (the forecaster is an extra)."""
    found = []
    for name in _COMMAND_MODULES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)) and not _is_optional(exc.name):
                raise  # a bug inside the module, not a missing optional part
    return found


def _is_optional(module: str | None) -> bool:
    return bool(
        module and module.split(".")[0] in {"matplotlib", "statsmodels", "statsforecast", "tqdm"}
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnfuse", description="Multi-layer recurrent encoders and state fusion."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _command_modules()
    for module in modules:
        if hasattr(module, "add_commands"):
            module.add_commands(sub)
    inspect = sub.add_parser(
        "inspect",
        help="show the variables, cells and state of a checkpoint or file",
        description="Print variables, cells and state structure of a TF1 checkpoint or an "
        "rnnfuse .safetensors file (or the tensors and configuration of a "
        "best.safetensors written by `rnnfuse train`).",
    )
    inspect.add_argument("path", help="TF1 checkpoint prefix or .safetensors file")
    inspect.set_defaults(handler=lambda args: _inspect(args, modules))
    return parser


def _inspect(args: argparse.Namespace, modules: list[ModuleType]) -> int:
    path = os.fspath(args.path)
    for module in modules:
        describe: Any = getattr(module, "inspect_path", None)
        if describe is not None:
            status = describe(path)
            if status is not None:
                return int(status)
    return fail(
        "inspect",
        f"{path!r} is neither a TF1 checkpoint prefix ({path}.index not found) nor a file",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
