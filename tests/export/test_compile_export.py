"""torch.compile, torch.export and torch.jit on the stacks: numbers equal eager's.

While tracing, each layer runs as the ``rnnfuse::layer`` operator (rnnfuse.kernels.ops), so
ragged lengths never enter a traced Python decision.  Sizes are tiny: compiling is slow.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._pytree import tree_leaves

from rnnfuse import GRUCell, LSTMCell, MultiEncoder, RNNCell, Seq2Seq, StackedRNN
from rnnfuse.kernels import select_path

pytestmark = pytest.mark.slow


class _LoopLSTM(LSTMCell):
    """A user's subclass: no kernel spec, so the reference loop."""


def _loss(y, state):
    weights = torch.linspace(-1, 1, y.numel()).view_as(y)
    return (y * weights).sum() + sum((s * s).sum() for s in tree_leaves(state))


def _grads(model, x, lengths):
    x = x.detach().requires_grad_()
    y, state = model(x, lengths)
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(_loss(y, state), [x, *params])
    return y.detach(), [s.detach() for s in tree_leaves(state)], grads


def _assert_same(got, expected, atol=1e-5):
    for a, b in zip(tree_leaves(got), tree_leaves(expected)):
        torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


def _all_paths_stack():
    """Layers on every path: BPTT (peephole LSTM with clips), BPTT (reset-before GRU),
    fused RNN (segments when ragged), the loop (a subclass), fused LSTM."""
    torch.manual_seed(0)
    fw = [
        LSTMCell(4, 6, peepholes=True, cell_clip=0.7, forget_bias=1.0),
        GRUCell(12, 5, reset_after=False),
        RNNCell(10, 4, nonlinearity="relu"),
        _LoopLSTM(8, 4),
        LSTMCell(8, 3, proj_size=2),
    ]
    bw = [
        LSTMCell(4, 6, peepholes=True, cell_clip=0.7, forget_bias=1.0),
        GRUCell(12, 5, reset_after=False),
        RNNCell(10, 4),
        _LoopLSTM(8, 4),
        LSTMCell(8, 3, proj_size=2),
    ]
    for cell in fw + bw:
        for p in cell.parameters():
            torch.nn.init.uniform_(p, -0.5, 0.5)
    return StackedRNN.from_cells(fw, backward_cells=bw)


def test_compile_every_path_forward_backward_equals_eager():
    torch.set_num_threads(1)
    stack = _all_paths_stack()
    x = torch.randn(3, 5, 4)
    paths = {
        select_path(c, torch.randn(3, 5, c.input_size), torch.tensor([5, 2, 0]))
        for c in stack.layers
    }
    assert paths == {"bptt", "fused-segments", "loop"}
    compiled = torch.compile(stack, backend="aot_eager", fullgraph=True)
    for lengths in (None, torch.tensor([5, 2, 0]), torch.tensor([1, 4, 3])):
        _assert_same(_grads(compiled, x, lengths), _grads(stack, x, lengths))
    with pytest.raises(ValueError, match="lengths"):  # checked inside the operator, at run time
        compiled(x, torch.tensor([5, -1, 2]))


def test_compiled_inference_of_a_small_ragged_batch_runs_padded_in_the_operator():
    """With two threads a small ragged LSTM batch without gradients takes one padded fused
    call; compiled, the operator takes it at run time: the same outputs and states as eager
    with gradients (which takes the C++ loop or the segments)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        stack = StackedRNN(4, [6, 5], cell="lstm", bidirectional=True, forget_bias=1.0).eval()
        x, lengths = torch.randn(3, 5, 4), torch.tensor([5, 2, 0])
        compiled = torch.compile(stack, backend="aot_eager", fullgraph=True)
        with torch.no_grad():
            assert select_path(stack.layers[1], torch.randn(3, 5, 12), lengths) == "fused-padded"
            got = compiled(x, lengths)
        assert (
            select_path(stack.layers[1], torch.randn(3, 5, 12, requires_grad=True), lengths)
            != "fused-padded"
        )
        _assert_same(got, stack(x.requires_grad_(), lengths))
    finally:
        torch.set_num_threads(threads)


def test_compiled_ragged_lstm_training_no_recompiles_and_exact_gradients():
    """The default LSTM stack, bidirectional, inductor, x.requires_grad: values and
    gradients equal eager's for every length pattern, without a compile per pattern."""
    torch.set_num_threads(1)
    torch._dynamo.reset()
    torch.manual_seed(1)
    stack = StackedRNN(4, [6, 6], cell="lstm", bidirectional=True)
    compiled = torch.compile(stack)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, 4)
    _assert_same(
        _grads(compiled, x, torch.tensor([5, 3, 2])), _grads(stack, x, torch.tensor([5, 3, 2]))
    )
    first = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for _ in range(5):
        lengths = torch.randint(0, 6, (3,), generator=gen)
        _assert_same(_grads(compiled, x, lengths), _grads(stack, x, lengths))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] - first <= 2


