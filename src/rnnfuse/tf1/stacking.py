"""How wrapped TF1 layers map onto a :class:`~rnnfuse.StackedRNN`'s ``residual`` and dropout.

A StackedRNN layer computes ``z_k = cell_k(x_k) [+ x_k]`` and, between layers,
``x_{k+1} = dropout(z_k)`` with one probability (``dropout``) and one kind
(``variational_dropout``: one mask per sequence) for every boundary; no dropout on the stack's
input, on its top output or on the recurrent state.  A TF1 layer under wrappers is read here,
from the inner cell outwards, as ``(input dropouts, residual, output dropouts)`` around the
whole layer:

* ``DropoutWrapper`` adds its input dropout before and its output dropout after what it wraps;
  a ``state_keep_prob`` below 1 drops the recurrent state, which a StackedRNN cannot.
* ``ResidualWrapper`` adds the layer's input to its output; a dropout *inside* it (GNMT's
  ``ResidualWrapper(DropoutWrapper(cell))`` with a keep probability below 1) acts on the cell's
  input or output but not on the residual term, which a StackedRNN cannot express either.

The dropouts at each boundary (the output dropouts of layer k, then the input dropouts of
layer k+1) compose into one: independent masks scaled by ``1/keep`` multiply into a mask of
keep probability ``prod(keep)``, the same distribution as one dropout with that probability
(variational masks stay one per sequence).  The stack is exact when every boundary has the same
keep probability and kind, and nothing is dropped before the first layer or after the last.
Keep probabilities of 1.0 are no dropout.  ``seed`` is not carried over: the stack draws from
PyTorch's generator.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .wrappers import DropoutWrapper, ResidualWrapper, is_wrapper

__all__ = ["LayerForm", "NotExact", "layer_form", "stack_dropout"]


class NotExact(ValueError):
    """The wrappers' dropout has no StackedRNN equivalent (the message says why)."""


class Drop(NamedTuple):
    keep: float
    variational: bool


class LayerForm(NamedTuple):
    """A wrapped layer as ``output dropouts(cell(input dropouts(x)) [+ input dropouts(x)])``."""

    inputs: tuple[Drop, ...]
    residual: bool
    outputs: tuple[Drop, ...]
    exact: bool = True  # False: a dropout that no StackedRNN has (``why`` says which)
    why: str = ""


def layer_form(wrapped: Any, where: str) -> LayerForm:
    """The form of one layer given as a cell under wrappers."""
    chain = []
    while is_wrapper(wrapped):
        chain.append(wrapped)
        wrapped = wrapped.cell
    form = LayerForm((), False, ())
    for wrapper in reversed(chain):  # innermost first
        form = _wrap(form, wrapper, where)
    return form


def _wrap(form: LayerForm, wrapper: Any, where: str) -> LayerForm:
    if isinstance(wrapper, DropoutWrapper):
        if wrapper.state_keep_prob < 1.0:
            form = _inexact(
                form,
                f"{where}: DropoutWrapper(state_keep_prob={wrapper.state_keep_prob}) "
                f"drops the recurrent state, which a StackedRNN never does",
            )
        var = wrapper.variational_recurrent
        ins = (Drop(wrapper.input_keep_prob, var),) if wrapper.input_keep_prob < 1.0 else ()
        outs = (Drop(wrapper.output_keep_prob, var),) if wrapper.output_keep_prob < 1.0 else ()
        return form._replace(inputs=ins + form.inputs, outputs=form.outputs + outs)
    if not isinstance(wrapper, ResidualWrapper):
        raise TypeError(f"{where}: unknown wrapper {type(wrapper).__name__}")
    if wrapper.residual_fn is not None:
        raise NotExact(
            f"{where}: ResidualWrapper(residual_fn=...) has no StackedRNN equivalent "
            f"(a StackedRNN adds the input)"
        )
    if form.residual:
        raise NotExact(
            f"{where}: two ResidualWrappers add the input twice, which a StackedRNN "
            f"cannot (it adds it once)"
        )
    if form.inputs or form.outputs:
        form = _inexact(
            form,
            f"{where}: a DropoutWrapper inside a ResidualWrapper drops the cell's "
            f"input or output but not the residual term; a StackedRNN drops the "
            f"sum between layers",
        )
    return form._replace(residual=True)


def _inexact(form: LayerForm, why: str) -> LayerForm:
    return form if not form.exact else form._replace(exact=False, why=why)


def stack_dropout(layers: list[tuple[LayerForm, LayerForm | None]]) -> tuple[float, bool]:
    """``(dropout, variational_dropout)`` of the StackedRNN equivalent to ``layers`` (per layer
    the forward form and the backward one or ``None``); :class:`NotExact` if there is none."""
    for fw, bw in layers:
        for form in (fw, bw):
            if form is not None and not form.exact:
                raise NotExact(form.why)
    first, last = layers[0], layers[-1]
    if first[0].inputs or (first[1] is not None and first[1].inputs):
        raise NotExact(
            "layer 0: an input dropout drops the stack's input, which a StackedRNN never does"
        )
    if last[0].outputs or (last[1] is not None and last[1].outputs):
        raise NotExact(
            f"layer {len(layers) - 1}: an output dropout on the top layer drops the stack's "
            f"outputs, which a StackedRNN never does (it drops between layers)"
        )
    boundaries = [_boundary(k, layers[k], layers[k + 1]) for k in range(len(layers) - 1)]
    if any(
        not math.isclose(b[0], boundaries[0][0], rel_tol=1e-9) or b[1] != boundaries[0][1]
        for b in boundaries
    ):
        described = ", ".join(f"{k}->{k + 1}: {_describe(d)}" for k, d in enumerate(boundaries))
        raise NotExact(
            f"the dropout between layers differs ({described}); a StackedRNN has one "
            f"probability and one kind for every boundary"
        )
    keep, variational = boundaries[0] if boundaries else (1.0, False)
    return (0.0, False) if keep >= 1.0 else (1.0 - keep, variational)


def _boundary(
    k: int, below: tuple[LayerForm, LayerForm | None], above: tuple[LayerForm, LayerForm | None]
) -> tuple[float, bool]:
    """The one dropout between layer ``k`` and ``k + 1``: ``(keep, variational)``."""
    fw, bw = below
    drops = list(fw.outputs)
    if bw is not None and _describe_all(bw.outputs) != _describe_all(fw.outputs):
        raise NotExact(
            f"layer {k}: the forward and backward cells drop their outputs differently "
            f"({_describe_all(fw.outputs)} and {_describe_all(bw.outputs)})"
        )
    up_fw, up_bw = above
    if up_bw is not None and (up_fw.inputs or up_bw.inputs):
        raise NotExact(
            f"layer {k + 1}: the forward and backward cells of a bidirectional layer drop "
            f"its input each with their own masks; a StackedRNN drops it once for both"
        )
    drops += list(up_fw.inputs)
    if not drops:
        return (1.0, False)
    if len({d.variational for d in drops}) > 1:
        raise NotExact(
            f"between layers {k} and {k + 1}: variational and per-step dropouts together "
            f"are not one dropout"
        )
    return (math.prod(d.keep for d in drops), drops[0].variational)


def _describe(boundary: tuple[float, bool]) -> str:
    keep, variational = boundary
    return "none" if keep >= 1.0 else f"keep {keep:g}" + (" variational" if variational else "")


def _describe_all(drops: tuple[Drop, ...]) -> str:
    return "none" if not drops else " then ".join(_describe((d.keep, d.variational)) for d in drops)
