"""Keras models as found in public repositories, against the numbers Keras computed
(tests/fixtures/legacy: tf-keras 2.21 ``.h5`` and Keras 3 ``.keras`` files, generators
beside them): Keras 2.2-style ``hard_sigmoid`` gates and Keras 3's, other activations,
``Bidirectional`` layers of every merge mode stacked on each other, and the
``lstm_seq2seq`` encoder-decoder, whose two LSTMs are two chains, not one stack.

As in test_keras_legacy.py, a plain Keras LSTM/GRU repeats its previous output at masked
steps where rnnfuse writes zeros: those outputs are compared on the valid steps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_keras_legacy import LEGACY, close, io, one_layer, valid

from rnnfuse import StackedRNN, stack_from_keras, stacks_from_keras
from rnnfuse.cli import main
from rnnfuse.convert.keras import lengths_from_masking


@pytest.mark.parametrize(
    "case, file, prefix, gate, ragged",
    [
        (
            "keras2_hard_sigmoid",
            "model.h5",
            "",
            "hard_sigmoid_keras2",
            False,
        ),  # x is masked (ragged)
        ("keras3_hard_sigmoid", "hard_sigmoid.keras", "hard_sigmoid/", "hard_sigmoid", False),
        ("keras3_hard_sigmoid", "hard_sigmoid.keras", "hard_sigmoid/", "hard_sigmoid", True),
        ("keras3_hard_sigmoid", "activations.keras", "activations/", "hard_silu", False),
        ("keras3_hard_sigmoid", "activations.keras", "activations/", "hard_silu", True),
    ],
)
def test_activations_match_keras(case, file, prefix, gate, ragged):
    data = io(case)
    x = torch.from_numpy(data["ragged/x" if ragged else "x"])
    key = ("ragged/" if ragged else "") + prefix
    lengths = lengths_from_masking(x)
    stack = stack_from_keras(LEGACY / case / file)
    assert stack.layers[0].recurrent_activation == gate  # the name read as that Keras defines it
    mask = valid(lengths, x.shape[1])
    with torch.no_grad():
        out, (lstm, gru) = stack(x, lengths)
        lstm_out, _ = one_layer(stack, 0)(x, lengths)
    close(lstm_out, data[f"{key}lstm/outputs"], mask)
    close(out, data[f"{key}gru/outputs"], mask)
    close(lstm.h, data[f"{key}lstm/state/h"]), close(lstm.c, data[f"{key}lstm/state/c"])
    close(gru, data[f"{key}gru/state/h"])


def test_keras2_hard_sigmoid_is_not_keras3s():
    """The same file read with Keras 3's hard_sigmoid misses Keras 2's numbers."""
    data = io("keras2_hard_sigmoid")
    x = torch.from_numpy(data["x"])
    stack = stack_from_keras(LEGACY / "keras2_hard_sigmoid" / "model.h5")
    stack.layers[0].lstm_options = stack.layers[0].lstm_options._replace(
        recurrent_activation="hard_sigmoid"
    )
    with torch.no_grad():
        _, (lstm, _) = stack(x, lengths_from_masking(x))
    assert np.abs(lstm.h.numpy() - data["lstm/state/h"]).max() > 1e-3


@pytest.mark.parametrize(
    "case, file, key",
    [
        ("keras2_bidirectional_stacked", "model.h5", ""),
        ("keras3_bidirectional_stacked", "bidirectional_stacked.keras", "bidirectional_stacked/"),
        (
            "keras3_bidirectional_stacked",
            "bidirectional_stacked.keras",
            "ragged/bidirectional_stacked/",
        ),
    ],
)
def test_stacked_bidirectional_merges_match_keras(case, file, key):
    data = io(case)
    x = torch.from_numpy(data["ragged/x" if key.startswith("ragged/") else "x"])
    lengths = lengths_from_masking(x)
    stack = stack_from_keras(LEGACY / case / file)
    assert isinstance(stack, StackedRNN) and stack.merge_modes == ("sum", "ave", "mul")
    with torch.no_grad():
        out, state = stack(x, lengths)  # one BidirectionalState per layer
        fw, bw = [s.fw for s in state], [s.bw for s in state]
        layer_in = x
        for k, tag in enumerate(("bi_sum", "bi_ave", "bi_mul")):
            single = StackedRNN.from_cells(
                [stack.layers[k]],
                backward_cells=[stack.backward_cell(k)],
                merge_mode=stack.merge_modes[k],
            )
            layer_in, _ = single(layer_in, lengths)
            close(
                layer_in, data[f"{key}{tag}/outputs"]
            )  # Bidirectional: zeros when masked in Keras too
            for side, state in (("fw", fw[k]), ("bw", bw[k])):
                h = state if isinstance(state, torch.Tensor) else state.h
                close(h, data[f"{key}{tag}/state/{side}/h"])
                if not isinstance(state, torch.Tensor):
                    close(state.c, data[f"{key}{tag}/state/{side}/c"])
    close(out, data[f"{key}bi_mul/outputs"])


@pytest.mark.parametrize(
    "case, file, key",
    [
        ("keras2_seq2seq", "model.h5", ""),
        ("keras3_seq2seq", "seq2seq.keras", "seq2seq/"),
    ],
)
def test_lstm_seq2seq_is_two_chains(case, file, key):
    path = LEGACY / case / file
    # the sizes would chain (decoder tokens = latent units), but the decoder reads its own input
    with pytest.raises(
        ValueError,
        match=r"2 separate chains.*\['encoder'\] on input 'encoder_inputs'; "
        r"2\. \['decoder'\] on input 'decoder_inputs', its initial state "
        r"from 'encoder'.*layer_names=\['encoder'\] or layer_names=\['decoder'\]",
    ):
        stack_from_keras(path)
    with pytest.raises(
        ValueError, match="layer_names: 'decoder' does not read the output sequence of 'encoder'"
    ):
        stack_from_keras(path, layer_names=["encoder", "decoder"])
    modules = stacks_from_keras(path)
    assert list(modules) == ["encoder", "decoder"]
    data = io(case)
    with torch.no_grad():
        _, encoder_state = modules["encoder"](torch.from_numpy(data["encoder_inputs"]))
        out, (decoder_state,) = modules["decoder"](
            torch.from_numpy(data["decoder_inputs"]), initial_state=(encoder_state[-1],)
        )
    (
        close(encoder_state[0].h, data[f"{key}encoder/state/h"]),
        close(encoder_state[0].c, data[f"{key}encoder/state/c"]),
    )
    close(out, data[f"{key}decoder/outputs"])
    (
        close(decoder_state.h, data[f"{key}decoder/state/h"]),
        close(decoder_state.c, data[f"{key}decoder/state/c"]),
    )
    # one chain alone loads with its layer_names
    assert stack_from_keras(path, layer_names=["decoder"]).input_size == 4


def test_inspect_suggests_each_chain_alone(capsys):
    assert main(["inspect", str(LEGACY / "keras3_seq2seq" / "seq2seq.keras")]) == 0
    text = capsys.readouterr().out
    assert "2 separate chains" in text and "stacks_from_keras(path)" in text
    assert (
        "layer_names=['encoder']) -> StackedRNN" in text
        and "layer_names=['decoder']) -> StackedRNN" in text
    )
    assert "['encoder', 'decoder']" not in text


def test_parallel_branches_are_separate_chains():
    """keras3_merge_modes: five Bidirectional layers on one input, five chains."""
    path = LEGACY / "keras3_merge_modes" / "merge_modes.keras"
    with pytest.raises(ValueError, match="5 separate chains"):
        stack_from_keras(path)
    assert list(stacks_from_keras(path)) == ["bi_concat", "bi_sum", "bi_mul", "bi_ave", "bi_none"]


def _rewrite_h5(source, target, change) -> None:
    """A copy of a Keras .h5 file with its root attributes changed by ``change(attrs)``."""
    import shutil

    import h5py

    shutil.copy(source, target)
    with h5py.File(target, "r+") as f:
        change(f.attrs)


def test_keras_2_1_sequential_file_loads(tmp_path):
    """Keras <= 2.1 wrote a Sequential model's configuration as the bare list of its layers,
    and a GRU configuration without reset_after (then always False): the keras2_hard_sigmoid
    model with its configuration written that way gives Keras' numbers."""
    import json

    def old_style(attrs) -> None:
        config = json.loads(attrs["model_config"])
        layers = [
            {
                "class_name": e["class_name"],
                "config": {k: v for k, v in e["config"].items() if k != "reset_after"},
            }
            for e in config["config"]["layers"]
            if e["class_name"] != "InputLayer"
        ]
        attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers})
        attrs["keras_version"] = "2.1.6"

    path = tmp_path / "old.h5"
    _rewrite_h5(LEGACY / "keras2_hard_sigmoid" / "model.h5", path, old_style)
    data = io("keras2_hard_sigmoid")
    x = torch.from_numpy(data["x"])
    stack = stack_from_keras(path)
    assert stack.layers[1].reset_after is False
    with torch.no_grad():
        _, (lstm, gru) = stack(x, lengths_from_masking(x))
    close(lstm.h, data["lstm/state/h"]), close(gru, data["gru/state/h"])


