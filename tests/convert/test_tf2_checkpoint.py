"""TF2 object-based checkpoints (``tf.train.Checkpoint``, Keras ``save_weights``) and
``tf.saved_model.save`` exports against the numbers TensorFlow computed
(tests/fixtures/legacy/tf2_*, written by ``make_tf2_fixtures.py``; no masking: full
sequences)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from legacy_cases import LEGACY, close, io

from rnnfuse import StackedRNN, load, stack_from_keras
from rnnfuse.cli import main
from rnnfuse.convert.tf2 import read_object_checkpoint, stack_from_tf2
from rnnfuse.tf1 import CheckpointError, load_stack, read_checkpoint

CKPT = LEGACY / "tf2_checkpoint" / "ckpt-1"
WEIGHTS = LEGACY / "tf2_save_weights" / "weights"
NOBIAS = LEGACY / "tf2_gru_nobias" / "ckpt-1"
SAVED = LEGACY / "tf2_saved_model" / "saved_model"


def one_layer(stack: StackedRNN, k: int) -> StackedRNN:
    bw = stack.backward_cell(k)
    return StackedRNN.from_cells([stack.layers[k]], backward_cells=None if bw is None else [bw])


def test_checkpoint_lstm_gru_simple_rnn_match_tensorflow():
    data = io("tf2_checkpoint")
    stack = stack_from_tf2(CKPT, layer_names=["lstm", "gru", "simple_rnn"])
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        out, (lstm, gru, rnn) = stack(x)
        lstm_out, _ = one_layer(stack, 0)(x)
    close(out, data["simple_rnn/outputs"])
    close(lstm_out, data["lstm/outputs"])
    close(lstm.h, data["lstm/state/h"]), close(lstm.c, data["lstm/state/c"])
    close(gru, data["gru/state/h"]), close(rnn, data["simple_rnn/state/h"])


def test_checkpoint_read_by_stack_from_keras_and_the_index_path():
    data = io("tf2_checkpoint")
    for path in (CKPT, f"{CKPT}.index"):
        stack = stack_from_keras(path, layer_names=["lstm", "gru", "simple_rnn"])
        with torch.no_grad():
            close(stack(torch.from_numpy(data["x"]))[0], data["simple_rnn/outputs"])


def test_checkpoint_contents_skip_the_optimizer_and_name_the_head():
    found = read_object_checkpoint(str(CKPT))
    assert [(lay.name, lay.class_name) for lay in found.layers] == [
        ("lstm", "LSTM"),
        ("gru", "GRU"),
        ("simple_rnn", "SimpleRNN"),
        ("dense", "<dense>"),
    ]
    assert found.layers[1].config["reset_after"] is True
    assert found.skipped["counter"] == ["save_counter"]
    assert len(found.skipped["optimizer"]) == 24  # m and v of 11 variables, iterations, rate
    with pytest.raises(ValueError, match=r"layer_names=\['lstm', 'gru', 'simple_rnn'\]"):
        stack_from_tf2(CKPT)  # the Dense head is not recurrent


def test_save_weights_bidirectional_and_reset_before_gru():
    data = io("tf2_save_weights")
    stack = stack_from_tf2(WEIGHTS)
    assert stack.bidirectional == (True, False)
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        out, ((fw, bw), gru) = stack(x)
        bi_out, _ = one_layer(stack, 0)(x)
    close(bi_out, data["bidirectional/outputs"]), close(out, data["outputs"])
    close(fw.h, data["bidirectional/state/fw/h"]), close(fw.c, data["bidirectional/state/fw/c"])
    close(bw.h, data["bidirectional/state/bw/h"]), close(bw.c, data["bidirectional/state/bw/c"])
    close(gru, data["gru/state/h"])
    found = read_object_checkpoint(str(WEIGHTS))
    assert found.layers[1].config["reset_after"] is False
    assert len(found.skipped["optimizer"]) == 23  # legacy Adam: 18 slot variables, 5 scalars


def test_gru_without_bias_needs_reset_after():
    data = io("tf2_gru_nobias")
    with pytest.raises(
        ValueError, match=r"reset_after: layer 'gru' is a GRU without bias.*pass reset_after"
    ):
        stack_from_tf2(NOBIAS)
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        out, (h,) = stack_from_tf2(NOBIAS, reset_after=False)(x)
        wrong, _ = stack_from_tf2(NOBIAS, reset_after=True)(x)
    close(out, data["outputs"]), close(h, data["gru/state/h"])
    assert float((wrong - torch.from_numpy(data["outputs"])).abs().max()) > 1e-3


def test_saved_model_without_keras_metadata():
    assert not (SAVED / "keras_metadata.pb").exists()
    data = io("tf2_saved_model")
    stack = stack_from_keras(SAVED)
    x = torch.from_numpy(data["x"])
    with torch.no_grad():
        out, (h1, h2) = stack(x)
        first, _ = one_layer(stack, 0)(x)
    close(out, data["outputs"]), close(first, data["simple_rnn/outputs"])
    close(h1, data["simple_rnn/state/h"]), close(h2, data["simple_rnn_1/state/h"])


def test_tf1_reader_explains_a_tf2_checkpoint():
    for call in (lambda: read_checkpoint(CKPT), lambda: load_stack(CKPT)):
        with pytest.raises(CheckpointError, match="TF2 object-based checkpoint.*stack_from_keras"):
            call()


def test_saved_model_with_tf1_variables_points_to_load_stack(tmp_path):
    directory = tmp_path / "export"
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"")
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(
            LEGACY / "static_rnn" / f"model{suffix}", directory / "variables" / f"variables{suffix}"
        )
    with pytest.raises(ValueError, match=r"TF1 name-based checkpoint.*rnnfuse.tf1.load_stack"):
        stack_from_keras(directory)


def test_corrupt_object_graph_is_one_clear_error(tmp_path):
    from rnnfuse.tf1.checkpoint.object_graph import parse_object_graph

    with pytest.raises(CheckpointError, match="not a TrackableObjectGraph"):
        parse_object_graph(b"\x0a\x04\x0a\x02\x08\x07")  # node 0 names child node 7 of 1
    with pytest.raises(CheckpointError, match="no nodes"):
        parse_object_graph(b"")


def test_inspect_and_convert_cli(tmp_path, capsys):
    assert main(["inspect", str(CKPT)]) == 0
    text = capsys.readouterr().out
    assert "TF2 object-based checkpoint" in text and "optimizer state, 24 variables" in text
    assert "lstm: LSTM(units=4), input 3" in text and "dense:" in text
    assert "layer_names=['lstm', 'gru', 'simple_rnn']" in text
    out = tmp_path / "stack.safetensors"
    assert main(["convert", str(WEIGHTS), "--out", str(out)]) == 0
    data = io("tf2_save_weights")
    with torch.no_grad():
        close(load(out)(torch.from_numpy(data["x"]))[0], data["outputs"])
    assert main(["convert", str(CKPT), "--layer", "lstm", "--layer", "gru", "--out", str(out)]) == 0
    assert main(["convert", str(NOBIAS), "--out", str(out)]) == 2
    assert "--reset-after" in capsys.readouterr().err
    assert main(["convert", str(NOBIAS), "--reset-after", "false", "--out", str(out)]) == 0
    assert main(["convert", str(SAVED), "--out", str(out)]) == 0
    assert main(["inspect", str(SAVED)]) == 0


def test_subclassed_model_needs_the_layer_order():
    prefix = LEGACY / "tf2_subclassed" / "ckpt-1"
    found = read_object_checkpoint(str(prefix))
    assert not found.ordered and found.skipped["other"] == ["step"]
    assert [lay.name for lay in found.layers] == ["encoder/dense", "encoder/lstm", "encoder/gru"]
    with pytest.raises(
        ValueError, match=r"layer_names: .* subclassed model .*\['encoder/lstm', 'encoder/gru'\]"
    ):
        stack_from_keras(prefix)
    data = io("tf2_subclassed")
    stack = stack_from_keras(prefix, layer_names=["encoder/lstm", "encoder/gru"])
    with torch.no_grad():
        out, (lstm, gru) = stack(torch.from_numpy(data["x"]))
    close(out, data["outputs"]), close(gru, data["gru/state/h"])
    close(lstm.h, data["lstm/state/h"]), close(lstm.c, data["lstm/state/c"])


def test_damaged_object_graphs_give_one_clear_error_or_a_graph():
    """Every truncation and many byte flips of a real object graph: a CheckpointError or a
    graph the walk reads without crashing (cycles included: each node is visited once)."""
    from rnnfuse.convert.tf2_checkpoint import _Walk
    from rnnfuse.tf1.checkpoint import read_object_bundle
    from rnnfuse.tf1.checkpoint.object_graph import parse_object_graph

    arrays, strings = read_object_bundle(CKPT)
    data = strings["_CHECKPOINTABLE_OBJECT_GRAPH"]
    rng = np.random.default_rng(7)
    damaged = [data[:n] for n in range(0, len(data), 7)]
    for _ in range(300):
        flipped = bytearray(data)
        flipped[rng.integers(len(data))] ^= 1 << int(rng.integers(8))
        damaged.append(bytes(flipped))
    for blob in damaged:
        try:
            nodes = parse_object_graph(blob)
        except CheckpointError:
            continue
        try:
            _Walk(nodes, arrays, "ckpt", None).run()
        except ValueError:  # KerasFormatError or a shape the converter refuses: clear errors
            pass
    root = parse_object_graph(data)[0]
    cyclic = [root._replace(children=(("a", 1),)), root._replace(children=(("b", 0),))]
    assert _Walk(cyclic, {}, "ckpt", None).run().layers == []
