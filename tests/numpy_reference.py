"""A NumPy reference of every cell's equations and of TF1 ``dynamic_rnn``, for parity tests.

Written from the equations (TF1 ``LSTMCell``/``GRUCell``/``BasicRNNCell``, PyTorch's
``nn.GRU``), not from rnnfuse's torch code: weights are kept *per gate* in dictionaries
(``W_i`` input weights, ``U_i`` recurrent weights, ``b_i`` bias, ...), so no stacked gate
order is assumed here.  Tests build random per-gate weights with :func:`random_lstm` and
friends, run this reference, and load the same numbers into the cells under test with
:func:`load_lstm` and friends, which is where rnnfuse's documented stacked gate orders
(LSTM i, f, g, o; GRU r, z, n) are applied.

Sequences are run one at a time over their true length (no masking), which is a different
algorithm from the masked batch loop under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

Params = dict[str, np.ndarray]
StepFn = Callable[[np.ndarray, Any], tuple[np.ndarray, Any]]

LSTM_GATES = ("i", "f", "g", "o")
GRU_GATES = ("r", "z", "n")


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _erf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return np.vectorize(erf)(x)


#: each activation from its published formula (Keras 2/3 sources, PyTorch docs)
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "hard_sigmoid": lambda x: np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,  # Keras 3
    "hard_sigmoid_keras2": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),  # tf_keras backend
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "linear": lambda x: x,
    "softsign": lambda x: x / (1.0 + np.abs(x)),
    "softplus": lambda x: np.log1p(np.exp(x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "selu": lambda x: 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
    "silu": lambda x: x * sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "exponential": np.exp,
    "hard_silu": lambda x: x * np.minimum(np.maximum(x + 3.0, 0.0), 6.0) / 6.0,
    "mish": lambda x: x * np.tanh(np.log1p(np.exp(x))),
}


# ------------------------------------------------------------------------------ steps


def lstm_step(
    x: np.ndarray,
    state: tuple[np.ndarray, np.ndarray],
    p: Params,
    *,
    forget_bias: float = 0.0,
    cell_clip: float | None = None,
    proj_clip: float | None = None,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """One TF1 ``LSTMCell`` step; ``state`` is ``(c, h)``; returns ``(h', (c', h'))``.

    Peepholes are used when ``p`` holds ``P_i``, ``P_f``, ``P_o``; a projection when it
    holds ``W_proj`` (P, H).  ``recurrent_activation`` acts on the gates i, f, o,
    ``activation`` on the candidate and on c' (Keras' LSTMCell).
    """
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    c, h = state
    pre = {g: x @ p[f"W_{g}"].T + h @ p[f"U_{g}"].T + p[f"b_{g}"] for g in LSTM_GATES}
    peep = "P_i" in p
    i = gate(pre["i"] + (p["P_i"] * c if peep else 0.0))
    f = gate(pre["f"] + forget_bias + (p["P_f"] * c if peep else 0.0))
    new_c = f * c + i * act(pre["g"])
    if cell_clip is not None:
        new_c = np.clip(new_c, -cell_clip, cell_clip)
    o = gate(pre["o"] + (p["P_o"] * new_c if peep else 0.0))
    new_h = o * act(new_c)
    if "W_proj" in p:
        new_h = new_h @ p["W_proj"].T
        if proj_clip is not None:
            new_h = np.clip(new_h, -proj_clip, proj_clip)
    return new_h, (new_c, new_h)


def gru_step(
    x: np.ndarray,
    h: np.ndarray,
    p: Params,
    *,
    reset_after: bool = True,
    activation: str = "tanh",
    recurrent_activation: str = "sigmoid",
) -> tuple[np.ndarray, np.ndarray]:
    """One GRU step; ``reset_after`` is PyTorch/Keras-default, else TF1's ``GRUCell``.

    Biases: ``b_r, b_z, b_n`` on the input side; with ``reset_after`` also ``c_r, c_z,
    c_n`` on the recurrent side (``c_n`` inside the reset).  ``recurrent_activation`` acts
    on r and z, ``activation`` on n.
    """
    act, gate = ACTIVATIONS[activation], ACTIVATIONS[recurrent_activation]
    rec_bias = {g: p.get(f"c_{g}", 0.0) for g in GRU_GATES}
    r = gate(x @ p["W_r"].T + p["b_r"] + h @ p["U_r"].T + rec_bias["r"])
    z = gate(x @ p["W_z"].T + p["b_z"] + h @ p["U_z"].T + rec_bias["z"])
    if reset_after:
        n = act(x @ p["W_n"].T + p["b_n"] + r * (h @ p["U_n"].T + rec_bias["n"]))
    else:
        n = act(x @ p["W_n"].T + p["b_n"] + (r * h) @ p["U_n"].T)
    new_h = (1.0 - z) * n + z * h
    return new_h, new_h


def rnn_step(
    x: np.ndarray, h: np.ndarray, p: Params, *, nonlinearity: str = "tanh"
) -> tuple[np.ndarray, np.ndarray]:
    """One Elman step: ``h' = act(x W^T + h U^T + b)``."""
    pre = x @ p["W"].T + h @ p["U"].T + p["b"]
    new_h = ACTIVATIONS[nonlinearity](pre)
    return new_h, new_h


