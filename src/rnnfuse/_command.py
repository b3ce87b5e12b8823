"""What every ``rnnfuse`` subcommand shares: the one-line error.

Command modules (``rnnfuse.app.commands``, ``rnnfuse.tf1.commands``, ...) import from
here, never from :mod:`rnnfuse.cli`, which only assembles them.
"""

from __future__ import annotations

import sys


def fail(command: str, message: object) -> int:
    """Report a user error of ``rnnfuse COMMAND`` on one line; return the exit status (2,
    as argparse uses for bad arguments)."""
    print(f"rnnfuse {command}: error: {message}", file=sys.stderr)
    return 2
