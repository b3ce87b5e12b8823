"""Each cell's parameters (and its fused kernel's constants) are views of one flat buffer,
the layout cuDNN runs from without copying (rnnfuse.cells.flat): the invariants on CPU."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import rnnfuse
from rnnfuse import GRUCell, LSTMCell, RNNCell, StackedRNN
from rnnfuse.cells.base import RecurrentCell

SAVED = Path(__file__).parents[1] / "fixtures" / "saved"

CELLS = {
    "lstm": lambda: LSTMCell(5, 7),
    "lstm-forget-bias-no-bias": lambda: LSTMCell(5, 7, forget_bias=1.0, bias=False),
    "lstm-proj": lambda: LSTMCell(5, 7, proj_size=3),
    "lstm-peepholes-clips-proj": lambda: LSTMCell(
        5, 7, peepholes=True, proj_size=3, cell_clip=2.0, proj_clip=1.0
    ),
    "gru": lambda: GRUCell(5, 7),
    "gru-no-bias": lambda: GRUCell(5, 7, bias=False),
    "gru-reset-before": lambda: GRUCell(5, 7, reset_after=False),
    "rnn-relu-no-bias": lambda: RNNCell(5, 7, nonlinearity="relu", bias=False),
}


def members(cell: RecurrentCell) -> list[torch.Tensor]:
    return list(cell.parameters(recurse=False)) + list(cell._flat_constants.values())


def assert_flat(cell: RecurrentCell) -> None:
    """One storage, exactly the size of the members, which tile it without overlap."""
    parts = members(cell)
    storage = parts[0].untyped_storage()
    assert all(p.untyped_storage().data_ptr() == storage.data_ptr() for p in parts)
    assert all(p.is_contiguous() for p in parts)
    spans = sorted((p.storage_offset(), p.numel()) for p in parts)
    offset = 0
    for start, size in spans:
        assert start == offset
        offset += size
    assert storage.nbytes() == offset * parts[0].element_size()
    assert cell.is_flat()


def whole_buffer(cell: RecurrentCell) -> torch.Tensor:
    first = next(cell.parameters())
    return torch.empty(0, dtype=first.dtype).set_(first.untyped_storage())


@pytest.mark.parametrize("name", sorted(CELLS))
def test_flat_after_construction_and_fused_weights_in_rnnbase_order(name: str) -> None:
    cell = CELLS[name]()
    assert_flat(cell)
    spec = cell.kernel_spec(torch.float32, torch.device("cpu"))
    assert spec is not None
    if (
        spec.fused_weights is not None
    ):  # what cuDNN reads: w_ih, w_hh, b_ih, b_hh(, w_hr), back to back
        weights = spec.fused_weights
        assert [w.storage_offset() for w in weights] == [
            sum(w.numel() for w in weights[:k]) for k in range(len(weights))
        ]
        assert all(
            w.untyped_storage().data_ptr() == weights[0].untyped_storage().data_ptr()
            for w in weights
        )


@pytest.mark.parametrize("name", sorted(CELLS))
def test_constants_hold_their_values(name: str) -> None:
    """The second bias holds the forget bias in the f slot; the zero biases are zeros."""
    cell = CELLS[name]()
    for slot, value in cell._flat_constants.items():
        expected = torch.zeros_like(value)
        if slot.startswith("b_hh(forget_bias="):
            h = cell.hidden_size
            expected[h : 2 * h] = cell.forget_bias  # type: ignore[attr-defined]
        assert torch.equal(value, expected), slot


@pytest.mark.parametrize(
    "convert",
    [
        lambda m: m.to(torch.float64),
        lambda m: m.half(),
        lambda m: m.to("cpu"),
        lambda m: m.double().float(),
    ],
)
def test_flat_after_conversion_with_same_values(convert) -> None:
    cell = LSTMCell(5, 7, peepholes=True, proj_size=3, forget_bias=0.5)
    before = {k: v.clone() for k, v in cell.state_dict().items()}
    ids = [id(p) for p in cell.parameters()]
    convert(cell)
    assert_flat(cell)
    assert [id(p) for p in cell.parameters()] == ids  # the same Parameter objects
    dtype = next(cell.parameters()).dtype
    assert all(v.dtype == dtype for v in cell._flat_constants.values())
    for k, v in cell.state_dict().items():
        assert torch.equal(v, before[k].to(dtype)), k


def test_stack_conversion_flattens_every_cell() -> None:
    stack = StackedRNN(4, [6, 5], cell="gru", bidirectional=True, reset_after=False).double()
    cells = [c for c in stack.modules() if isinstance(c, RecurrentCell)]
    assert len(cells) == 4
    for cell in cells:
        assert_flat(cell)
        assert cell.weight_ih.dtype == torch.float64


@pytest.mark.parametrize("assign", [False, True])
def test_flat_after_load_state_dict(assign: bool) -> None:
    cell, other = LSTMCell(5, 7, proj_size=3), LSTMCell(5, 7, proj_size=3)
    cell.load_state_dict({k: v.clone() for k, v in other.state_dict().items()}, assign=assign)
    assert_flat(cell)
    for k, v in other.state_dict().items():
        assert torch.equal(cell.state_dict()[k], v)


def test_deepcopy_and_pickle_are_flat_on_their_own_buffer() -> None:
    cell = GRUCell(5, 7, bias=False)
    for twin in (copy.deepcopy(cell), _pickled(cell)):
        assert_flat(twin)
        assert (
            twin.weight_ih.untyped_storage().data_ptr()
            != cell.weight_ih.untyped_storage().data_ptr()
        )
        for k, v in cell.state_dict().items():
            assert torch.equal(twin.state_dict()[k], v)


def _pickled(module: torch.nn.Module) -> torch.nn.Module:
    buf = io.BytesIO()
    torch.save(module, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
        lambda p: torch.optim.Adam(p, lr=0.1, foreach=True),
    ],
)
def test_optimizer_step_writes_the_flat_buffer(optimizer) -> None:
    torch.manual_seed(0)
    stack = StackedRNN(4, [6], cell="lstm", peepholes=True)
    cell = stack.layers[0]
    opt = optimizer(stack.parameters())
    before = whole_buffer(cell).clone()
    out, _ = stack(torch.randn(3, 5, 4))
    out.square().sum().backward()
    assert all(
        p.grad is not None and p.grad.untyped_storage().data_ptr() != p.untyped_storage().data_ptr()
        for p in cell.parameters()
    )
    opt.step()
    after = whole_buffer(cell)
    assert not torch.equal(before, after)
    for p in cell.parameters():  # the parameters are still views: the buffer holds their new values
        assert torch.equal(
            after[p.storage_offset() : p.storage_offset() + p.numel()], p.detach().reshape(-1)
        )
    assert_flat(cell)


def test_replaced_parameter_runs_and_flattens_again() -> None:
    cell = RNNCell(5, 7)
    cell.weight_hh = torch.nn.Parameter(torch.randn(7, 7))
    assert not cell.is_flat()
    x = torch.randn(2, 5)
    expected = torch.tanh(x @ cell.weight_ih.T + cell.bias)
    assert torch.allclose(cell(x)[0], expected, atol=1e-6)
    cell.flatten_parameters()
    assert_flat(cell)
    assert torch.allclose(cell(x)[0], expected, atol=1e-6)


def test_save_writes_a_file_that_loads_flat(tmp_path: Path) -> None:
    stack = StackedRNN(4, [6, 3], cell="lstm", proj_size=2)
    rnnfuse.save(stack, tmp_path / "s.safetensors")
    again = rnnfuse.load(tmp_path / "s.safetensors")
    for cell in again.layers:
        assert_flat(cell)
    x = torch.randn(2, 5, 4)
    assert torch.equal(stack(x)[0], again(x)[0])


def test_state_dict_saves_with_safetensors_and_torch_save(tmp_path: Path) -> None:
    """The views do not overlap: ``safetensors.torch.save_file(state_dict)`` and ``torch.save``
    write each parameter once, and both load back into a flat stack with the same outputs.
    (``safetensors.torch.save_model`` refuses parameters sharing one storage, as it does
    ``nn.LSTM``'s on CUDA; docs/performance.md says so.)"""
    from safetensors.torch import save_file

    stack = StackedRNN(4, [6, 3], cell="lstm", peepholes=True)
    save_file(stack.state_dict(), str(tmp_path / "sd.safetensors"))
    torch.save(stack.state_dict(), tmp_path / "sd.pt")
    x = torch.randn(2, 5, 4)
    for state in (load_file(str(tmp_path / "sd.safetensors")), torch.load(tmp_path / "sd.pt")):
        again = StackedRNN(4, [6, 3], cell="lstm", peepholes=True)
        again.load_state_dict(state)
        for cell in again.layers:
            assert_flat(cell)
        assert torch.equal(stack(x)[0], again(x)[0])


def test_file_saved_before_flat_buffers_loads_with_the_same_outputs() -> None:
    """A stack file written by rnnfuse before this layout, and the outputs it gave then."""
    stack = rnnfuse.load(SAVED / "mixed_stack.safetensors").eval()
    raw, io_ = (
        load_file(str(SAVED / "mixed_stack.safetensors")),
        load_file(str(SAVED / "mixed_stack_io.safetensors")),
    )
    assert sorted(stack.state_dict()) == sorted(raw)
    for k, v in stack.state_dict().items():
        assert torch.equal(v, raw[k]), k
    for cell in stack.modules():
        if isinstance(cell, RecurrentCell):
            assert_flat(cell)
    with torch.no_grad():
        outputs, _ = stack(io_["x"], io_["lengths"])
    torch.testing.assert_close(outputs, io_["outputs"], rtol=1e-6, atol=1e-6)


def test_meta_device_cell_is_flattened_by_to_empty() -> None:
    """Built on the meta device (no storage to share), flat once given real memory."""
    with torch.device("meta"):
        stack = StackedRNN(4, [5, 3], cell="lstm", peepholes=True)
    assert not any(cell.is_flat() for cell in stack.layers)
    stack.to_empty(device="cpu")
    for cell in stack.layers:
        assert_flat(cell)
        cell.reset_parameters()
        assert_flat(cell)
    assert stack(torch.randn(2, 3, 4))[0].shape == (2, 3, 3)


def test_flattened_under_inference_mode_still_trains() -> None:
    """A buffer made while inference_mode is on (load_state_dict(assign=True) inside it)
    is a normal tensor: a later training step may save its constants for backward."""
    stack = StackedRNN(4, [5], cell="lstm", forget_bias=1.0)
    state = {k: v.clone() for k, v in stack.state_dict().items()}
    with torch.inference_mode():
        stack.load_state_dict(state, assign=True)
    cell = stack.layers[0]
    assert_flat(cell)
    assert not any(t.is_inference() for t in members(cell))
    out, _ = stack(torch.randn(2, 3, 4, requires_grad=True))
    out.sum().backward()
    assert cell.weight_ih.grad is not None
