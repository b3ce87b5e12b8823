"""The ONNX translation of the ``rnnfuse::layer`` operator (onnxscript, traced).

:func:`layer_onnx` is what ``torch.onnx.export(..., dynamo=True)`` calls for each
``torch.ops.rnnfuse.layer`` node: ONNX ``LSTM``/``GRU``/``RNN`` with ``sequence_lens``, or an
ONNX ``Loop`` (:mod:`rnnfuse._onnx_loop`) for what ONNX's ``LSTM`` cannot express; the
semantics are described in :mod:`rnnfuse.export`.  It is registered in ``torch.onnx``'s
default registry by :mod:`rnnfuse._onnx_registration` and passed explicitly by
:func:`rnnfuse.export.onnx_translation_table`.  This module imports no other rnnfuse module
(onnxscript only when called), so the kernels can name it without an import cycle.
"""

from __future__ import annotations

from typing import Any


def needs_loop(
    kind: str, n_weights: int, peepholes: bool, cell_clip: float | None, proj_clip: float | None
) -> bool:
    """Whether the operator's LSTM has what ONNX's ``LSTM`` cannot express (a cell clip, a
    projection): then it is exported as a ``Loop`` over time (:mod:`rnnfuse._onnx_loop`)."""
    projected = (kind == "lstm" and n_weights == 5) or (
        kind == "bptt_lstm" and n_weights == 3 + int(peepholes) + 1
    )
    return cell_clip is not None or proj_clip is not None or projected


def lstm_loop_onnx(
    op, x_tm, lens64, state, weights, kind, reverse, peepholes, cell_clip, proj_clip
):
    """An LSTM with a cell clip or a projection: :func:`rnnfuse._onnx_loop.lstm_loop`, the
    backward direction by ONNX's ``ReverseSequence`` within each length (as TF1's)."""
    from ._onnx_loop import lstm_loop

    if kind == "lstm":
        w_ih, w_hh, b_ih, b_hh = weights[:4]
        bias, peep, w_hr = op.Add(b_ih, b_hh), None, (weights[4] if len(weights) == 5 else None)
    else:
        w_ih, bias, w_hh = weights[:3]
        peep = weights[3] if peepholes else None
        w_hr = weights[-1] if len(weights) == 3 + int(peepholes) + 1 else None
    hidden = op.Shape(state[0], start=1)  # [H]
    if peep is None:
        peep = op.ConstantOfShape(op.Concat(op.Constant(value_ints=[3]), hidden, axis=0))
    if w_hr is None:
        w_hr = op.EyeLike(op.ConstantOfShape(op.Concat(hidden, hidden, axis=0)))
    clips = [
        op.Constant(value_float=float("inf") if v is None else float(v))
        for v in (cell_clip, proj_clip)
    ]
    if reverse:  # lengths of 0 reversed as 1: those rows never run (the loop masks them)
        within = op.Max(lens64, op.Constant(value_ints=[1]))
        x_tm = op.ReverseSequence(x_tm, within, batch_axis=1, time_axis=0)
    y, c, h = lstm_loop(x_tm, lens64, state[0], state[1], w_ih, bias, w_hh, peep, w_hr, *clips)
    if reverse:
        y = op.ReverseSequence(y, within, batch_axis=1, time_axis=0)
    return [op.Transpose(y, perm=[1, 0, 2]), c, h]


