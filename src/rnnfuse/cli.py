"""The ``rnnfuse`` command: this module only assembles the command groups of :data:`GROUPS`.

Each group is a module named ``commands.py`` beside what it drives, with
``add_commands(subparsers)`` registering its subcommands, and, where it reads files that
``rnnfuse inspect`` and ``rnnfuse convert`` take, ``FILE_KINDS``
(:class:`rnnfuse._command.FileKind`), which reach those commands as ``args.file_kinds``,
in the order of :data:`GROUPS`.  Nothing imports back from this module.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["main", "build_parser", "GROUPS"]

# (module, title in `rnnfuse --help`), in the order of the help and of FILE_KINDS
GROUPS = (
    ("rnnfuse.app.commands", "forecaster"),
    ("rnnfuse.convert.commands", "files of TensorFlow, Keras and rnnfuse"),
    ("rnnfuse.export.commands", "deployment"),
    ("rnnfuse.kernels.commands", "kernels"),
)
_OPTIONAL = {"matplotlib", "statsmodels", "statsforecast", "tqdm"}  # the forecaster's extra


def _load(name: str) -> ModuleType | None:
    """The group ``name``, or ``None`` where an optional dependency of it is missing."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if name.startswith(missing) or missing.split(".")[0] in _OPTIONAL:
            return None
        raise  # a bug inside the module, not a missing optional part


class _Recorder:
    """The subparsers, noting which commands each group adds (for the grouped help)."""

    def __init__(self, subparsers: Any) -> None:
        self._subparsers = subparsers
        self.added: list[tuple[str, str]] = []

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        self.added.append((name, kwargs.get("help", "")))
        parser: argparse.ArgumentParser = self._subparsers.add_parser(name, **kwargs)
        return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnfuse`` parser with every installed group's subcommands."""
    parser = argparse.ArgumentParser(
        prog="rnnfuse",
        usage="rnnfuse [-h] COMMAND ...",
        description="Multi-layer recurrent encoders and state fusion.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", help=argparse.SUPPRESS, prog="rnnfuse"
    )
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    kinds: list[Any] = []
    for name, title in GROUPS:
        module = _load(name)
        if module is None:
            continue
        recorder = _Recorder(sub)
        module.add_commands(recorder)
        sections.append((title, recorder.added))
        kinds += getattr(module, "FILE_KINDS", ())
    parser.epilog = _commands_text(sections) + "\n\n`rnnfuse COMMAND --help` tells more."
    parser.set_defaults(file_kinds=tuple(kinds))
    return parser


def _commands_text(sections: list[tuple[str, list[tuple[str, str]]]]) -> str:
    """The commands by group, as ``rnnfuse --help`` lists them."""
    width = max((len(name) for _, rows in sections for name, _ in rows), default=0)
    lines = []
    for title, rows in sections:
        lines.append(f"{title}:")
        lines += [f"  {name:<{width}}  {text}".rstrip() for name, text in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
