"""Which TF1 cell a scope holds when its name does not say: cells built with ``name=``.

``LSTMCell(n, name="cell0")`` keeps its variables under ``cell0/`` instead of ``lstm_cell/``.
The variables then tell the kind: ``gates/*`` and ``candidate/*`` a GRU, peepholes or a
projection an ``LSTMCell``, and ``kernel`` [in + H, C] with ``bias`` [C] an LSTM of C/4 units
or a ``BasicRNNCell`` of C units, whichever fits (both, when C is a multiple of 4 and the
input is large enough: then the caller names it, ``cell_types``).

>>> kinds_that_fit({"kernel": (7, 16), "bias": (16,)})
[('lstm_cell', 'an LSTM of 4 units')]
>>> [kind for kind, _ in kinds_that_fit({"kernel": (7, 4), "bias": (4,)})]
['lstm_cell', 'basic_rnn_cell']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OTHER_CLASS_SCOPES", "cell_types_map", "kinds_that_fit"]

#: Scopes of TF1/contrib cell classes other than the four: their math differs (or is not
#: checked here), so their variables are not read as a cell built with ``name=`` would be.
OTHER_CLASS_SCOPES = frozenset(
    {
        "lstm_block_cell",
        "lstm_block_wrapper",
        "gru_block_cell",
        "layer_norm_basic_lstm_cell",
        "layer_norm_lstm_cell",
        "ugrnn_cell",
        "nas_cell",
        "coupled_input_forget_gate_lstm_cell",
        "time_freq_lstm_cell",
        "grid_lstm_cell",
        "bidirectional_grid_lstm_cell",
        "glstm_cell",
        "intersection_rnn_cell",
        "phased_lstm_cell",
        "sru_cell",
        "ind_rnn_cell",
        "ind_gru_cell",
        "ind_lstm_cell",
        "ind_recurrent_cell",
        "weight_norm_lstm_cell",
        "minimal_rnn_cell",
        "cfn_cell",
        "conv_lstm_cell",
        "conv1d_lstm_cell",
        "conv2d_lstm_cell",
        "conv3d_lstm_cell",
        "attention_cell_wrapper",
        "highway_wrapper",
        "lstm_cell_with_clip",
    }
)

_GRU = {"gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"}
_LSTM_ONLY = {"projection/kernel", "w_i_diag", "w_f_diag", "w_o_diag"}


def kinds_that_fit(roles: Mapping[str, tuple[int, ...]]) -> list[tuple[str, str]]:
    """The cell kinds (variable scope names) whose variables ``{role: shape}`` could be, each
    with a description of the sizes it would have."""
    if _GRU <= roles.keys():
        return [("gru_cell", "a GRUCell")]
    if roles.keys() & _LSTM_ONLY:
        return [("lstm_cell", "an LSTMCell")]
    fits = []
    if roles.keys() >= {"kernel", "bias"} and len(roles["kernel"]) == 2:
        rows, cols = roles["kernel"]
        if cols % 4 == 0 and rows > cols // 4:
            fits.append(("lstm_cell", f"an LSTM of {cols // 4} units"))
        if rows > cols:
            fits.append(("basic_rnn_cell", f"a BasicRNNCell of {cols} units"))
    return fits


def cell_types_map(cell_types: Any, classes: Mapping[str, str]) -> dict[str, str]:
    """``cell_types`` (``{cell scope name or path: TF class name}``) checked, as
    ``{name: variable scope kind}``; ``classes`` maps kinds to class names."""
    if cell_types is None:
        return {}
    if not isinstance(cell_types, Mapping):
        raise TypeError(
            f"cell_types: expected a mapping {{cell scope name: TF class name}}, e.g. "
            f"{{'cell0': 'LSTMCell'}}, got {type(cell_types).__name__}"
        )
    kinds = {cls: kind for kind, cls in classes.items()}
    bad = {k: v for k, v in cell_types.items() if v not in kinds and v not in classes}
    if bad:
        raise ValueError(f"cell_types: expected TF class names {sorted(kinds)}, got {bad}")
    return {str(k).strip("/"): str(kinds.get(v, v)) for k, v in cell_types.items()}