@pytest.mark.parametrize(
    "options",
    [
        {"cell": "lstm", "peepholes": True},
        {"cell": "gru", "reset_after": False},
        {"cell": "lstm"},
        {"cell": "rnn"},
    ],
)
def test_export_with_lengths_serves_other_lengths_batches_and_steps(options):
    torch.manual_seed(3)
    stack = StackedRNN(4, [6, 5], bidirectional=True, **options)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    example = (torch.randn(3, 5, 4), torch.tensor([5, 3, 2]))
    program = torch.export.export(stack, example, dynamic_shapes=({0: batch, 1: time}, {0: batch}))
    for b, t, lengths in [(6, 9, [9, 1, 0, 4, 7, 9]), (2, 3, [3, 3]), (4, 2, [1, 2, 0, 2])]:
        x = torch.randn(b, t, 4)
        _assert_same(program.module()(x, torch.tensor(lengths)), stack(x, torch.tensor(lengths)))


def test_jit_trace_with_lengths_refuses_and_points_to_export():
    stack = StackedRNN(4, [6])
    with pytest.raises(RuntimeError, match="torch.export"):
        torch.jit.trace(stack, (torch.randn(2, 3, 4), torch.tensor([3, 1])))


@pytest.mark.parametrize("names", [("local", "global"), ("lambda", "class")])
def test_seq2seq_with_keyword_encoder_names_exports(names):
    torch.manual_seed(4)
    enc = MultiEncoder({names[0]: StackedRNN(3, [4]), names[1]: StackedRNN(3, [4])})
    model = Seq2Seq(enc, StackedRNN(1, [8]), output_size=1, attention=True, attention_size=4)
    x = {names[0]: torch.randn(2, 4, 3), names[1]: torch.randn(2, 5, 3)}
    lengths = {names[0]: torch.tensor([4, 2]), names[1]: torch.tensor([5, 3])}
    targets, start = torch.randn(2, 3, 1), torch.zeros(2, 1)
    program = torch.export.export(model, (x, targets), {"start": start, "lengths": lengths})
    expected = model(x, targets, start=start, lengths=lengths)
    torch.testing.assert_close(program.module()(x, targets, start=start, lengths=lengths), expected)
    state = model.state_dict()
    assert any(k.startswith(f"encoders.encoders.{names[1]}.") for k in state)
    model.load_state_dict(state, strict=True)
    assert list(model.encoders.encoders.keys()) == list(names)


def _onnx_run(model, example, inputs, dynamic_shapes, tmp_path, kwargs=None):
    ort = pytest.importorskip("onnxruntime")
    from rnnfuse.export import export_onnx

    path = tmp_path / "model.onnx"
    export_onnx(model, example, path, kwargs=kwargs, dynamic_shapes=dynamic_shapes)
    session = ort.InferenceSession(str(path))
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, [t.numpy() for t in inputs])))


