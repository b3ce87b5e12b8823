"""ONNX export: the ``rnnfuse::layer`` operator as ONNX ``LSTM``/``GRU``/``RNN`` nodes.

While exporting, every layer and direction of a stack is one ``torch.ops.rnnfuse.layer``
call (:mod:`rnnfuse.kernels.ops`).  Its translation (:func:`onnx_translation_table`) is in
``torch.onnx``'s default registry (:mod:`rnnfuse._onnx_registration`), so the plain
``torch.onnx.export(model, args, path, dynamo=True, dynamic_shapes=...)`` exports any rnnfuse
module; :func:`export_onnx` is that call with the translation passed explicitly.  It maps the
operator onto the ONNX recurrent operators with ``sequence_lens``, where their semantics
equal the cell's exactly:

* LSTM: gates reordered from PyTorch's i, f, g, o to ONNX's i, o, f, c; the forget bias is
  folded into the bias; peepholes ``P = [p_i, p_o, p_f]`` (ONNX's output gate reads the new
  ``c``, as TF1's).  What ONNX's ``LSTM`` cannot express, ``cell_clip`` (its ``clip`` clips
  the gates' pre-activations, TF1's clips ``c``) and a projection with ``proj_clip`` (it has
  none), becomes an ONNX ``Loop`` over time running the cell's own step
  (:mod:`rnnfuse._onnx_loop`), still with dynamic batch and time.
* GRU: gates reordered from r, z, n to z, r, h; ``linear_before_reset=1`` is PyTorch's
  (reset-after) GRU, ``0`` TF1's reset-before GRU (recurrent bias zero).
* RNN: ``Tanh`` or ``Relu``.

A backward direction is ``direction="reverse"``, which reverses each sequence within its
length, as TF1's ``reverse_sequence``; outputs past a length are zero and ``Y_h`` is the state
at the last valid step (a zero length keeps the initial state).

>>> import torch, rnnfuse
>>> stack = rnnfuse.StackedRNN(4, [8, 6], bidirectional=True).eval()
>>> program = torch.onnx.export(  # doctest: +SKIP
...     stack, (torch.randn(2, 5, 4), torch.tensor([5, 3])), dynamo=True
... )
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._onnx_translation import layer_onnx

__all__ = ["onnx_translation_table", "export_onnx", "OPSET", "Rollout"]

OPSET = 18


def onnx_translation_table() -> dict[Any, Any]:
    """``custom_translation_table`` for ``torch.onnx.export(..., dynamo=True)``."""
    import rnnfuse.kernels.ops  # noqa: F401  (registers the operator)

    return {torch.ops.rnnfuse.layer.default: layer_onnx}


def export_onnx(
    model: nn.Module,
    args: Sequence[Any],
    path: Any = None,
    *,
    kwargs: dict[str, Any] | None = None,
    dynamic_shapes: Any = None,
    opset_version: int = OPSET,
) -> Any:
    """``torch.onnx.export(model, args, dynamo=True)`` at opset 18, optimized, with the
    rnnfuse translation passed as ``custom_translation_table`` (the plain call finds it in the
    default registry too; this one works even where that registration failed).

    Args:
        model: any rnnfuse module (``StackedRNN``, ``BidirectionalRNN``, ``MultiEncoder``,
            ``Seq2Seq``, a :class:`Rollout`) or a module that contains them.
        args: the example's positional arguments, e.g. ``(x, lengths)`` with ``x``
            ``(B, T, F)`` and ``lengths`` ``(B,)``.
        path: where to write the ``.onnx`` file; ``None`` writes nothing.
        kwargs: the example's keyword arguments.
        dynamic_shapes: ``torch.export``'s dynamic shapes (``torch.export.Dim`` per axis), so
            that batch, time and lengths stay dynamic in the graph.
        opset_version: the ONNX opset (18 by default).

    Returns:
        The ``torch.onnx.ONNXProgram``; layers are native ONNX ``LSTM``/``GRU``/``RNN`` nodes
        with ``sequence_lens``, or a ``Loop`` over time where ONNX has no such node.
    """
    program = torch.onnx.export(
        model,
        tuple(args),
        kwargs=kwargs,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        custom_translation_table=onnx_translation_table(),
        opset_version=opset_version,
        optimize=True,
        verbose=False,
    )
    assert program is not None  # dynamo=True always returns an ONNXProgram
    if path is not None:
        program.save(path)
    return program


class Rollout(nn.Module):
    """``model.generate(..., steps=steps)`` as a module's ``forward``, for exporters (which
    trace ``forward``): ``forward(inputs, start, covariates=None, lengths=None)``.

    The rollout is a Python loop over ``steps``: an exported program has that many steps
    (batch, encoder steps and lengths may stay dynamic)."""

    def __init__(self, model: nn.Module, steps: int) -> None:
        super().__init__()
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected a positive int, got {steps!r}")
        if not callable(getattr(model, "generate", None)):
            raise TypeError(
                "model: expected a module with a generate method (a Seq2Seq), got "
                f"{type(model).__name__}"
            )
        self.model = model
        self.steps = steps

    def forward(
        self,
        inputs: Any,
        start: torch.Tensor,
        covariates: torch.Tensor | None = None,
        lengths: Any = None,
    ) -> torch.Tensor:
        """The forecast of ``model.generate``.

        Args:
            inputs: the encoders' input, one ``(B, T, F)`` tensor or a mapping by name.
            start: the first decoder input, ``(B, output_size)``.
            covariates: ``(B, steps, covariate_size)``, or ``None``.
            lengths: the encoders' lengths, or ``None``.

        Returns:
            The predictions, ``(B, steps, output_size)``.
        """
        generate = getattr(self.model, "generate")
        return generate(
            inputs, start=start, steps=self.steps, covariates=covariates, lengths=lengths
        )