def test_keras_1_files_are_refused(tmp_path):
    path = tmp_path / "keras1.h5"
    _rewrite_h5(
        LEGACY / "keras2_hard_sigmoid" / "model.h5",
        path,
        lambda attrs: attrs.__setitem__("keras_version", "1.2.2"),
    )
    with pytest.raises(ValueError, match="written by Keras 1.2.2, which rnnfuse does not read"):
        stack_from_keras(path)


def test_a_keras3_legacy_h5_reads_hard_sigmoid_as_keras_3(tmp_path):
    """Keras 3 writes legacy .h5 files too; their keras_version says which hard_sigmoid."""
    path = tmp_path / "k3.h5"
    _rewrite_h5(
        LEGACY / "keras2_hard_sigmoid" / "model.h5",
        path,
        lambda attrs: attrs.__setitem__("keras_version", "3.15.1"),
    )
    assert stack_from_keras(path).layers[0].recurrent_activation == "hard_sigmoid"


def test_a_live_keras3_encoder_decoder_is_two_chains():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    L = keras.layers
    enc_in, dec_in = keras.Input((None, 3), name="enc_in"), keras.Input((None, 4), name="dec_in")
    _, h, c = L.LSTM(4, return_state=True, name="enc")(enc_in)
    seq = L.LSTM(4, return_sequences=True, name="dec")(L.Dropout(0.1)(dec_in), initial_state=[h, c])
    top = L.GRU(2, name="top")(L.Masking()(seq))  # reads dec through Masking: dec and top stack
    model = keras.Model([enc_in, dec_in], top)
    with pytest.raises(
        ValueError,
        match=r"\['enc'\] on input 'enc_in'; 2\. \['dec', 'top'\] on input "
        r"'dec_in', its initial state from 'enc'",
    ):
        stack_from_keras(model)
    assert {k: v.hidden_sizes for k, v in stacks_from_keras(model).items()} == {
        "enc": (4,),
        "top": (4, 2),
    }


