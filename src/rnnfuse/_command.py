"""What every ``rnnfuse`` command group shares: the one-line error and the kinds of file.

A command group is a module named ``commands.py`` beside what it drives
(``rnnfuse.app.commands``, ``rnnfuse.convert.commands``, ...), listed once in
:data:`rnnfuse.cli.GROUPS`.  Each has ``add_commands(subparsers)``, registering its
subcommands, and may list ``FILE_KINDS``: the files ``rnnfuse inspect`` describes and
``rnnfuse convert`` turns into stack files.  Groups import from here, never from
:mod:`rnnfuse.cli`, which only assembles them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NamedTuple


def fail(command: str, message: object) -> int:
    """Report a user error of ``rnnfuse COMMAND`` on one line; return the exit status (2,
    as argparse uses for bad arguments).

    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     status = fail("convert", "--out: expected a file name")
    >>> status, err.getvalue()
    (2, 'rnnfuse convert: error: --out: expected a file name\\n')
    """
    print(f"rnnfuse {command}: error: {message}", file=sys.stderr)
    return 2


class Converted(NamedTuple):
    """What ``rnnfuse convert`` writes: ``module`` (a ``StackedRNN`` or ``BidirectionalRNN``),
    ``source`` (where in the file it came from, for the report line) and ``notes`` (more
    lines to print: what was skipped, how the file's outputs map onto the module's)."""

    module: Any
    source: str
    notes: tuple[str, ...] = ()


class FileKind(NamedTuple):
    """A kind of file that ``rnnfuse inspect`` and ``rnnfuse convert`` read.

    ``name``: what the file is, in messages ("a TF1 checkpoint").  ``matches(path)``: a
    cheap test of the path (the first kind that matches reads the file).
    ``describe(path)``: print what the file holds and return the exit status.
    ``convert(path, args)``: the :class:`Converted` module, from ``rnnfuse convert``'s
    arguments.  ``options``: the flags of ``rnnfuse convert`` that ``convert`` reads beyond
    ``--out`` and ``--time-major`` (any other flag given is refused, naming these).
    """

    name: str
    matches: Callable[[str], bool]
    describe: Callable[[str], int]
    convert: Callable[[str, argparse.Namespace], Converted]
    options: tuple[str, ...] = ()
