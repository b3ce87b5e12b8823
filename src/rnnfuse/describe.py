"""``rnnfuse inspect`` and ``rnnfuse convert`` of files written by :func:`rnnfuse.io.save`
(:data:`FILE_KINDS`), and :func:`state_str`, a state's sizes as text.

Stack files are the last kind ``rnnfuse inspect`` tries, so any existing file that is no
other kind gets the loader's clear error.  ``rnnfuse convert`` of a stack file writes it
again (checked tensor by tensor; ``--time-major`` changes its layout).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._command import Converted, FileKind, fail
from .state import BidirectionalState, LSTMState

__all__ = ["FILE_KINDS", "state_str"]


def state_str(sizes: Any, lstm: str = "LSTMStateTuple") -> str:
    """A state structure of sizes (``StackedRNN.state_sizes``) as shapes, ``batch`` first.

    >>> state_str((LSTMState(20, 20), 10), "LSTMState")
    '(LSTMState(c=[batch, 20], h=[batch, 20]), Tensor[batch, 10])'
    >>> state_str((BidirectionalState(4, 4),))
    '(BidirectionalState(fw=Tensor[batch, 4], bw=Tensor[batch, 4]),)'
    """
    if isinstance(sizes, LSTMState):
        return f"{lstm}(c=[batch, {sizes.c}], h=[batch, {sizes.h}])"
    if isinstance(sizes, BidirectionalState):
        return f"BidirectionalState(fw={state_str(sizes.fw, lstm)}, bw={state_str(sizes.bw, lstm)})"
    if isinstance(sizes, tuple):
        inner = ", ".join(state_str(s, lstm) for s in sizes)
        return f"({inner},)" if len(sizes) == 1 else f"({inner})"
    return f"Tensor[batch, {sizes}]"


def _describe(path: str) -> int:
    """``rnnfuse inspect`` of a stack file."""
    try:
        return _inspect_file(path)
    except (ValueError, OSError) as exc:
        return fail("inspect", exc)


def _convert(path: str, args: argparse.Namespace) -> Converted:
    """``rnnfuse convert`` of a stack file: the module :func:`rnnfuse.io.load` reads."""
    from .io import load

    module = load(path)
    return Converted(module, path)


def _inspect_file(path: str) -> int:
    from safetensors import safe_open

    from .io import load, read_config

    read_config(path)  # a clear error for a foreign file, before anything else
    module = load(path)
    with safe_open(path, framework="pt") as f:
        names = list(f.keys())
    tensors = dict(module.state_dict())
    print(f"rnnfuse file {path}: {len(names)} tensors")
    width = max((len(n) for n in names), default=0)
    for name in sorted(names):
        t = tensors[name]
        print(f"  {name:<{width}}  {list(t.shape)}  {str(t.dtype).replace('torch.', '')}")
    stacks: list[tuple[str, Any]] = (
        [("fw", module.fw), ("bw", module.bw)] if hasattr(module, "fw") else [("", module)]
    )
    print(f"{type(module).__name__} (batch_first={module.batch_first})")
    for side, stack in stacks:
        indent = "  " + ("  " if side else "")
        if side:
            print(f"  {side}: StackedRNN of {stack.num_layers} layers")
        for k, cell in enumerate(stack.layers):
            backward = stack.backward_cell(k)
            back = f" | backward {backward!r}" if backward is not None else ""
            back += " + residual" if stack.residual[k] else ""
            print(f"{indent}layer {k}: {cell!r}{back}")
    print(f"  outputs: [batch, time, {module.output_size}]")
    print(f"  state: {state_str(module.state_sizes, 'LSTMState')}")
    return 0


FILE_KINDS = (FileKind("an rnnfuse stack file", os.path.isfile, _describe, _convert),)