def test_onnx_mixed_ragged_bidirectional_stack_runs_in_onnxruntime(tmp_path):
    """LSTM (peepholes, forget bias) → reset-before GRU → relu RNN, mixed sizes, both
    directions, ragged; run at a batch, T and lengths unlike the example's (zero length too)."""
    torch.manual_seed(5)
    fw = [
        LSTMCell(4, 6, peepholes=True, forget_bias=1.0),
        GRUCell(12, 5, reset_after=False),
        RNNCell(10, 3, nonlinearity="relu"),
    ]
    bw = [LSTMCell(4, 6, peepholes=True, forget_bias=1.0), GRUCell(12, 5), RNNCell(10, 3)]
    stack = StackedRNN.from_cells(fw, backward_cells=bw)
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    example = (torch.randn(3, 5, 4), torch.tensor([5, 3, 2]))
    x, lengths = torch.randn(6, 9, 4), torch.tensor([9, 1, 0, 4, 7, 9])
    got = _onnx_run(stack, example, (x, lengths), ({0: batch, 1: time}, {0: batch}), tmp_path)
    expected = [t.detach().numpy() for t in tree_leaves(stack(x, lengths))]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert abs(a - b).max() <= 1e-5


def _seq2seq_with_covariates():
    """Two encoders (one named with a Python keyword), attention, decoder covariates."""
    torch.manual_seed(6)
    enc = MultiEncoder({"local": StackedRNN(3, [4]), "global": StackedRNN(3, [4])})
    return Seq2Seq(enc, StackedRNN(2, [8]), output_size=1, attention=True, attention_size=4)


def _seq2seq_dims():
    batch, horizon = torch.export.Dim("batch"), torch.export.Dim("horizon")
    inputs = {
        "local": {0: batch, 1: torch.export.Dim("t_local")},
        "global": {0: batch, 1: torch.export.Dim("t_global")},
    }
    lengths = {"local": {0: batch}, "global": {0: batch}}
    return batch, horizon, inputs, lengths


def _seq2seq_example():
    x = {"local": torch.randn(2, 4, 3), "global": torch.randn(2, 5, 3)}
    lengths = {"local": torch.tensor([4, 2]), "global": torch.tensor([5, 3])}
    return x, lengths


def _seq2seq_other_sizes(horizon):
    """Batch, both encoders' T, the horizon and the lengths all unlike the example's
    (a zero length too)."""
    x = {"local": torch.randn(5, 7, 3), "global": torch.randn(5, 3, 3)}
    lengths = {"local": torch.tensor([7, 1, 0, 3, 7]), "global": torch.tensor([3, 3, 2, 0, 1])}
    return x, lengths, torch.randn(5, horizon, 1), torch.randn(5, 1), torch.randn(5, horizon, 1)


def test_onnx_seq2seq_teacher_forcing_with_dynamic_batch_and_time(tmp_path):
    model = _seq2seq_with_covariates()
    x, lengths = _seq2seq_example()
    targets, start, cov = torch.randn(2, 3, 1), torch.zeros(2, 1), torch.randn(2, 3, 1)
    batch, horizon, inputs, lens = _seq2seq_dims()
    shapes = {
        "inputs": inputs,
        "targets": {0: batch, 1: horizon},
        "start": {0: batch},
        "covariates": {0: batch, 1: horizon},
        "lengths": lens,
    }
    x2, lengths2, targets2, start2, cov2 = _seq2seq_other_sizes(horizon=6)
    flat = [
        x2["local"],
        x2["global"],
        targets2,
        start2,
        cov2,
        lengths2["local"],
        lengths2["global"],
    ]
    kwargs = {"start": start, "covariates": cov, "lengths": lengths}
    got = _onnx_run(model, (x, targets), flat, shapes, tmp_path, kwargs=kwargs)
    expected = model(x2, targets2, start=start2, covariates=cov2, lengths=lengths2).detach().numpy()
    assert got[0].shape == (5, 6, 1)
    assert abs(got[0] - expected).max() <= 1e-5