def test_a_graph_whose_layers_read_each_other_is_refused(tmp_path):
    """A corrupt model_config where two LSTMs read each other: a clear error, no stack."""
    import json

    def cycle(attrs) -> None:
        config = json.loads(attrs["model_config"])
        by_name = {e["name"]: e for e in config["config"]["layers"]}
        by_name["lstm"]["inbound_nodes"] = [[["gru", 0, 0, {}]]]
        attrs["model_config"] = json.dumps(config)

    path = tmp_path / "cycle.h5"
    _rewrite_h5(LEGACY / "keras2_hard_sigmoid" / "model.h5", path, cycle)
    with pytest.raises(
        ValueError, match=r"the model's graph has a cycle: layers \['gru', 'lstm'\] read each other"
    ):
        stack_from_keras(path)


def test_a_sequential_autoencoder_is_two_chains(tmp_path):
    """LSTM -> RepeatVector -> LSTM (the LSTM autoencoder of many tutorials), Sequential:
    the second LSTM reads the RepeatVector, not the first LSTM's sequence; a Sequential
    LSTM -> Dropout -> LSTM is one stack."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    L = keras.layers
    auto = keras.Sequential(
        [
            keras.Input((5, 3)),
            L.LSTM(4, name="enc"),
            L.RepeatVector(5, name="repeat"),
            L.LSTM(4, return_sequences=True, name="dec"),
        ]
    )
    path = tmp_path / "auto.keras"
    auto.save(path)
    for source in (auto, path):
        with pytest.raises(
            ValueError,
            match=r"\['enc'\] on (the model's input|input 'input_layer(_\d+)?'); 2\. \['dec'\] reading 'repeat'",
        ):
            stack_from_keras(source)
        with pytest.raises(
            ValueError,
            match="layer_names: 'dec' does not read the output sequence of 'enc' "
            "\\(it reads 'repeat'\\)",
        ):
            stack_from_keras(source, layer_names=["enc", "dec"])
    plain = keras.Sequential(
        [keras.Input((5, 3)), L.LSTM(4, return_sequences=True), L.Dropout(0.5), L.GRU(2)]
    )
    assert stack_from_keras(plain).hidden_sizes == (4, 2)
