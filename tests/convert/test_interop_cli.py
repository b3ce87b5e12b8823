"""`rnnfuse convert` and `rnnfuse inspect`, run in-process through rnnfuse.cli.main."""

from __future__ import annotations

import pytest
import torch
from test_tf1_load import FIXTURES, compare, flatten, load_case

from rnnfuse.bidirectional import BidirectionalRNN
from rnnfuse.cli import main
from rnnfuse.io import load, save
from rnnfuse.stack import StackedRNN


def test_inspect_tf1_checkpoint_prints_variables_cells_and_state(capsys):
    assert main(["inspect", str(FIXTURES / "seed_two_gru_encoders" / "model")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("seed_two_gru_encoders/model: 16 variables")
    kernel = next(
        line for line in out if "encoder1/rnn/multi_rnn_cell/cell_0/gru_cell/gates/kernel" in line
    )
    assert kernel.split()[-3:] == ["[14,", "16]", "float32"]
    start = out.index("encoder1/rnn: dynamic_rnn, MultiRNNCell of 2 cells")
    assert out[start : start + 5] == [
        "encoder1/rnn: dynamic_rnn, MultiRNNCell of 2 cells",
        "  cell_0: GRUCell(num_units=8), input 6 -> output 8",
        "  cell_1: GRUCell(num_units=6), input 8 -> output 6",
        "  outputs: [batch, time, 6]",
        "  state: (Tensor[batch, 8], Tensor[batch, 6])",
    ]
    assert "encoder2/rnn: dynamic_rnn, MultiRNNCell of 2 cells" in out


def test_inspect_lstm_and_bidirectional(capsys):
    assert main(["inspect", str(FIXTURES / "lstm_peepholes_proj_clip" / "model")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-4:] == [
        "rnn: dynamic_rnn, one cell",
        "  LSTMCell(num_units=8, use_peepholes=True, num_proj=5), input 4 -> output 5",
        "  outputs: [batch, time, 5]",
        "  state: LSTMStateTuple(c=[batch, 8], h=[batch, 5])",
    ]
    assert main(["inspect", str(FIXTURES / "bidirectional_gru" / "model.index")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-7:] == [
        "bidirectional_rnn: bidirectional_dynamic_rnn, two independent stacks",
        "  fw: one cell",
        "    GRUCell(num_units=5), input 4 -> output 5",
        "  bw: one cell",
        "    GRUCell(num_units=4), input 4 -> output 4",
        "  outputs: ([batch, time, 5], [batch, time, 4])",
        "  state: (Tensor[batch, 5], Tensor[batch, 4])",
    ]


def test_convert_then_run_gives_tensorflows_numbers(tmp_path, capsys):
    case = load_case("seed_two_gru_encoders")
    out_file = tmp_path / "encoder2.safetensors"
    assert (
        main(["convert", str(case.prefix), "--scope", "encoder2/rnn", "--out", str(out_file)]) == 0
    )
    assert capsys.readouterr().out.startswith(
        f"wrote {out_file}: StackedRNN from scope 'encoder2/rnn'"
    )
    stack = load(out_file)
    with torch.no_grad():
        outputs, state = stack(torch.from_numpy(case.io["x"]))
    expected = {k: v for k, v in case.io.items() if k.startswith("encoder2/")}
    for key, value in {"encoder2/outputs": outputs, **flatten("encoder2/state", state)}.items():
        torch.testing.assert_close(value, torch.from_numpy(expected.pop(key)), rtol=0, atol=1e-5)
    assert not expected


def test_convert_options_and_default_scope(tmp_path):
    case = load_case("lstm_peepholes_proj_clip")
    out_file = tmp_path / "m.safetensors"
    assert (
        main(
            [
                "convert",
                str(case.prefix),
                "--out",
                str(out_file),
                "--cell-clip",
                "0.5",
                "--proj-clip",
                "0.3",
                "--time-major",
            ]
        )
        == 0
    )
    stack = load(out_file)
    assert not stack.batch_first
    with torch.no_grad():
        outputs, (state,) = stack(torch.from_numpy(case.io["x"]).transpose(0, 1))
    compare(case, {"outputs": outputs.transpose(0, 1), "state/c": state.c, "state/h": state.h})
    bidir = tmp_path / "b.safetensors"
    assert (
        main(["convert", str(FIXTURES / "bidirectional_multi_lstm" / "model"), "--out", str(bidir)])
        == 0
    )
    assert isinstance(load(bidir), BidirectionalRNN)


def test_convert_errors_go_to_stderr(tmp_path, capsys):
    prefix = str(FIXTURES / "seed_two_gru_encoders" / "model")
    assert main(["convert", prefix, "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "rnnfuse convert: error: --scope: the checkpoint holds 2 RNN scopes" in err
    assert "['encoder1/rnn', 'encoder2/rnn']" in err
    assert (
        main(
            ["convert", prefix, "--scope", "encoder3/rnn", "--out", str(tmp_path / "x.safetensors")]
        )
        == 2
    )
    assert "no variables under 'encoder3/rnn'" in capsys.readouterr().err
    assert (
        main(["convert", str(tmp_path / "missing"), "--out", str(tmp_path / "x.safetensors")]) == 2
    )
    assert "rnnfuse convert: error:" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(SystemExit) as info:
        main(["convert", prefix])  # --out is required
    assert info.value.code == 2


def test_inspect_rnnfuse_file(tmp_path, capsys):
    path = tmp_path / "s.safetensors"
    save(StackedRNN(6, [8, 4], "lstm", forget_bias=1.0), path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"rnnfuse file {path}: 6 tensors"
    assert out[1].split() == ["layers.0.bias", "[32]", "float32"]
    assert out[-5:] == [
        "StackedRNN (batch_first=True)",
        "  layer 0: LSTMCell(6, 8, forget_bias=1.0)",
        "  layer 1: LSTMCell(8, 4, forget_bias=1.0)",
        "  outputs: [batch, time, 4]",
        "  state: (LSTMState(c=[batch, 8], h=[batch, 8]), LSTMState(c=[batch, 4], h=[batch, 4]))",
    ]


def test_inspect_errors(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    assert "is neither a TF1 checkpoint prefix" in capsys.readouterr().err
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"\x00" * 20)
    assert main(["inspect", str(foreign)]) == 2
    assert "rnnfuse inspect: error:" in capsys.readouterr().err


@pytest.mark.slow
def test_inspect_a_trained_forecaster(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--epochs",
                "1",
                "--local-sizes",
                "6",
                "--global-sizes",
                "6",
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    path = run / "best.safetensors"
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"rnnfuse forecaster {path} (format 'rnnfuse-forecaster/1', written by `rnnfuse train`)"
    )
    assert ["encoders.encoders.local.layers.0.weight_hh", "[24,", "6]", "float32"] in [
        line.split() for line in out
    ]
    assert "configuration:" in out
    assert any(
        line.startswith('  model: fusion="concat"') and "local_sizes=[6]" in line for line in out
    )
    assert out[-1] == f"forecast with: rnnfuse predict --model {path}"
    # a forecaster whose tensors do not fit its configuration is a one-line error
    from rnnfuse.app.checkpoint import load_model_file, save_model_file

    tensors, meta = load_model_file(path)
    tensors.pop("head.bias")
    save_model_file(tmp_path / "bad.safetensors", tensors, meta)
    assert main(["inspect", str(tmp_path / "bad.safetensors")]) == 2
    err = capsys.readouterr().err
    assert (
        "rnnfuse inspect: error:" in err
        and "missing: ['head.bias']" in err
        and len(err.strip().splitlines()) == 1
    )
