"""The legacy fixtures' inputs and TensorFlow's outputs (``tests/fixtures/legacy/<case>/io.npz``),
and the check that rnnfuse's numbers match them, shared by the TF2 and TF1 loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
TOL = 1e-6


def io(case: str) -> dict[str, np.ndarray]:
    """The arrays TensorFlow wrote for ``case``: its inputs and outputs."""
    with np.load(LEGACY / case / "io.npz") as data:
        return {k: data[k] for k in data.files}


def close(got: torch.Tensor, want: np.ndarray) -> None:
    """``got`` has ``want``'s shape and matches it to :data:`TOL`."""
    got_np = got.detach().numpy()
    assert got_np.shape == want.shape
    assert float(np.abs(got_np - want).max()) <= TOL
