"""What a PyTorch user types, ``torch.onnx.export(model, args, path, dynamo=True)``, with no
``custom_translation_table``: every rnnfuse module exports as ``nn.LSTM`` does, and the file,
run in onnxruntime at a batch, T and lengths unlike the example's (a zero length too), gives the
eager module's numbers.  The ``rnnfuse::layer`` operator's translation is in torch.onnx's
default registry (:mod:`rnnfuse._onnx_registration`), added without importing onnxscript at
``import rnnfuse``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_leaves

from rnnfuse import (
    BidirectionalRNN,
    GRUCell,
    LSTMCell,
    LSTMState,
    MultiEncoder,
    RNNCell,
    Seq2Seq,
    StackedRNN,
    StateBridge,
    ZophKnightFusion,
)
from rnnfuse.export import Rollout

pytestmark = pytest.mark.slow
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _dims():
    return torch.export.Dim("batch"), torch.export.Dim("time")


def _plain_export_and_run(model, example, inputs, dynamic_shapes, tmp_path, kwargs=None):
    """``torch.onnx.export(model, example, path, dynamo=True, ...)`` as a user writes it, then
    the file in onnxruntime on ``inputs`` (flat, in the graph's input order)."""
    path = tmp_path / "model.onnx"
    torch.onnx.export(
        model.eval(), example, path, kwargs=kwargs, dynamo=True, dynamic_shapes=dynamic_shapes
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert len(names) == len(inputs)
    return session.run(None, dict(zip(names, [t.numpy() for t in inputs])))


def _assert_close(got, expected, atol=1e-5):
    expected = [t.detach().numpy() for t in tree_leaves(expected) if t is not None]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a.shape == b.shape
        assert float(np.abs(a - b).max()) <= atol


def _ragged():
    """The example (batch 3, T 5) and other sizes (batch 6, T 9, a zero length)."""
    example = (torch.randn(3, 5, 4), torch.tensor([5, 3, 2]))
    return example, torch.randn(6, 9, 4), torch.tensor([9, 1, 0, 4, 7, 9])


def test_plain_export_every_cell_kind_bidirectional_ragged(tmp_path):
    """LSTM (peepholes, forget bias), TF1 reset-before GRU, relu RNN forward; plain LSTM,
    reset-after GRU, tanh RNN backward: every kind the operator has."""
    torch.manual_seed(10)
    fw = [
        LSTMCell(4, 6, peepholes=True, forget_bias=1.0),
        GRUCell(12, 5, reset_after=False),
        RNNCell(10, 3, nonlinearity="relu"),
    ]
    bw = [LSTMCell(4, 6), GRUCell(12, 5), RNNCell(10, 3)]
    stack = StackedRNN.from_cells(fw, backward_cells=bw)
    batch, time = _dims()
    example, x, lengths = _ragged()
    got = _plain_export_and_run(
        stack, example, (x, lengths), ({0: batch, 1: time}, {0: batch}), tmp_path
    )
    _assert_close(got, stack(x, lengths))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_plain_export_default_stacks_mixed_directions_residual(cell, tmp_path):
    """``StackedRNN(..., cell=...)`` with per-layer directions and a residual layer, ragged."""
    torch.manual_seed(11)
    stack = StackedRNN(
        4, [6, 6, 6], cell=cell, bidirectional=[True, False, False], residual=[False, False, True]
    )
    batch, time = _dims()
    example, x, lengths = _ragged()
    got = _plain_export_and_run(
        stack, example, (x, lengths), ({0: batch, 1: time}, {0: batch}), tmp_path
    )
    _assert_close(got, stack(x, lengths))


def test_plain_export_without_lengths_and_bidirectional_rnn(tmp_path):
    """No ``lengths`` at all (every sequence full), on a ``BidirectionalRNN``."""
    torch.manual_seed(12)
    model = BidirectionalRNN(StackedRNN(4, [5, 3], cell="gru"), StackedRNN(4, [5, 3], cell="gru"))
    batch, time = _dims()
    x = torch.randn(6, 9, 4)
    got = _plain_export_and_run(
        model, (torch.randn(3, 5, 4),), (x,), ({0: batch, 1: time},), tmp_path
    )
    _assert_close(got, model(x))


def test_plain_export_projection_peepholes_and_clips_as_a_loop(tmp_path):
    """What ONNX's LSTM cannot express (a clip of c, a projection and its clip): an ONNX Loop,
    both directions, NaN in the padding."""
    torch.manual_seed(13)
    fw = [
        LSTMCell(4, 6, peepholes=True, cell_clip=0.5, proj_size=3, proj_clip=0.4, forget_bias=1.0),
        LSTMCell(6, 5, cell_clip=0.3),
    ]
    bw = [LSTMCell(4, 6, proj_size=3), LSTMCell(6, 5, peepholes=True, cell_clip=0.2)]
    stack = StackedRNN.from_cells(fw, backward_cells=bw)
    for p in stack.parameters():
        torch.nn.init.uniform_(p, -0.8, 0.8)  # large enough for the clips to bind
    batch, time = _dims()
    example, x, lengths = _ragged()
    x[1, 1:] = float("nan")
    got = _plain_export_and_run(
        stack, example, (x, lengths), ({0: batch, 1: time}, {0: batch}), tmp_path
    )
    y, state = stack(x, lengths)
    assert (state[0][0].c.abs().max() - 0.5).abs() < 1e-6  # the cell clip binds
    _assert_close(got, (y, state))


def test_plain_export_multi_encoder_with_a_fusion_module(tmp_path):
    """Two encoders (one bidirectional GRU), a learned fusion: the fused state and outputs."""
    torch.manual_seed(14)
    enc = MultiEncoder(
        {"a": StackedRNN(3, [4, 4]), "b": StackedRNN(3, [2, 2], bidirectional=True)},
        fusion=ZophKnightFusion(2, [LSTMState(4, 4), LSTMState(4, 4)]),
    )
    batch = torch.export.Dim("batch")
    shapes = {
        "inputs": {
            "a": {0: batch, 1: torch.export.Dim("t_a")},
            "b": {0: batch, 1: torch.export.Dim("t_b")},
        },
        "lengths": {"a": {0: batch}, "b": {0: batch}},
    }
    example = ({"a": torch.randn(2, 4, 3), "b": torch.randn(2, 5, 3)},)
    kwargs = {
        "lengths": {"a": torch.tensor([4, 2]), "b": torch.tensor([5, 3])}
    }  # a last dict in args would be kwargs
    x = {"a": torch.randn(5, 7, 3), "b": torch.randn(5, 3, 3)}
    lengths = {"a": torch.tensor([7, 1, 0, 3, 7]), "b": torch.tensor([3, 3, 2, 0, 1])}
    flat = (x["a"], x["b"], lengths["a"], lengths["b"])
    got = _plain_export_and_run(enc, example, flat, shapes, tmp_path, kwargs=kwargs)
    out = enc(x, lengths)
    assert out.outputs is None  # the two T differ: the outputs stay per encoder
    _assert_close(got, out)


def _seq2seq():
    torch.manual_seed(15)
    enc = MultiEncoder(
        {"local": StackedRNN(3, [4], cell="gru"), "global": StackedRNN(3, [4], cell="gru")}
    )
    return Seq2Seq(
        enc,
        StackedRNN(2, [6], cell="gru"),
        output_size=1,
        attention=True,
        attention_size=4,
        bridge=StateBridge([8], [6]),
    )


def _seq2seq_data():
    batch, horizon = torch.export.Dim("batch"), torch.export.Dim("horizon")
    inputs = {
        "local": {0: batch, 1: torch.export.Dim("t_local")},
        "global": {0: batch, 1: torch.export.Dim("t_global")},
    }
    example = (
        {"local": torch.randn(2, 4, 3), "global": torch.randn(2, 5, 3)},
        {"local": torch.tensor([4, 2]), "global": torch.tensor([5, 3])},
    )
    x = {"local": torch.randn(5, 7, 3), "global": torch.randn(5, 3, 3)}
    lengths = {"local": torch.tensor([7, 1, 0, 3, 7]), "global": torch.tensor([3, 3, 2, 0, 1])}
    return batch, horizon, inputs, example, x, lengths


def test_plain_export_seq2seq_teacher_forcing_and_rollout(tmp_path):
    """A Seq2Seq with a state bridge and attention, teacher forcing (horizon dynamic) and the
    rollout of ``generate`` (``Rollout``): batch, both encoders' T and lengths dynamic."""
    model = _seq2seq()
    batch, horizon, inputs, (ex_x, ex_lengths), x, lengths = _seq2seq_data()
    lens = {"local": {0: batch}, "global": {0: batch}}
    shapes = {
        "inputs": inputs,
        "targets": {0: batch, 1: horizon},
        "start": {0: batch},
        "covariates": {0: batch, 1: horizon},
        "lengths": lens,
    }
    kwargs = {"start": torch.zeros(2, 1), "covariates": torch.randn(2, 3, 1), "lengths": ex_lengths}
    targets, start, cov = torch.randn(5, 6, 1), torch.randn(5, 1), torch.randn(5, 6, 1)
    flat = [x["local"], x["global"], targets, start, cov, lengths["local"], lengths["global"]]
    got = _plain_export_and_run(
        model, (ex_x, torch.randn(2, 3, 1)), flat, shapes, tmp_path, kwargs=kwargs
    )
    _assert_close(got, model(x, targets, start=start, covariates=cov, lengths=lengths))

    rollout = Rollout(model, steps=3)
    shapes = {"inputs": inputs, "start": {0: batch}, "covariates": {0: batch}, "lengths": lens}
    flat = [x["local"], x["global"], start, cov[:, :3], lengths["local"], lengths["global"]]
    example = (ex_x, torch.zeros(2, 1), torch.randn(2, 3, 1))
    got = _plain_export_and_run(
        rollout, example, flat, shapes, tmp_path, kwargs={"lengths": ex_lengths}
    )
    _assert_close(
        got, model.generate(x, start=start, steps=3, covariates=cov[:, :3], lengths=lengths)
    )


_REGISTERED = """
import sys, torch
{first}
from torch.onnx._internal.exporter._registration import ONNXRegistry
assert ONNXRegistry.from_torchlib().is_registered(torch.ops.rnnfuse.layer.default)
print("registered")
"""


@pytest.mark.parametrize(
    "first",
    [
        "import rnnfuse\nassert 'onnxscript' not in sys.modules",
        "import torch.onnx._internal.exporter._registration\nimport rnnfuse",
    ],
)
def test_translation_is_in_the_default_registry_whichever_is_imported_first(first):
    """``import rnnfuse`` does not load onnxscript (seconds); the translation is in the registry
    ``torch.onnx.export`` builds, whether torch's exporter loads after rnnfuse or before."""
    code = _REGISTERED.format(first=textwrap.dedent(first))
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "registered" in done.stdout


def test_where_the_translation_could_not_be_added_a_plain_export_warns_and_points_to_export_onnx(
    monkeypatch,
):
    """Should torch's internals change, the trace says what works instead (once)."""
    from rnnfuse import _onnx_registration

    monkeypatch.setattr(_onnx_registration, "_failure", "AttributeError: no _registry")
    monkeypatch.setattr(_onnx_registration, "_warned", False)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    stack = StackedRNN(4, [5])
    with pytest.warns(RuntimeWarning, match=r"rnnfuse\.export\.export_onnx"):
        torch.export.export(stack, (torch.randn(2, 3, 4), torch.tensor([3, 1])))
