"""Keras 2 (.h5, weights-only .h5, SavedModel, tf-keras .keras) and Keras 3 files against the
numbers Keras computed (tests/fixtures/legacy; see its README for the masking rules).

Keras' plain LSTM/GRU repeat the previous output at masked steps, rnnfuse (as TF1's
``dynamic_rnn``) writes zeros there: outputs are compared on the valid steps, and the zeros
checked; Bidirectional layers write zeros in Keras too, so they are compared everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnfuse import StackedRNN, stack_from_keras
from rnnfuse.convert.keras import MergedBidirectional, lengths_from_masking

LEGACY = Path(__file__).parents[1] / "fixtures" / "legacy"
TOL = 1e-6


def io(case: str) -> dict[str, np.ndarray]:
    with np.load(LEGACY / case / "io.npz") as data:
        return {k: data[k] for k in data.files}


def valid(lengths: torch.Tensor, steps: int) -> np.ndarray:
    return (torch.arange(steps)[None, :] < lengths[:, None]).numpy()


def close(got: torch.Tensor, want: np.ndarray, mask: np.ndarray | None = None) -> float:
    got = got.detach().numpy()
    assert got.shape == want.shape
    if mask is not None:
        assert np.all(got[~mask] == 0)  # rnnfuse: zeros past a length
        got, want = got[mask], want[mask]
    err = float(np.abs(got - want).max())
    assert err <= TOL, err
    return err


def one_layer(stack: StackedRNN, k: int) -> StackedRNN:
    bw = stack.backward_cell(k)
    return StackedRNN.from_cells([stack.layers[k]], backward_cells=None if bw is None else [bw])


@pytest.mark.parametrize(
    "case, path",
    [
        ("keras2_h5_full", "model.h5"),
        ("keras2_h5_weights", "weights.h5"),
        ("keras2_keras_v2", "model.keras"),
    ],
)
def test_keras2_lstm_gru(case, path):
    data = io(case)
    x = torch.from_numpy(data["x"])
    lengths = lengths_from_masking(x)
    assert (
        lengths.tolist() == json.loads((LEGACY / case / "case.json").read_text())["mask"]["lengths"]
    )
    stack = stack_from_keras(LEGACY / case / path, layer_names=["lstm", "gru"])
    mask = valid(lengths, x.shape[1])
    with torch.no_grad():
        out, (lstm, gru) = stack(x, lengths)
        lstm_out, _ = one_layer(stack, 0)(x, lengths)
    assert (
        data["gru/outputs"].ndim == 2
    )  # return_sequences=False: the output at the last valid step
    close(gru, data["gru/outputs"])
    close(out[torch.arange(3), lengths - 1], data["gru/outputs"])
    close(lstm_out, data["lstm/outputs"], mask)
    (
        close(lstm.h, data["lstm/state/h"]),
        close(lstm.c, data["lstm/state/c"]),
        close(gru, data["gru/state/h"]),
    )


def test_keras2_bidirectional_then_lstm_is_one_module():
    data = io("keras2_bidirectional_lstm")
    x = torch.from_numpy(data["x"])
    lengths = lengths_from_masking(x)
    stack = stack_from_keras(LEGACY / "keras2_bidirectional_lstm" / "model.h5")
    assert stack.bidirectional == (True, False)
    with torch.no_grad():
        out, ((fw, bw), top) = stack(x, lengths)
        bi_out, _ = one_layer(stack, 0)(x, lengths)
    close(bi_out, data["bidirectional/outputs"])  # zeros at masked steps in Keras too
    close(out[torch.arange(3), lengths - 1], data["outputs"])  # the top LSTM's last output
    for key, t in (
        ("bidirectional/state/fw/h", fw.h),
        ("bidirectional/state/fw/c", fw.c),
        ("bidirectional/state/bw/h", bw.h),
        ("bidirectional/state/bw/c", bw.c),
        ("lstm_top/state/h", top.h),
        ("lstm_top/state/c", top.c),
    ):
        close(t, data[key])


def check_rnn_cells(case: str, file: str, stem: str, layers: int) -> None:
    """An ``RNN`` over cells read from ``case/file`` against the outputs and states Keras
    computed for ``x`` and ``ragged/x`` (io keys ``[ragged/]<stem>/...``)."""
    data = io(case)
    stack = stack_from_keras(LEGACY / case / file)
    assert stack.num_layers == layers
    for prefix, x, lengths in (
        ("", data["x"], None),
        ("ragged/", data["ragged/x"], data["ragged/lengths"]),
    ):
        x = torch.from_numpy(x)
        lengths = None if lengths is None else torch.from_numpy(lengths)
        mask = None if lengths is None else valid(lengths, x.shape[1])
        with torch.no_grad():
            out, state = stack(x, lengths)
        close(out, data[f"{prefix}{stem}/outputs"], mask)
        if layers == 1:
            close(state[0].h, data[f"{prefix}{stem}/state/h"])
            close(state[0].c, data[f"{prefix}{stem}/state/c"])
            continue
        for k, s in enumerate(state):
            if isinstance(s, torch.Tensor):
                close(s, data[f"{prefix}{stem}/state/{k}/h"])
            else:
                close(s.h, data[f"{prefix}{stem}/state/{k}/h"])
                close(s.c, data[f"{prefix}{stem}/state/{k}/c"])


@pytest.mark.parametrize(
    "stem, layers", [("rnn_lstmcell", 1), ("rnn_stacked", 2), ("rnn_cell_list", 2)]
)
def test_keras3_rnn_cells(stem, layers):
    check_rnn_cells("keras3_rnn_cells", f"{stem}.keras", stem, layers)


@pytest.mark.parametrize(
    "file, stem, layers, kinds",
    [
        ("rnn_lstmcell.h5", "rnn_lstmcell", 1, ["lstm"]),
        ("rnn_stacked.h5", "rnn_stacked", 2, ["lstm", "gru"]),
        ("rnn_cell_list.h5", "rnn_cell_list", 2, ["lstm", "gru"]),
        ("rnn_stacked_weights.h5", "rnn_stacked", 2, ["lstm", "gru"]),  # weights only: from shapes
    ],
)
def test_keras2_h5_rnn_cells(file, stem, layers, kinds):
    check_rnn_cells("keras2_rnn_cells", file, stem, layers)
    stack = stack_from_keras(LEGACY / "keras2_rnn_cells" / file)
    assert [c.kind for c in stack.layers] == kinds
    reset_after = [getattr(c, "reset_after", None) for c in stack.layers][1:]
    assert reset_after == ([] if layers == 1 else [stem == "rnn_cell_list"])


def test_keras2_h5_rnn_cells_mismatched_scopes_are_refused(tmp_path):
    import shutil

    import h5py

    path = tmp_path / "rnn.h5"
    shutil.copy(LEGACY / "keras2_rnn_cells" / "rnn_stacked.h5", path)
    with h5py.File(path, "r+") as f:  # the config now names 3 cells, the weights hold 2
        config = json.loads(f.attrs["model_config"])
        rnn = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "RNN")
        cells = rnn["config"]["cell"]["config"]["cells"]
        cells.append(cells[0])
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(
        ValueError, match=r"RNN layer 'rnn' has 3 cells but weights in 2 cell scopes"
    ):
        stack_from_keras(path)


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", "none"])
def test_keras3_merge_modes(mode):
    data = io("keras3_merge_modes")
    module = stack_from_keras(
        LEGACY / "keras3_merge_modes" / "merge_modes.keras", layer_names=[f"bi_{mode}"]
    )
    assert isinstance(module, MergedBidirectional if mode == "none" else StackedRNN)
    for prefix in ("", "ragged/"):
        x = torch.from_numpy(data[f"{prefix}x"])
        lengths = torch.from_numpy(data["ragged/lengths"]) if prefix else None
        key = f"{prefix}merge_modes/bi_{mode}"
        with torch.no_grad():
            out, state = module(x, lengths)
        if mode == "none":
            close(out[0], data[f"{key}/outputs/fw"]), close(out[1], data[f"{key}/outputs/bw"])
        else:
            close(out, data[f"{key}/outputs"])
        ((fw, bw),) = state  # one BidirectionalState
        for side, s in (("fw", fw), ("bw", bw)):
            close(s.h, data[f"{key}/state/{side}/h"]), close(s.c, data[f"{key}/state/{side}/c"])


def test_masking_with_holes_is_refused():
    x = torch.ones(2, 4, 3)
    x[1, 2] = 0.0  # [T, T, F, T]
    with pytest.raises(ValueError, match=r"rows \[1\] has holes .*\[True, True, False, True\]"):
        lengths_from_masking(x)
    x[1, 3] = 0.0
    assert lengths_from_masking(x).tolist() == [4, 2]


@pytest.mark.parametrize("case", ["keras2_savedmodel", "keras2_savedmodel_notraces"])
def test_keras2_savedmodel(case):
    data = io(case)
    x = torch.from_numpy(data["x"])
    lengths = lengths_from_masking(x) if case.endswith("notraces") else None
    stack = stack_from_keras(LEGACY / case / "saved_model", layer_names=["lstm"])
    with torch.no_grad():
        out, (state,) = stack(x, lengths)
    mask = None if lengths is None else valid(lengths, x.shape[1])
    close(out, data["lstm/outputs"], mask)
    close(state.h, data["lstm/state/h"]), close(state.c, data["lstm/state/c"])


@pytest.mark.parametrize("stem", ["lstm", "gru"])
def test_keras3_go_backwards(stem):
    from rnnfuse.convert.keras import GoBackwards

    data = io("keras3_go_backwards")
    module = stack_from_keras(LEGACY / "keras3_go_backwards" / f"{stem}.keras")
    assert isinstance(module, GoBackwards)
    for prefix in ("", "ragged/"):
        x = torch.from_numpy(data[f"{prefix}x"])
        lengths = torch.from_numpy(data["ragged/lengths"]) if prefix else None
        with torch.no_grad():
            out, (state,) = module(x, lengths)
        close(out, data[f"{prefix}{stem}/outputs"])  # processing order, padded steps first
        if stem == "lstm":
            (
                close(state.h, data[f"{prefix}lstm/state/h"]),
                close(state.c, data[f"{prefix}lstm/state/c"]),
            )
        else:
            close(state, data[f"{prefix}gru/state/h"])


def test_inspect_keras_files(capsys):
    from rnnfuse.cli import main

    assert main(["inspect", str(LEGACY / "keras2_bidirectional_lstm" / "model.h5")]) == 0
    text = capsys.readouterr().out
    assert "bidirectional: Bidirectional(LSTM(units=4), input 3, merge_mode='concat')" in text
    assert "layer 0: LSTMCell(3, 4) | backward LSTMCell(3, 4)" in text
    assert (
        "state: (BidirectionalState(fw=LSTMState(c=[batch, 4], h=[batch, 4]), "
        "bw=LSTMState(c=[batch, 4], h=[batch, 4])), LSTMState(c=[batch, 3], h=[batch, 3]))" in text
    )
    assert main(["inspect", str(LEGACY / "keras2_rnn_cells" / "rnn_stacked.h5")]) == 0
    text = capsys.readouterr().out
    assert (
        "rnn/1: GRU(units=3), input 4" in text
        and "layer 1: GRUCell(4, 3, reset_after=False)" in text
    )
    assert main(["inspect", str(LEGACY / "keras2_savedmodel" / "saved_model")]) == 0
    assert (
        "dense: Dense with weights [[4, 2], [2]] (not recurrent: left out)"
        in capsys.readouterr().out
    )