# ------------------------------------------------------------------------------ sequences


def slice_state(state: Any, b: int) -> Any:
    """Row ``b`` of a state, kept 2-D (``(1, H)``)."""
    if isinstance(state, tuple):
        return tuple(slice_state(s, b) for s in state)
    return state[b : b + 1]


def stack_rows(states: Sequence[Any]) -> Any:
    """Inverse of :func:`slice_state` over all rows."""
    if isinstance(states[0], tuple):
        return tuple(stack_rows([s[i] for s in states]) for i in range(len(states[0])))
    return np.concatenate(states, axis=0)


def dynamic_rnn(
    step: StepFn,
    x: np.ndarray,
    initial: Any,
    out_size: int,
    lengths: Sequence[int] | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, Any]:
    """TF1 ``dynamic_rnn`` over batch-major ``x`` (B, T, F), one sequence at a time.

    Outputs past a length are zero; the final state is the state after the last true step
    (the initial state for a zero length).  ``reverse`` runs each sequence backwards
    within its length and puts the outputs back in input order (TF1 ``reverse_sequence``).
    """
    batch, steps = x.shape[:2]
    lengths = [steps] * batch if lengths is None else list(lengths)
    outputs = np.zeros((batch, steps, out_size))
    finals = []
    for b in range(batch):
        n = lengths[b]
        order = list(range(n))[::-1] if reverse else list(range(n))
        state = slice_state(initial, b)
        for t in order:
            out, state = step(x[b : b + 1, t], state)
            outputs[b, t] = out[0]
        finals.append(state)
    return outputs, stack_rows(finals)


def stacked_rnn(
    layers: Sequence[tuple[StepFn, int]],
    x: np.ndarray,
    initials: Sequence[Any],
    lengths: Sequence[int] | None = None,
    backward: Sequence[tuple[StepFn, int]] | None = None,
    backward_initials: Sequence[Any] | None = None,
    merges: Sequence[str] | None = None,
) -> tuple[np.ndarray, Any]:
    """A stack of layers, each ``(step, output_size)``; layer k+1 reads layer k's outputs.

    With ``backward`` each layer also runs a backward direction and the next layer reads
    ``[fw | bw]`` (PyTorch's / TF ``stack_bidirectional_dynamic_rnn``), or with ``merges``
    (one per layer) Keras' ``Bidirectional`` merge: ``fw + bw``, ``(fw + bw) / 2``,
    ``fw * bw``.  Returns ``(outputs, state)`` with state a tuple per layer or ``(fw, bw)``.
    """
    join = {
        "concat": lambda a, b: np.concatenate([a, b], axis=-1),
        "sum": lambda a, b: a + b,
        "ave": lambda a, b: (a + b) / 2,
        "mul": lambda a, b: a * b,
    }
    fw_final, bw_final = [], []
    inputs = x
    for k, (step, size) in enumerate(layers):
        out, final = dynamic_rnn(step, inputs, initials[k], size, lengths)
        fw_final.append(final)
        if backward is not None:
            bw_step, bw_size = backward[k]
            out_bw, final_bw = dynamic_rnn(
                bw_step, inputs, backward_initials[k], bw_size, lengths, True
            )
            bw_final.append(final_bw)
            out = join["concat" if merges is None else merges[k]](out, out_bw)
        inputs = out
    state = (tuple(fw_final), tuple(bw_final)) if backward is not None else tuple(fw_final)
    return inputs, state


# ------------------------------------------------------------------------------ weights


def _uniform(rng: np.random.Generator, scale: float, *shape: int) -> np.ndarray:
    return rng.uniform(-scale, scale, size=shape)


def random_lstm(
    rng: np.random.Generator,
    input_size: int,
    hidden: int,
    *,
    peepholes: bool = False,
    proj_size: int | None = None,
    scale: float = 0.5,
) -> Params:
    """Per-gate LSTM weights; recurrent weights read ``proj_size`` features if given."""
    rec = proj_size or hidden
    p: Params = {}
    for g in LSTM_GATES:
        p[f"W_{g}"] = _uniform(rng, scale, hidden, input_size)
        p[f"U_{g}"] = _uniform(rng, scale, hidden, rec)
        p[f"b_{g}"] = _uniform(rng, scale, hidden)
    if peepholes:
        for g in ("i", "f", "o"):
            p[f"P_{g}"] = _uniform(rng, scale, hidden)
    if proj_size:
        p["W_proj"] = _uniform(rng, scale, proj_size, hidden)
    return p