def test_onnx_seq2seq_generate_with_dynamic_batch_and_time(tmp_path):
    """The rollout's number of steps is a Python int (the loop unrolls): fixed at export;
    batch, encoder steps and lengths stay dynamic."""
    from rnnfuse.export import Rollout

    model = _seq2seq_with_covariates()
    rollout = Rollout(model, steps=3)
    x, lengths = _seq2seq_example()
    batch, _, inputs, lens = _seq2seq_dims()
    shapes = {"inputs": inputs, "start": {0: batch}, "covariates": {0: batch}, "lengths": lens}
    x2, lengths2, _, start2, cov2 = _seq2seq_other_sizes(horizon=3)
    flat = [x2["local"], x2["global"], start2, cov2, lengths2["local"], lengths2["global"]]
    example = (x, torch.zeros(2, 1), torch.randn(2, 3, 1))
    got = _onnx_run(rollout, example, flat, shapes, tmp_path, kwargs={"lengths": lengths})
    expected = (
        model.generate(x2, start=start2, steps=3, covariates=cov2, lengths=lengths2)
        .detach()
        .numpy()
    )
    assert got[0].shape == (5, 3, 1)
    assert abs(got[0] - expected).max() <= 1e-5


def test_onnx_seq2seq_without_feedback_forecasts_as_eager(tmp_path):
    """A decoder that reads the covariates alone: its forecast, exported through
    ``Rollout``, runs in onnxruntime as in eager, with batch, encoder steps and lengths
    dynamic."""
    from rnnfuse.export import Rollout

    torch.manual_seed(8)
    enc = MultiEncoder({"local": StackedRNN(3, [4]), "global": StackedRNN(3, [4])})
    model = Seq2Seq(enc, StackedRNN(1, [8]), output_size=1, feedback=False)
    x, lengths = _seq2seq_example()
    batch, _, inputs, lens = _seq2seq_dims()
    shapes = {"inputs": inputs, "start": {0: batch}, "covariates": {0: batch}, "lengths": lens}
    x2, lengths2, _, start2, cov2 = _seq2seq_other_sizes(horizon=3)
    flat = [x2["local"], x2["global"], start2, cov2, lengths2["local"], lengths2["global"]]
    example = (x, torch.zeros(2, 1), torch.randn(2, 3, 1))
    rollout = Rollout(model, steps=3)
    got = _onnx_run(rollout, example, flat, shapes, tmp_path, kwargs={"lengths": lengths})
    expected = model.generate(x2, start=start2, steps=3, covariates=cov2, lengths=lengths2)
    assert got[0].shape == (5, 3, 1)
    assert abs(got[0] - expected.detach().numpy()).max() <= 1e-5


def test_onnx_cell_clip_and_projection_run_as_a_loop_in_onnxruntime(tmp_path):
    """What ONNX's LSTM cannot express (a clip of c, a projection and its clip) as an ONNX
    Loop: both directions, every option, ragged (a zero length), NaN in the padding, batch
    and T unlike the example's."""
    torch.manual_seed(7)
    fw = [
        LSTMCell(4, 6, peepholes=True, cell_clip=0.5, proj_size=3, proj_clip=0.4, forget_bias=1.0),
        LSTMCell(6, 5, cell_clip=0.3),
    ]
    bw = [LSTMCell(4, 6, proj_size=3), LSTMCell(6, 5, peepholes=True, cell_clip=0.2)]
    stack = StackedRNN.from_cells(fw, backward_cells=bw)
    for p in stack.parameters():
        torch.nn.init.uniform_(p, -0.8, 0.8)  # large enough for the clips to bind
    batch, time = torch.export.Dim("batch"), torch.export.Dim("time")
    example = (torch.randn(3, 5, 4), torch.tensor([5, 3, 2]))
    x, lengths = torch.randn(6, 9, 4), torch.tensor([9, 1, 0, 4, 7, 9])
    x[1, 1:] = float("nan")
    got = _onnx_run(stack, example, (x, lengths), ({0: batch, 1: time}, {0: batch}), tmp_path)
    y, state = stack(x, lengths)
    assert (
        state[0][0].c.abs().max() - 0.5
    ).abs() < 1e-6  # the forward first layer's cell clip binds
    expected = [t.detach().numpy() for t in tree_leaves((y, state))]
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert abs(a - b).max() <= 1e-5
