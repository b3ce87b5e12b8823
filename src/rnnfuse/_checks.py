"""Input validation shared by the stack, the fusion and the interop modules.

Every check raises a ``ValueError`` or ``TypeError`` that names the argument, what was
expected and what was received.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._python_dispatch import is_in_torch_dispatch_mode


def check_sequence_input(x: Any, input_size: int, batch_first: bool) -> Tensor:
    """Validate ``x`` and return it batch-first ``(B, T, F)``."""
    layout = "(B, T, F)" if batch_first else "(T, B, F)"
    if not isinstance(x, Tensor):
        raise TypeError(f"x: expected a Tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"x: expected a 3-D tensor of shape {layout}, got rank {x.dim()} with "
            f"shape {list(x.shape)}"
        )
    if not x.dtype.is_floating_point:
        raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
    if x.shape[-1] != input_size:
        raise ValueError(
            f"x: x.size(-1) must be equal to input_size. Expected {input_size}, got {x.shape[-1]}"
        )
    return x if batch_first else x.transpose(0, 1)


def check_lengths(lengths: Any, batch: int, steps: int, device: torch.device) -> Tensor | None:
    """Validate ``lengths`` (None, a sequence of ints, a NumPy array or a Tensor).

    Returns ``None`` when every sequence is full length (the fast, unmasked case), else an
    int64 tensor on ``device``.  While a compiler or exporter traces, the values are not
    read (no graph break, no guard on them): the tensor is returned as it is and the
    ``rnnfuse::layer`` operator checks the values when it runs.
    """
    if lengths is None:
        return None
    if torch.jit.is_tracing():
        raise RuntimeError(
            "lengths: torch.jit.trace cannot record ragged lengths (the trace would hold one "
            "length pattern and be silently wrong for others); use torch.export.export(model, "
            "(x, lengths)) or torch.compile instead, or trace without lengths"
        )
    lens = _as_int_tensor(lengths)
    if lens.dim() != 1 or lens.shape[0] != batch:
        raise ValueError(
            f"lengths: expected one length per sequence, shape ({batch},), got "
            f"shape {list(lens.shape)}"
        )
    if tracing(lens):
        return lens.to(device=device, dtype=torch.int64)
    shortest = check_length_values(lens, steps)
    if batch and shortest == steps:
        return None
    return lens.to(device=device, dtype=torch.int64)


_FEW = 64


def check_length_values(lengths: Tensor, steps: int) -> int | None:
    """``ValueError`` unless every length is in ``[0, steps]`` (nothing to check when empty);
    returns the shortest length (``None`` when empty)."""
    if lengths.numel() == 0:
        return None
    if lengths.device.type == "cpu" and lengths.numel() <= _FEW:  # cheaper read as a list
        values = lengths.tolist()
        low, high = min(values), max(values)
    else:
        low, high = (int(v) for v in torch.aminmax(lengths))
    if low < 0:
        raise ValueError(f"lengths: expected values in [0, {steps}], got a negative length {low}")
    if high > steps:
        raise ValueError(
            f"lengths: expected values in [0, {steps}] (the number of time steps), got {high}"
        )
    return low


def tracing(t: Tensor) -> bool:
    """Whether ``t`` is being traced by ``torch.compile``/``torch.export`` (or is a fake
    tensor): then no Python decision may read tensor values."""
    if torch.compiler.is_compiling() or is_in_torch_dispatch_mode():  # dynamo; a fake or proxy mode
        return True
    return type(t) is not Tensor and torch._guards.detect_fake_mode(t) is not None  # a fake tensor


def _as_int_tensor(lengths: Any) -> Tensor:
    if isinstance(lengths, Tensor):
        tensor = lengths
    elif isinstance(lengths, np.ndarray):
        tensor = torch.from_numpy(lengths)
    elif isinstance(lengths, Sequence) and not isinstance(lengths, (str, bytes)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in lengths):
            bad = next(
                v for v in lengths if not isinstance(v, (int, np.integer)) or isinstance(v, bool)
            )
            raise TypeError(f"lengths: expected integers, got {bad!r} ({type(bad).__name__})")
        tensor = torch.tensor(list(lengths), dtype=torch.int64)
    else:
        raise TypeError(
            f"lengths: expected a Tensor or a sequence of ints, got {type(lengths).__name__}"
        )
    if tensor.dtype == torch.bool or tensor.dtype.is_floating_point or tensor.dtype.is_complex:
        raise TypeError(f"lengths: expected an integer dtype, got {tensor.dtype}")
    # detached (lengths need no graph); what the kernels keep per lengths (a layout) is keyed
    # on their values, so memory changed behind the version counter is read anew
    return tensor.detach().cpu()


def describe(x: Any) -> str:
    """What an argument is, for error messages: its shape if a tensor, else its type."""
    return f"shape {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
