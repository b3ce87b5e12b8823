"""rnnfuse.io: save/load in safetensors, configuration in the metadata, strict loading."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from test_tf1_load import CASES, compare, load_case, run_loaded

from rnnfuse.bidirectional import BidirectionalRNN
from rnnfuse.cells import GRUCell, LSTMCell, RNNCell
from rnnfuse.io import load, read_config, read_safetensors_metadata, save, write_safetensors
from rnnfuse.stack import StackedRNN
from rnnfuse.state import flatten_state
from rnnfuse.tf1 import load_stack


def _same_numbers(a, b, x, lengths=None):
    a.eval(), b.eval()
    with torch.no_grad():
        out_a, state_a = a(x, lengths)
        out_b, state_b = b(x, lengths)
    assert torch.equal(out_a, out_b)
    for sa, sb in zip(flatten_state(state_a), flatten_state(state_b), strict=True):
        assert torch.equal(sa, sb)


@pytest.mark.parametrize("name", CASES)
def test_tf1_fixture_round_trip_gives_identical_numbers(name, tmp_path):
    case = load_case(name)
    for k, rnn in enumerate(case.info["rnns"]):
        cells = rnn["fw"]["cells"] + rnn["bw"]["cells"] if "fw" in rnn else rnn["cells"]
        options = {
            key: cells[0][key]
            for key in ("forget_bias", "cell_clip", "proj_clip")
            if cells[0].get(key) is not None
        }
        module = load_stack(
            case.prefix, rnn["rnn_scope"], batch_first=not case.info["time_major"], **options
        )
        path = tmp_path / f"{k}.safetensors"
        save(module, path)
        again = load(path)
        assert type(again) is type(module)
        assert again.state_dict().keys() == module.state_dict().keys()
        x = torch.from_numpy(case.io["x"])
        _same_numbers(module, again, x, case.lengths)
        if isinstance(module, BidirectionalRNN):
            assert again.fw.layers[0].config() == module.fw.layers[0].config()
        else:
            assert [c.config() for c in again.layers] == [c.config() for c in module.layers]


def test_loaded_file_still_reproduces_tensorflow(tmp_path):
    case = load_case("lstm_peepholes_proj_clip")
    save(load_stack(case.prefix, cell_clip=0.5, proj_clip=0.3), tmp_path / "m.safetensors")
    module = load(tmp_path / "m.safetensors")
    with torch.no_grad():
        outputs, (state,) = module(torch.from_numpy(case.io["x"]))
    compare(case, {"outputs": outputs, "state/c": state.c, "state/h": state.h})
    assert run_loaded(case).keys() == {"outputs", "state/c", "state/h"}


@pytest.mark.parametrize(
    "build",
    [
        lambda: StackedRNN(
            4,
            [6, 5],
            "lstm",
            bidirectional=True,
            dropout=0.25,
            variational_dropout=True,
            forget_bias=1.0,
            peepholes=True,
        ),
        lambda: StackedRNN(4, [6, 6, 6], "gru", residual=True, batch_first=False),
        lambda: StackedRNN.from_cells(
            [
                LSTMCell(4, 8, proj_size=3, cell_clip=2.0),
                GRUCell(3, 5, reset_after=False),
                RNNCell(5, 2, nonlinearity="relu"),
            ]
        ),
        lambda: StackedRNN(4, [3], "rnn").double(),
    ],
    ids=["bidirectional-dropout", "residual-time-major", "mixed-cells", "float64"],
)
def test_stack_options_round_trip(build, tmp_path):
    torch.manual_seed(0)
    stack = build()
    save(stack, tmp_path / "s.safetensors")
    again = load(tmp_path / "s.safetensors")
    for attr in ("batch_first", "bidirectional", "dropout", "variational_dropout", "residual"):
        assert getattr(again, attr) == getattr(stack, attr), attr
    assert [c.config() for c in again.layers] == [c.config() for c in stack.layers]
    assert [c.config() for c in again.backward_layers] == [
        c.config() for c in stack.backward_layers
    ]
    dtype = next(stack.parameters()).dtype
    assert next(again.parameters()).dtype == dtype
    x = torch.randn(3, 5, 4, dtype=dtype)
    _same_numbers(
        stack, again, x if stack.batch_first else x.transpose(0, 1), torch.tensor([5, 2, 0])
    )


def test_file_is_plain_safetensors_with_json_config(tmp_path):
    path = tmp_path / "s.safetensors"
    save(StackedRNN(4, [3], "gru"), path)
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert json.loads(header["__metadata__"]["format"]) == "rnnfuse"  # every value is JSON text
    config = json.loads(header["__metadata__"]["config"])
    assert config == read_config(path)
    assert config["layers"] == [{"kind": "gru", "input_size": 4, "hidden_size": 3}]


def _write(path, tensors, config=None, **meta):
    metadata = {"format": "rnnfuse", "version": "1", **meta}
    if config is not None:
        metadata["config"] = json.dumps(config)
    save_file(tensors, str(path), metadata=metadata)


def test_foreign_and_corrupt_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="without rnnfuse metadata"):
        load(foreign)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load(garbage)
    good = tmp_path / "good.safetensors"
    save(StackedRNN(4, [3], "gru"), good)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load(truncated)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.safetensors")


def test_bad_metadata_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    _write(path, {"w": torch.zeros(2)}, version="99")
    with pytest.raises(ValueError, match="format version '99'"):
        load(path)
    save_file(
        {"w": torch.zeros(2)},
        str(path),
        metadata={"format": "rnnfuse", "version": "1", "config": "{oops"},
    )
    with pytest.raises(ValueError, match="corrupt configuration"):
        load(path)
    _write(path, {"w": torch.zeros(2)}, {"kind": "Transformer"})
    with pytest.raises(
        ValueError, match="expected kind 'StackedRNN' or 'BidirectionalRNN', got 'Transformer'"
    ):
        load(path)
    _write(path, {"w": torch.zeros(2)}, {"kind": "StackedRNN", "layers": []})
    with pytest.raises(ValueError, match="a StackedRNN configuration needs"):
        load(path)


def test_tensors_must_match_the_configuration(tmp_path):
    stack = StackedRNN(4, [3, 2], "lstm")
    config = read_config(_saved(stack, tmp_path))
    tensors = {k: v.clone() for k, v in stack.state_dict().items()}
    tensors.pop("layers.1.bias")
    tensors["layers.0.bias"] = torch.zeros(5)
    tensors["layers.0.extra"] = torch.zeros(1)
    path = tmp_path / "bad.safetensors"
    _write(path, tensors, config)
    with pytest.raises(ValueError) as info:
        load(path)
    message = str(info.value)
    assert "missing: ['layers.1.bias']" in message
    assert "unexpected: ['layers.0.extra']" in message
    assert "layers.0.bias: expected [12], got [5]" in message


def test_mixed_dtypes_are_refused(tmp_path):
    stack = StackedRNN(4, [3], "rnn")
    config = read_config(_saved(stack, tmp_path))
    tensors = {k: v.clone() for k, v in stack.state_dict().items()}
    tensors["layers.0.bias"] = tensors["layers.0.bias"].double()
    _write(tmp_path / "bad.safetensors", tensors, config)
    with pytest.raises(ValueError, match="expected one floating dtype"):
        load(tmp_path / "bad.safetensors")


def test_unwritable_path_raises_oserror(tmp_path):
    with pytest.raises(OSError, match="path: cannot write"):
        save(StackedRNN(4, [3], "gru"), tmp_path / "no_such_dir" / "x.safetensors")


def test_save_refuses_other_modules(tmp_path):
    with pytest.raises(
        TypeError, match="module: expected a StackedRNN or a BidirectionalRNN, got LSTM"
    ):
        save(torch.nn.LSTM(3, 4), tmp_path / "x.safetensors")


def _saved(stack, tmp_path):
    path = tmp_path / "ok.safetensors"
    save(stack, path)
    return path


def test_load_names_a_directory_and_a_file_with_a_bad_configuration(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"path: {str(tmp_path)!r} is a directory"):
        load(tmp_path)
    path = tmp_path / "m.safetensors"
    _write(path, {"w": torch.zeros(2)}, {"kind": "Transformer"})
    with pytest.raises(ValueError, match=f"path: {str(path)!r} has an invalid configuration"):
        load(path)
    config = read_config(_saved(StackedRNN(4, [3], "gru"), tmp_path))
    config["layers"] = [{"input_size": 4}]  # a cell configuration without its kind
    _write(path, {"w": torch.zeros(2)}, config)
    with pytest.raises(ValueError, match=f"path: {str(path)!r} has an invalid configuration"):
        load(path)


def test_another_format_is_shown_not_interpreted(tmp_path):
    """io knows nothing of the forecaster: its format is shown (decoded), like any other."""
    path = tmp_path / "best.safetensors"
    for shown in ("rnnfuse-forecaster/1", "other/1"):
        save_file({"w": torch.zeros(2)}, str(path), metadata={"format": json.dumps(shown)})
        with pytest.raises(ValueError) as info:
            load(path)
        message = str(info.value)
        assert (
            f"is not an rnnfuse stack file: a safetensors file without rnnfuse metadata (format={shown!r})"
            in message
        )
        assert "'\"" not in message


def test_a_file_written_before_the_metadata_convention_still_loads(tmp_path):
    """Older rnnfuse wrote format and version as plain text: {"format": "rnnfuse", "version": "1"}."""
    stack = StackedRNN(4, [3, 2], "lstm")
    new = _saved(stack, tmp_path)
    old = tmp_path / "old.safetensors"
    _write(old, dict(stack.state_dict()), read_config(new))
    assert read_safetensors_metadata(old)["format"] == "rnnfuse"
    x = torch.randn(2, 5, 4)
    assert torch.equal(load(old)(x)[0], stack(x)[0])


def test_metadata_values_round_trip_as_json(tmp_path):
    path = tmp_path / "m.safetensors"
    meta = {"format": "x/1", "scale": 2.5, "none": None, "config": {"a": [1, 2]}}
    write_safetensors(path, {"w": torch.ones(2)}, meta)
    assert read_safetensors_metadata(path) == meta


def test_check_state_dict_is_shared_and_strict(tmp_path):
    from rnnfuse.io import check_state_dict

    stack = StackedRNN(4, [3], "gru")
    check_state_dict(stack, dict(stack.state_dict()), tmp_path / "x")  # a match passes
    with pytest.raises(
        ValueError, match=r"'x' does not match its configuration; missing: \['layers.0.bias_hh'\]"
    ):
        check_state_dict(
            stack, {k: v for k, v in stack.state_dict().items() if k != "layers.0.bias_hh"}, "x"
        )
