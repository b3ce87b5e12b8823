"""A small progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``bar.update(done, note)`` redraws ``desc [#####.....] done/total note``; ``close()`` clears it."""

    def __init__(self, total: int, desc: str, *, enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.total = max(int(total), 1)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0

    def update(self, done: int, note: str = "") -> None:
        """Redraw (at most 10 times a second, and always at the end)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if done < self.total and now - self._last < 0.1:
            return
        self._last = now
        filled = int(20 * min(done, self.total) / self.total)
        line = f"\r{self.desc} [{'#' * filled}{'.' * (20 - filled)}] {done}/{self.total} {note}"
        self.stream.write(line[:120])
        self.stream.flush()

    def close(self) -> None:
        """Erase the bar's line."""
        if self.enabled:
            self.stream.write("\r" + " " * 120 + "\r")
            self.stream.flush()