def random_gru(
    rng: np.random.Generator,
    input_size: int,
    hidden: int,
    *,
    reset_after: bool = True,
    scale: float = 0.5,
) -> Params:
    """Per-gate GRU weights; recurrent biases ``c_*`` only with ``reset_after``."""
    p: Params = {}
    for g in GRU_GATES:
        p[f"W_{g}"] = _uniform(rng, scale, hidden, input_size)
        p[f"U_{g}"] = _uniform(rng, scale, hidden, hidden)
        p[f"b_{g}"] = _uniform(rng, scale, hidden)
        if reset_after:
            p[f"c_{g}"] = _uniform(rng, scale, hidden)
    return p


def random_rnn(
    rng: np.random.Generator, input_size: int, hidden: int, *, scale: float = 0.5
) -> Params:
    """Elman RNN weights."""
    return {
        "W": _uniform(rng, scale, hidden, input_size),
        "U": _uniform(rng, scale, hidden, hidden),
        "b": _uniform(rng, scale, hidden),
    }


def _set(param: torch.Tensor, value: np.ndarray) -> None:
    assert tuple(param.shape) == value.shape, (param.shape, value.shape)
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def load_lstm(cell: torch.nn.Module, p: Params) -> None:
    """Copy per-gate weights into an rnnfuse ``LSTMCell`` (stacked order i, f, g, o)."""
    _set(cell.weight_ih, np.concatenate([p[f"W_{g}"] for g in LSTM_GATES]))
    _set(cell.weight_hh, np.concatenate([p[f"U_{g}"] for g in LSTM_GATES]))
    _set(cell.bias, np.concatenate([p[f"b_{g}"] for g in LSTM_GATES]))
    if "P_i" in p:
        _set(cell.w_i_diag, p["P_i"])
        _set(cell.w_f_diag, p["P_f"])
        _set(cell.w_o_diag, p["P_o"])
    if "W_proj" in p:
        _set(cell.weight_hr, p["W_proj"])


def load_gru(cell: torch.nn.Module, p: Params) -> None:
    """Copy per-gate weights into an rnnfuse ``GRUCell`` (stacked order r, z, n)."""
    _set(cell.weight_ih, np.concatenate([p[f"W_{g}"] for g in GRU_GATES]))
    _set(cell.weight_hh, np.concatenate([p[f"U_{g}"] for g in GRU_GATES]))
    input_bias = np.concatenate([p[f"b_{g}"] for g in GRU_GATES])
    if "c_r" in p:
        _set(cell.bias_ih, input_bias)
        _set(cell.bias_hh, np.concatenate([p[f"c_{g}"] for g in GRU_GATES]))
    else:
        _set(cell.bias, input_bias)


def load_rnn(cell: torch.nn.Module, p: Params) -> None:
    """Copy Elman weights into an rnnfuse ``RNNCell``."""
    _set(cell.weight_ih, p["W"])
    _set(cell.weight_hh, p["U"])
    _set(cell.bias, p["b"])


# ------------------------------------------------------------------------------ cell specs


def reference_for(
    cell: torch.nn.Module, rng: np.random.Generator, scale: float = 0.5
) -> tuple[StepFn, int]:
    """Random per-gate weights for ``cell``: load them into it and return the NumPy step.

    The step closes over the same numbers, so the reference and the cell compute the same
    function if and only if the cell's equations and gate order are right.
    """
    kind = cell.kind
    if kind == "lstm":
        p = random_lstm(
            rng,
            cell.input_size,
            cell.hidden_size,
            peepholes=cell.peepholes,
            proj_size=cell.proj_size,
            scale=scale,
        )
        load_lstm(cell, p)
        opts = dict(
            forget_bias=cell.forget_bias,
            cell_clip=cell.cell_clip,
            proj_clip=cell.proj_clip,
            activation=cell.activation,
            recurrent_activation=cell.recurrent_activation,
        )
        return (lambda x, s: lstm_step(x, s, p, **opts)), cell.output_size
    if kind == "gru":
        p = random_gru(
            rng, cell.input_size, cell.hidden_size, reset_after=cell.reset_after, scale=scale
        )
        load_gru(cell, p)
        acts = dict(activation=cell.activation, recurrent_activation=cell.recurrent_activation)
        return (
            lambda x, s: gru_step(x, s, p, reset_after=cell.reset_after, **acts)
        ), cell.hidden_size
    p = random_rnn(rng, cell.input_size, cell.hidden_size, scale=scale)
    load_rnn(cell, p)
    return (lambda x, s: rnn_step(x, s, p, nonlinearity=cell.nonlinearity)), cell.hidden_size


def state_to_numpy(state: Any) -> Any:
    """An rnnfuse state as nested tuples of arrays (``LSTMState`` → ``(c, h)``)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().numpy()
    return tuple(state_to_numpy(s) for s in state)


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two nested structures of arrays."""
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b), (type(b), len(b))
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    b = b.detach().cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0
