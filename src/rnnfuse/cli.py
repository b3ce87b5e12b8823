"""The ``rnnfuse`` command.  Each group of subcommands lives beside what it drives:
``rnnfuse.app.commands`` (demo, train, predict) and ``rnnfuse.interop.commands``
(convert, inspect); this module only assembles them."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "fail"]

_COMMAND_MODULES = ("rnnfuse.app.commands", "rnnfuse.interop.commands")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnfuse", description="Multi-layer recurrent encoders and state fusion."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not (exc.name and name.startswith(exc.name)):
                raise  # a missing dependency inside the module, not the module itself
            continue
        module.add_commands(sub)
    return parser


def fail(command: str, message: object) -> int:
    """Report a user error of ``rnnfuse COMMAND`` on one line; return the exit status (2,
    as argparse uses for bad arguments)."""
    print(f"rnnfuse {command}: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
