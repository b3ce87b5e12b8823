"""The LSTM that ONNX's ``LSTM`` operator cannot express, as an ONNX ``Loop`` over time.

ONNX's ``LSTM`` has no output projection, and its ``clip`` bounds the gates'
pre-activations, where TF1's ``cell_clip`` bounds the cell state.  :func:`lstm_loop` writes
the step of :func:`rnnfuse.cells.lstm.lstm_step` with every option (peepholes, cell clip,
projection, projection clip) in onnxscript; its ``for`` loop becomes an ONNX ``Loop`` whose
trip count is the input's time dimension, so batch and time stay dynamic.  Past a sequence's
length its state is carried and its output is zero, as the reference loop does.

Imported only while exporting (onnxscript is an optional dependency).  An option a cell does
not have is passed as its identity: zero peepholes, an identity projection, infinite clips
(exact: ``x + 0 c``, ``m I`` and ``clip(x, -inf, inf)`` equal ``x``).  The signature gives
ranks only: one function serves layers of different sizes in one model.
"""

from onnxscript import FLOAT, INT64, script
from onnxscript import opset18 as op


@script()
def lstm_loop(
    x_tm: FLOAT[None, None, None],
    lens: INT64[None],
    c0: FLOAT[None, None],
    h0: FLOAT[None, None],
    w_ih: FLOAT[None, None],
    bias: FLOAT[None],
    w_hh: FLOAT[None, None],
    peep: FLOAT[None, None],
    w_hr: FLOAT[None, None],
    cell_clip: FLOAT,
    proj_clip: FLOAT,
) -> tuple[FLOAT[None, None, None], FLOAT[None, None], FLOAT[None, None]]:
    """Time-major ``x_tm`` (T, B, F), ``lens`` (B,); gates in the order i, f, g, o, the
    forget bias in ``bias``; ``peep`` rows i, f, o.  Returns ``(outputs (T, B, P), c, h)``."""
    xw = op.Add(op.MatMul(x_tm, op.Transpose(w_ih, perm=[1, 0])), bias)
    n = op.Squeeze(op.Shape(x_tm, start=0, end=1))
    w_hh_t = op.Transpose(w_hh, perm=[1, 0])
    w_hr_t = op.Transpose(w_hr, perm=[1, 0])
    p_i = op.Gather(peep, 0, axis=0)
    p_f = op.Gather(peep, 1, axis=0)
    p_o = op.Gather(peep, 2, axis=0)
    lens_col = op.Unsqueeze(lens, [1])
    c = c0
    h = h0
    ys = op.SequenceEmpty(dtype=1)
    for t in range(n):
        gates = op.Add(op.Gather(xw, t, axis=0), op.MatMul(h, w_hh_t))
        i, f, g, o = op.Split(gates, axis=1, num_outputs=4)
        i = op.Sigmoid(op.Add(i, op.Mul(p_i, c)))
        f = op.Sigmoid(op.Add(f, op.Mul(p_f, c)))
        c_new = op.Clip(op.Add(op.Mul(f, c), op.Mul(i, op.Tanh(g))), op.Neg(cell_clip), cell_clip)
        o = op.Sigmoid(op.Add(o, op.Mul(p_o, c_new)))
        h_new = op.Clip(op.MatMul(op.Mul(o, op.Tanh(c_new)), w_hr_t), op.Neg(proj_clip), proj_clip)
        alive = op.Less(op.Cast(t, to=7), lens_col)
        c = op.Where(alive, c_new, c)
        h = op.Where(alive, h_new, h)
        ys = op.SequenceInsert(ys, op.Where(alive, h_new, op.ConstantOfShape(op.Shape(h_new))))
    y = op.ConcatFromSequence(ys, axis=0, new_axis=1)
    return y, c, h
