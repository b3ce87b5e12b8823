"""``rnnfuse convert`` on every kind of file ``rnnfuse inspect`` reads.

Each case converts a fixture that TensorFlow or Keras wrote (tests/fixtures; see their
READMEs) with the flags the file needs, loads the written stack file with
:func:`rnnfuse.io.load`, and checks it twice: against the module the direct loader builds
from the same file (the same numbers, exactly) and against the numbers TensorFlow/Keras
computed (``io.npz``, to 1e-6).  The forecaster's and the stack file's cases check against
the modules they hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest
import torch
from torch.utils._pytree import tree_leaves

from rnnfuse import StackedRNN, load, save, stack_from_keras
from rnnfuse.cli import main
from rnnfuse.convert.keras import lengths_from_masking
from rnnfuse.convert.tf2 import stack_from_tf2
from rnnfuse.tf1 import load_stack

FIXTURES = Path(__file__).parents[1] / "fixtures"
LEGACY = FIXTURES / "legacy"
TOL = 1e-6


class Case(NamedTuple):
    """A file, the flags ``rnnfuse convert`` needs for it, the direct loader's module, and
    ``expected(outputs, state, data)``: pairs (rnnfuse tensor, TensorFlow's array name)."""

    path: Path
    flags: list[str]
    direct: Callable[[], Any]
    expected: Callable[[Any, Any], list[tuple[torch.Tensor, str]]]
    x: str = "x"
    lengths: str | None = None  # an io.npz key, "masking" (Keras' Masking), or None


def _keras2(case: str, file: str) -> Case:
    """Keras 2 LSTM -> GRU behind a Masking layer, a Dense head left out."""
    return Case(
        LEGACY / case / file,
        ["--layer", "lstm", "--layer", "gru"],
        lambda: stack_from_keras(LEGACY / case / file, layer_names=["lstm", "gru"]),
        lambda out, state: [
            (state[0].h, "lstm/state/h"),
            (state[0].c, "lstm/state/c"),
            (state[1], "gru/state/h"),
        ],
        lengths="masking",
    )


CASES = {
    "tf1 checkpoint": Case(
        FIXTURES / "tf1" / "mixed_multi" / "model",
        [],
        lambda: load_stack(FIXTURES / "tf1" / "mixed_multi" / "model", "rnn"),
        lambda out, state: [
            (out, "outputs"),
            (state[0].c, "state/0/c"),
            (state[0].h, "state/0/h"),
            (state[1], "state/1"),
            (state[2], "state/2"),
        ],
    ),
    "tf1 checkpoint, bidirectional, ragged": Case(
        FIXTURES / "tf1" / "bidirectional_multi_lstm" / "model.index",
        [],
        lambda: load_stack(
            FIXTURES / "tf1" / "bidirectional_multi_lstm" / "model", "bidirectional_rnn"
        ),
        lambda out, state: [
            (out[..., :4], "outputs/fw"),  # [fw, bw] concatenated
            (out[..., 4:], "outputs/bw"),
            (state.fw[1].h, "state/fw/1/h"),
            (state.bw[1].c, "state/bw/1/c"),
        ],
        lengths="sequence_length",
    ),
    "tf1 checkpoint, EMA shadows": Case(
        LEGACY / "trained_ema" / "model",
        ["--ema"],
        lambda: load_stack(LEGACY / "trained_ema" / "model", "rnn", use_ema=True),
        lambda out, state: [(out, "ema/outputs"), (state[1].h, "ema/state/1/h")],
        lengths="sequence_length",
    ),
    "tf1 checkpoint, two scopes, residual": Case(
        LEGACY / "gnmt_encoder" / "model",
        ["--scope", "encoder/bidirectional_rnn", "--scope", "encoder/rnn", "--residual", "2"],
        lambda: load_stack(
            LEGACY / "gnmt_encoder" / "model",
            ["encoder/bidirectional_rnn", "encoder/rnn"],
            residual=[False, False, True],
        ),
        lambda out, state: [(out, "outputs"), (state[2].h, "encoder_state/2/h")],
        lengths="sequence_length",
    ),
    "tf2 object-based checkpoint": Case(
        LEGACY / "tf2_checkpoint" / "ckpt-1",
        ["--layer", "lstm", "--layer", "gru", "--layer", "simple_rnn"],
        lambda: stack_from_tf2(
            LEGACY / "tf2_checkpoint" / "ckpt-1", layer_names=["lstm", "gru", "simple_rnn"]
        ),
        lambda out, state: [
            (out, "simple_rnn/outputs"),
            (state[0].c, "lstm/state/c"),
            (state[1], "gru/state/h"),
        ],
    ),
    "tf2 save_weights": Case(
        LEGACY / "tf2_save_weights" / "weights",
        [],
        lambda: stack_from_tf2(LEGACY / "tf2_save_weights" / "weights"),
        lambda out, state: [(out, "outputs"), (state[-1], "gru/state/h")],
    ),
    "tf2 checkpoint, GRU without bias": Case(
        LEGACY / "tf2_gru_nobias" / "ckpt-1",
        ["--reset-after", "false"],
        lambda: stack_from_tf2(LEGACY / "tf2_gru_nobias" / "ckpt-1", reset_after=False),
        lambda out, state: [(out, "outputs"), (state[0], "gru/state/h")],
    ),
    "tf2 checkpoint of a subclassed model": Case(
        LEGACY / "tf2_subclassed" / "ckpt-1.index",
        ["--layer", "encoder/lstm", "--layer", "encoder/gru"],
        lambda: stack_from_tf2(
            LEGACY / "tf2_subclassed" / "ckpt-1", layer_names=["encoder/lstm", "encoder/gru"]
        ),
        lambda out, state: [
            (out, "outputs"),
            (state[0].h, "lstm/state/h"),
            (state[1], "gru/state/h"),
        ],
    ),
    "tf2 SavedModel": Case(
        LEGACY / "tf2_saved_model" / "saved_model",
        [],
        lambda: stack_from_tf2(LEGACY / "tf2_saved_model" / "saved_model"),
        lambda out, state: [(out, "outputs"), (state[0], "simple_rnn/state/h")],
    ),
    "keras 2 SavedModel": Case(
        LEGACY / "keras2_savedmodel" / "saved_model",
        ["--layer", "lstm"],
        lambda: stack_from_keras(
            LEGACY / "keras2_savedmodel" / "saved_model", layer_names=["lstm"]
        ),
        lambda out, state: [(out, "lstm/outputs"), (state[0].c, "lstm/state/c")],
    ),
    "keras 2 .h5": _keras2("keras2_h5_full", "model.h5"),
    "keras 2 weights-only .h5": _keras2("keras2_h5_weights", "weights.h5"),
    "keras 2 .keras": _keras2("keras2_keras_v2", "model.keras"),
    "keras 3 .keras, stacked Bidirectional": Case(
        LEGACY / "keras3_bidirectional_stacked" / "bidirectional_stacked.keras",
        [],
        lambda: stack_from_keras(
            LEGACY / "keras3_bidirectional_stacked" / "bidirectional_stacked.keras"
        ),
        lambda out, state: [
            (out, "ragged/bidirectional_stacked/bi_mul/outputs"),
            (state[2].fw.c, "ragged/bidirectional_stacked/bi_mul/state/fw/c"),
            (state[0].bw.h, "ragged/bidirectional_stacked/bi_sum/state/bw/h"),
        ],
        x="ragged/x",
        lengths="masking",
    ),
    "keras 3 .keras, one chain of a seq2seq model": Case(
        LEGACY / "keras3_seq2seq" / "seq2seq.keras",
        ["--layer", "encoder"],
        lambda: stack_from_keras(
            LEGACY / "keras3_seq2seq" / "seq2seq.keras", layer_names=["encoder"]
        ),
        lambda out, state: [
            (state[0].h, "seq2seq/encoder/state/h"),
            (state[0].c, "seq2seq/encoder/state/c"),
        ],
        x="encoder_inputs",
    ),
}


def _convert(tmp_path: Path, path: Path | str, *flags: str) -> Any:
    out = tmp_path / "converted.safetensors"
    assert main(["convert", str(path), *flags, "--out", str(out)]) == 0
    return load(out)


def _inputs(case: Case, data: dict[str, np.ndarray]) -> tuple[torch.Tensor, Any]:
    x = torch.from_numpy(data[case.x])
    if case.lengths == "masking":
        return x, lengths_from_masking(x)
    return x, None if case.lengths is None else torch.from_numpy(data[case.lengths])


def _same(got: Any, want: Any) -> None:
    """The same structure of tensors, equal to the bit."""
    got_leaves, want_leaves = tree_leaves(got), tree_leaves(want)
    assert len(got_leaves) == len(want_leaves) > 0
    for a, b in zip(got_leaves, want_leaves, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(CASES))
def test_convert_gives_the_direct_loaders_and_tensorflows_numbers(name, tmp_path, capsys):
    case = CASES[name]
    converted = _convert(tmp_path, case.path, *case.flags)
    assert capsys.readouterr().out.startswith(f"wrote {tmp_path / 'converted.safetensors'}: ")
    direct = case.direct()
    assert type(converted) is type(direct)
    assert converted.state_dict().keys() == direct.state_dict().keys()
    with np.load(case.path.parent / "io.npz") as npz:
        data = {key: npz[key] for key in npz.files}
    x, lengths = _inputs(case, data)
    with torch.no_grad():
        got = converted(x, lengths)
        _same(got, direct(x, lengths))
    for tensor, key in case.expected(*got):
        assert tensor.shape == data[key].shape, key
        assert float(np.abs(tensor.numpy() - data[key]).max()) <= TOL, key


def test_convert_keras_merge_mode_none_writes_the_concatenated_stack(tmp_path, capsys):
    path = LEGACY / "keras3_merge_modes" / "merge_modes.keras"
    converted = _convert(tmp_path, path, "--layer", "bi_none")
    assert "merge_mode=None" in capsys.readouterr().out
    direct = stack_from_keras(path, layer_names=["bi_none"])  # a MergedBidirectional
    with np.load(path.parent / "io.npz") as data:
        x = torch.from_numpy(data["ragged/x"])
        lengths = lengths_from_masking(x)
        with torch.no_grad():
            out, state = converted(x, lengths)
            (fw, bw), direct_state = direct(x, lengths)
        _same((out.chunk(2, dim=-1), state), ((fw, bw), direct_state))
        for tensor, key in ((fw, "outputs/fw"), (bw, "outputs/bw")):
            want = data[f"ragged/merge_modes/bi_none/{key}"]
            assert float(np.abs(tensor.numpy() - want).max()) <= TOL


def test_convert_a_forecasters_stack(tmp_path, capsys):
    from rnnfuse.app.checkpoint import MODEL_FORMAT, save_model_file
    from rnnfuse.app.config import ModelConfig, RunConfig
    from rnnfuse.app.model import build_model

    torch.manual_seed(0)
    config = RunConfig(model=ModelConfig(local_sizes=(4, 3), global_sizes=(4, 3)))
    model = build_model(config.model)
    path = tmp_path / "best.safetensors"
    meta = {"format": MODEL_FORMAT, "config": config.to_dict(), "scale": 1.5, "epoch": 1}
    save_model_file(path, model.state_dict(), meta)
    for name, stack in [*model.encoders.encoders.items(), ("decoder", model.decoder)]:
        converted = _convert(tmp_path, path, "--stack", name)
        assert f"from the forecaster's {name!r} stack" in capsys.readouterr().out
        x = torch.randn(2, 7, stack.input_size)
        with torch.no_grad():
            _same(converted(x), stack(x))
    assert main(["convert", str(path), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--stack: a forecaster holds the stacks ['local', 'global', 'decoder']" in err


def test_convert_a_stack_file_to_time_major(tmp_path):
    path = tmp_path / "stack.safetensors"
    stack = StackedRNN(3, [5, 4], "lstm", bidirectional=True)
    save(stack, path)
    converted = _convert(tmp_path, path, "--time-major")
    assert not converted.batch_first
    x = torch.randn(2, 6, 3)
    with torch.no_grad():
        out, state = converted(x.transpose(0, 1), torch.tensor([6, 4]))
        _same((out.transpose(0, 1), state), stack(x, torch.tensor([6, 4])))


@pytest.mark.parametrize(
    "path, flags, message",
    [
        (
            LEGACY / "keras3_seq2seq" / "seq2seq.keras",
            [],
            "form 2 separate chains, not one stack",
        ),
        (LEGACY / "keras3_seq2seq" / "seq2seq.keras", [], "--layer encoder or --layer decoder"),
        (LEGACY / "keras2_h5_full" / "model.h5", [], "pass --layer lstm --layer gru to import"),
        (LEGACY / "tf2_gru_nobias" / "ckpt-1", [], "--reset-after true|false"),
        (LEGACY / "keras3_go_backwards" / "lstm.keras", [], "a lone go_backwards layer"),
        (
            LEGACY / "keras2_h5_full" / "model.h5",
            ["--scope", "rnn", "--ema"],
            "--scope, --ema: not an option for a Keras file",
        ),
        (
            FIXTURES / "tf1" / "gru" / "model",
            ["--layer", "gru"],
            "its options: --scope, --residual, --forget-bias",
        ),
        (
            FIXTURES / "tf1" / "gru" / "model",
            ["--stack", "local"],
            "--stack: not an option for a TF1 checkpoint",
        ),
        (
            LEGACY / "tf2_saved_model" / "saved_model",
            ["--forget-bias", "0.5"],
            "--forget-bias: not an option for a TF2 SavedModel",
        ),
    ],
)
def test_convert_errors_name_the_flag(path, flags, message, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    assert main(["convert", str(path), *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rnnfuse convert: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_help_lists_the_commands_by_group(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    groups = [line for line in text.splitlines() if line and not line.startswith(" ")]
    assert [g for g in groups if g.endswith(":")][-4:] == [
        "forecaster:",
        "files of TensorFlow, Keras and rnnfuse:",
        "deployment:",
        "kernels:",
    ]
    for command in ("demo", "train", "predict", "inspect", "convert", "export", "build-kernels"):
        assert any(line.split()[:1] == [command] for line in text.splitlines()), command
