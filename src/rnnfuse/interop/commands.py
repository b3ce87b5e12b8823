"""Deprecated: use :mod:`rnnfuse.tf1.commands`."""

from ..tf1.commands import add_commands, inspect_path, run_convert
from ._moved import warn_moved

warn_moved(__name__, "rnnfuse.tf1.commands")

__all__ = ["add_commands", "inspect_path", "run_convert"]