def layer_onnx(x, lengths, state, weights, kind, reverse, peepholes, cell_clip, proj_clip):
    """The ONNX translation of ``rnnfuse::layer`` (onnxscript, traced: ``kind`` and the
    options are Python values)."""
    from onnxscript import opset18 as op

    def gates(w, order, count):  # rows of `count` gate blocks, reordered
        parts = op.Split(w, axis=0, num_outputs=count)
        return op.Concat(*[parts[i] for i in order], axis=0)

    def one(t):
        return op.Unsqueeze(t, op.Constant(value_ints=[0]))

    x_tm = op.Transpose(x, perm=[1, 0, 2])
    shape = op.Shape(x)
    batch, steps = op.Slice(shape, [0], [1]), op.Slice(shape, [1], [2])
    full = op.Expand(steps, batch)
    lens64 = op.Slice(op.Concat(lengths, full, axis=0), op.Constant(value_ints=[0]), batch)
    lens = op.Cast(lens64, to=6)  # int32
    if kind in ("lstm", "bptt_lstm") and needs_loop(
        kind, len(weights), peepholes, cell_clip, proj_clip
    ):
        return lstm_loop_onnx(
            op, x_tm, lens64, state, weights, kind, reverse, peepholes, cell_clip, proj_clip
        )
    direction = "reverse" if reverse else "forward"
    h0 = one(state[-1])
    if kind in ("lstm", "bptt_lstm"):
        if kind == "lstm":
            w_ih, w_hh, b_ih, b_hh = weights[:4]
        else:
            w_ih, b_ih, w_hh = weights[:3]
            b_hh = op.Mul(b_ih, op.Constant(value_float=0.0))
        order = [0, 3, 1, 2]  # i, f, g, o -> i, o, f, c
        w, r = one(gates(w_ih, order, 4)), one(gates(w_hh, order, 4))
        b = one(op.Concat(gates(b_ih, order, 4), gates(b_hh, order, 4), axis=0))
        args = [x_tm, w, r, b, lens, h0, one(state[0])]
        if peepholes:  # (3, H) in the order i, f, o -> ONNX's P = [i, o, f] (3H,)
            p = op.Gather(weights[3], op.Constant(value_ints=[0, 2, 1]), axis=0)
            args.append(one(op.Reshape(p, op.Constant(value_ints=[-1]))))
        y, y_h, y_c = op.LSTM(*args, direction=direction, hidden_size=_size(state[0]))
        finals = [y_c, y_h]
    elif kind in ("gru", "bptt_gru"):
        if kind == "gru":
            w_ih, w_hh, b_ih, b_hh = weights
            before_reset = 1
        else:
            w_ih, b_ih, w_hh = weights
            b_hh = op.Mul(b_ih, op.Constant(value_float=0.0))
            before_reset = 0
        order = [1, 0, 2]  # r, z, n -> z, r, h
        w, r = one(gates(w_ih, order, 3)), one(gates(w_hh, order, 3))
        b = one(op.Concat(gates(b_ih, order, 3), gates(b_hh, order, 3), axis=0))
        y, y_h = op.GRU(
            x_tm,
            w,
            r,
            b,
            lens,
            h0,
            direction=direction,
            linear_before_reset=before_reset,
            hidden_size=_size(state[-1]),
        )
        finals = [y_h]
    else:
        w_ih, w_hh, b_ih, b_hh = weights
        b = one(op.Concat(b_ih, b_hh, axis=0))
        act = "Relu" if kind == "rnn_relu" else "Tanh"
        y, y_h = op.RNN(
            x_tm,
            one(w_ih),
            one(w_hh),
            b,
            lens,
            h0,
            direction=direction,
            activations=[act],
            hidden_size=_size(state[-1]),
        )
        finals = [y_h]
    y = op.Transpose(op.Squeeze(y, op.Constant(value_ints=[1])), perm=[1, 0, 2])
    # a zero length keeps the initial state (ONNX leaves it unspecified)
    empty = op.Unsqueeze(op.Equal(lens64, op.Constant(value_int=0)), op.Constant(value_ints=[1]))
    finals = [
        op.Where(empty, s, op.Squeeze(f, op.Constant(value_ints=[0])))
        for s, f in zip(state, finals, strict=True)
    ]
    return [y, *finals]


def _size(t: Any) -> int | None:
    shape = getattr(t, "shape", None)
    if shape is None:
        return None
    dim = shape[-1]
    return int(dim) if isinstance(dim, int) else None
