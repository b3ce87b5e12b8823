"""The deprecation warning of the ``rnnfuse.interop`` shims."""

from __future__ import annotations

import warnings

__all__ = ["warn_moved"]


def warn_moved(old: str, new: str) -> None:
    """Warn that module ``old`` is deprecated and name where its contents went."""
    warnings.warn(f"{old} is deprecated; import from {new} instead", DeprecationWarning, stacklevel=3)
