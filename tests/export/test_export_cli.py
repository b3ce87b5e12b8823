"""``rnnfuse export --onnx MODEL OUT`` end to end: stack files and a forecaster's file, each
exported, then run in onnxruntime by the test itself at sizes unlike the example's and
compared with the eager model; one-line errors for files that are not models."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_leaves

from rnnfuse import GRUCell, LSTMCell, StackedRNN
from rnnfuse.cli import main
from rnnfuse.io import save

pytestmark = pytest.mark.slow
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _export(capsys, argv):
    code = main(["export", "--onnx", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _checked_difference(out: str) -> float:
    """The command's own onnxruntime check, as it prints it."""
    found = re.search(r"max abs difference to eager (\S+)", out)
    assert found, out
    return float(found.group(1))


def _run(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session, session.run(None, dict(zip(names, [t.numpy() for t in inputs])))


def test_export_time_major_stack_with_dynamic_batch_and_time(tmp_path, capsys):
    """Peephole LSTM with a forget bias, then a TF1 reset-before GRU, both directions,
    time-major: the file serves other batch sizes, T and lengths (a zero length too)."""
    torch.manual_seed(0)
    fw = [LSTMCell(4, 6, peepholes=True, forget_bias=1.0), GRUCell(12, 5, reset_after=False)]
    bw = [LSTMCell(4, 6, peepholes=True, forget_bias=1.0), GRUCell(12, 5)]
    stack = StackedRNN.from_cells(fw, backward_cells=bw, batch_first=False)
    model, onnx_file = tmp_path / "stack.safetensors", tmp_path / "stack.onnx"
    save(stack, model)
    code, out, err = _export(capsys, [str(model), str(onnx_file)])
    assert code == 0, err
    assert "batch and time dynamic" in out and _checked_difference(out) <= 1e-5
    x, lengths = torch.randn(9, 6, 4), torch.tensor([9, 1, 0, 4, 7, 9])  # (T, B, F)
    session, got = _run(onnx_file, [x, lengths])
    assert [i.shape for i in session.get_inputs()] == [["time", "batch", 4], ["batch"]]
    with torch.no_grad():
        expected = [t.numpy() for t in tree_leaves(stack(x, lengths))]
    assert len(got) == len(expected)
    assert max(float(np.abs(a - b).max()) for a, b in zip(got, expected)) <= 1e-5


def test_export_no_dynamic_fixes_the_example_sizes(tmp_path, capsys):
    """An LSTM with a cell clip and a projection (an ONNX Loop), at the example's sizes."""
    stack = StackedRNN(3, [4], cell_clip=0.5, proj_size=2)
    model, onnx_file = tmp_path / "rnn.safetensors", tmp_path / "rnn.onnx"
    save(stack, model)
    code, out, err = _export(capsys, [str(model), str(onnx_file), "--no-dynamic"])
    assert code == 0, err
    assert "batch and time fixed" in out and _checked_difference(out) <= 1e-5
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.shape for i in session.get_inputs()] == [[2, 5, 3], [2]]


def _forecaster_file(path):
    """A forecaster's file as ``rnnfuse train`` writes it (untrained weights: the export
    does not care), small: 3 steps ahead, attention, a bridge to the decoder's sizes."""
    from rnnfuse.app.checkpoint import MODEL_FORMAT, save_model_file
    from rnnfuse.app.config import DataConfig, ModelConfig, RunConfig
    from rnnfuse.app.model import build_model

    config = RunConfig(
        data=DataConfig(local_steps=6, global_blocks=8, min_global_blocks=2, horizon=3),
        model=ModelConfig(
            local_sizes=(4,),
            global_sizes=(4,),
            decoder_sizes=(5,),
            attention=True,
            attention_size=4,
        ),
    )
    torch.manual_seed(1)
    model = build_model(config.model)
    save_model_file(
        path, model.state_dict(), {"format": MODEL_FORMAT, "config": config.to_dict(), "scale": 2.0}
    )
    return model.eval()


def test_export_forecaster_rollout_with_dynamic_batch_and_encoder_steps(tmp_path, capsys):
    pytest.importorskip("rnnfuse.app.predict")
    model_file, onnx_file = tmp_path / "best.safetensors", tmp_path / "forecaster.onnx"
    model = _forecaster_file(model_file)
    code, out, err = _export(capsys, [str(tmp_path), str(onnx_file)])  # the run directory
    assert code == 0, err
    assert "forecaster (local, global; 3 steps" in out and _checked_difference(out) <= 1e-5
    local, glob = torch.randn(5, 9, 3), torch.randn(5, 4, 3)
    start, covariates, lengths = (
        torch.randn(5, 1),
        torch.randn(5, 3, 2),
        torch.tensor([4, 1, 3, 4, 2]),
    )
    _, got = _run(onnx_file, [local, glob, start, covariates, lengths])
    with torch.no_grad():
        expected = model.generate(
            {"local": local, "global": glob},
            start=start,
            steps=3,
            covariates=covariates,
            lengths={"global": lengths},
        )
    assert got[0].shape == (5, 3, 1)
    assert float(np.abs(got[0] - expected.numpy()).max()) <= 1e-5


def test_export_bad_files_give_one_line_errors(tmp_path, capsys):
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    foreign = tmp_path / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(foreign))
    for path, problem in (
        (tmp_path / "missing.safetensors", "no such file"),
        (garbage, "not a readable safetensors file"),
        (foreign, "rnnfuse"),
    ):
        code, out, err = _export(capsys, [str(path), str(tmp_path / "out.onnx")])
        assert code == 2, (path, out)
        assert err.startswith("rnnfuse export: error: ") and problem in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out.onnx").exists()
