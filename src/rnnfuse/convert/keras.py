"""Keras 3 recurrent layers → :class:`~rnnfuse.StackedRNN`.

Sources: a live Keras model (or a list of layers, or one layer), a ``.keras`` file or a
``.weights.h5`` file.  Files are read with ``h5py`` (and ``zipfile`` for ``.keras``); Keras
itself is not needed for them.  Layers: ``LSTM`` (gates i, f, c, o = rnnfuse's i, f, g, o),
``GRU`` (z, r, h → r, z, n; ``reset_after=True`` keeps its two biases, ``False`` is TF1's
GRU), ``SimpleRNN``, with their ``activation`` and ``recurrent_activation`` (the built-in
ones of :mod:`rnnfuse.cells.activations`; ``hard_sigmoid`` is read as the Keras that wrote
the file defines it: ``clip(0.2 x + 0.5, 0, 1)`` in Keras 2, ``relu6(x + 3) / 6`` in
Keras 3), each optionally in ``Bidirectional(merge_mode="concat")``
(every layer then is; layer k+1 reads fw|bw of layer k, as in StackedRNN), and ``RNN``
over ``LSTMCell``/``GRUCell``/``SimpleRNNCell``, ``StackedRNNCells([...])`` or a list of
cells (one stack layer per cell).  Kernels are
``(in, G*u)`` and act as ``x @ kernel``, so ``weight_ih = kernel.T``.

Strict: a layer with weights that is not recurrent (a ``Dense`` head), or a layer that
changes the numbers (``Activation``, ``Lambda``, ...), raises unless ``layer_names`` picks the
recurrent layers; weightless layers that change nothing at inference (``InputLayer``,
``Dropout``, ``Masking``) are passed over.  A ``Masking`` layer means padded inputs: pass
``lengths`` to the stack (outputs past a length are zero here; Keras repeats the last one).
``dropout``/``recurrent_dropout`` only act in training and are not imported; ``stateful`` and
``unroll`` do not change the weights.

A ``.weights.h5`` file holds no configuration: activations are taken to be Keras' defaults
(tanh, sigmoid), a GRU without bias to have Keras' default ``reset_after=True``, and the
layer order is rebuilt from the group names (Keras numbers each class in model order:
``lstm``, ``lstm_1``, ...) and the shapes; an ambiguous order raises and asks for
``layer_names`` (the group names, in model order).

>>> import os; _ = os.environ.setdefault("KERAS_BACKEND", "torch")
>>> import keras
>>> layer = keras.layers.GRU(8, return_sequences=True)
>>> model = keras.Sequential([keras.Input((5, 4)), layer])
>>> stack_from_keras(model).hidden_sizes
(8,)
"""

from __future__ import annotations

import io
import os
import re
import zipfile
import zlib
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch

from .._checks import check_lengths, check_sequence_input
from .._files import GIB, MIB, NotRegularFileError, check_regular_file, loads_json, read_zip_member
from ..cells import GRUCell, LSTMCell, RecurrentCell, RNNCell
from ..cells.activations import keras_activation
from ..kernels import run_layer
from ..stack import StackedRNN
from ._h5_checks import MAX_WEIGHT_BYTES, check_h5_file
from ._keras_graph import Inbound, chains, describe_chain, feeder, parse_inbound, sequential
from ._keras_model import (
    CELL_CLASSES,
    GATES,
    KINDS,
    NEUTRAL,
    KerasFormatError,
    KerasLayer,
    keras_major,
    snake,
    with_keras_major,
)
from ._params import check_real_weights, copy_params, to_rnnfuse_gates
from .keras_h5 import is_keras2_h5, read_keras2_h5

__all__ = [
    "stack_from_keras",
    "stacks_from_keras",
    "lengths_from_masking",
    "MergedBidirectional",
    "GoBackwards",
]

_GATES, _KINDS, _NEUTRAL = GATES, KINDS, NEUTRAL
_Layer = KerasLayer
_snake = snake


def stack_from_keras(
    source: Any, *, batch_first: bool = True, layer_names: Sequence[str] | None = None
) -> StackedRNN:
    """A :class:`~rnnfuse.StackedRNN` with the recurrent layers of ``source``.

    Args:
        source: a Keras model, a list of layers, one layer, or the path of a ``.keras``,
            ``.weights.h5`` or Keras 2 ``.h5`` file, a tf-keras SavedModel directory or a TF2
            checkpoint (the files are read without TensorFlow or Keras).
        batch_first: the stack reads ``(B, T, F)`` (Keras' layout) if true, else
            ``(T, B, F)``.
        layer_names: picks layers (in stack order, each reading the one before); by default
            every recurrent layer is taken.

    Returns:
        A :class:`~rnnfuse.StackedRNN` giving Keras' numbers (a ``MergedBidirectional`` or
        ``GoBackwards`` where Keras' outputs need it); ``forward(x, lengths)`` returns
        ``(outputs, state)`` as a stack does.

    Raises:
        ValueError: a non-recurrent layer that matters, recurrent layers that are not one
            chain (an encoder and a decoder on separate inputs: see
            :func:`stacks_from_keras`).
    """
    layers = read_keras_layers(source, layer_names)
    _check_chain(layers, layer_names)
    return _build(_select(layers, layer_names), batch_first)


def stacks_from_keras(source: Any, *, batch_first: bool = True) -> dict[str, torch.nn.Module]:
    """One module per chain of recurrent layers of ``source`` (see :func:`stack_from_keras`),
    keyed by the chain's last layer name, in model order.

    Layers chain where each reads the one before; layers on other inputs, or started from
    another layer's states, are other chains (the Keras ``lstm_seq2seq`` model gives
    ``{"encoder": ..., "decoder": ...}``; run the decoder with ``initial_state=`` the
    encoder's final layer state, e.g. ``(encoder_state[-1],)``).  Parallel branches from one
    layer each get a copy of the shared layers.
    """
    layers = read_keras_layers(source)
    return {
        chain[-1].name: _build(_select(layers, [lay.name for lay in chain]), batch_first)
        for chain in chains(layers)
    }


def _check_chain(layers: list[_Layer], names: Sequence[str] | None) -> None:
    """``ValueError`` unless the recurrent layers (or ``names``) form one chain, each
    layer reading the one before, where the model's graph tells."""
    found = chains(layers)
    if names is None:
        if len(found) > 1:
            listed = "; ".join(f"{k + 1}. {describe_chain(c, layers)}" for k, c in enumerate(found))
            calls = " or ".join(f"layer_names={[lay.name for lay in c]}" for c in found)
            raise ValueError(
                f"source: its recurrent layers form {len(found)} separate chains, not one "
                f"stack (a layer stacks on the one whose output sequence it reads): "
                f"{listed}. Load one chain with stack_from_keras(source, {calls}), or "
                f"each as its own module with stacks_from_keras(source)"
            )
        return
    by_name = {lay.name: lay for lay in layers}
    if isinstance(names, str) or any(n not in by_name for n in names):
        return  # _select says what is wrong
    for below, above in pairwise(names):
        layer = by_name[above]
        if layer.inbound is None or by_name[below].inbound is None:
            continue
        kind, name = feeder(layer, by_name)
        if (kind, name) != ("layer", below) or layer.inbound.states:
            reads = {
                "input": f"model input {name!r}" if name else "the model's input",
                "layer": f"layer {name!r}",
            }.get(kind, repr(name))
            starts = (
                f" and starts from the states of {sorted({n for n, _ in layer.inbound.states})}"
                if layer.inbound.states
                else ""
            )
            chains_text = "; ".join(describe_chain(c, layers) for c in found)
            raise ValueError(
                f"layer_names: {above!r} does not read the output sequence of {below!r} "
                f"(it reads {reads}{starts}), so they are not one stack; the chains "
                f"of this model are {chains_text}"
            )


def read_keras_layers(source: Any, layer_names: Sequence[str] | None = None) -> list[_Layer]:
    """Every layer of ``source`` (as :func:`stack_from_keras` takes it), in model order, an
    ``RNN`` layer of several cells as one layer per cell (named ``<rnn>/<k>``)."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if (
            os.path.isdir(path)
            and not os.path.exists(os.path.join(path, "keras_metadata.pb"))
            and os.path.exists(os.path.join(path, "saved_model.pb"))
        ):
            from .tf2_checkpoint import read_tf2_layers  # tf.saved_model.save: no Keras metadata

            layers = read_tf2_layers(path, layer_names=layer_names)
        elif os.path.isdir(path):
            from .keras_savedmodel import read_savedmodel

            layers = read_savedmodel(path)
        elif path.endswith((".keras", ".h5")):
            layers = _from_file(path, layer_names)
        elif os.path.exists(path + ".index") or path.endswith(".index"):
            from .tf2_checkpoint import read_tf2_layers

            layers = read_tf2_layers(
                path[:-6] if path.endswith(".index") else path, layer_names=layer_names
            )
        else:
            raise ValueError(
                f"source: expected a .keras or .weights.h5 path (or a Keras 2 .h5 "
                f"file, a SavedModel directory or a TF2 checkpoint prefix), got {path!r}"
            )
    else:
        layers = _from_live(source)
    return _expand_rnn(layers)


def _from_file(path: str, layer_names: Sequence[str] | None) -> list[_Layer]:
    """The layers of a ``.keras`` or ``.h5`` file; whatever the file holds, a failure is one
    ``ValueError`` naming the file (never another exception from deep in a reader)."""
    try:
        return _from_keras_file(path) if path.endswith(".keras") else _from_h5(path, layer_names)
    except (
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        RuntimeError,
        NotImplementedError,
        RecursionError,
        OSError,
    ) as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError)):
            raise
        raise KerasFormatError(
            f"source: {path!r} is not a readable Keras file ({type(exc).__name__}: {exc})"
        ) from None


def lengths_from_masking(
    x: Any, mask_value: float = 0.0, *, batch_first: bool = True
) -> torch.Tensor:
    """The ``lengths`` a Keras ``Masking(mask_value)`` layer means for post-padded ``x``.

    A step is masked when every feature equals ``mask_value`` (Keras' rule).  rnnfuse
    takes lengths, so each sequence's valid steps must come first: a mask with holes (valid,
    masked, valid, e.g. ``[T, T, F, T]``) cannot be lengths and raises ``ValueError``.
    """
    x = torch.as_tensor(x)
    if x.dim() != 3:
        raise ValueError(
            f"x: expected a 3-D (batch, time, features) input, got shape {list(x.shape)}"
        )
    x = x if batch_first else x.transpose(0, 1)
    valid = (x != mask_value).any(-1)  # (B, T)
    lengths = valid.sum(1)
    steps = torch.arange(x.shape[1], device=x.device)
    holes = (valid != (steps[None, :] < lengths[:, None])).any(1)
    if bool(holes.any()):
        rows = holes.nonzero().flatten().tolist()
        raise ValueError(
            f"x: the Masking mask of rows {rows} has holes (a masked step before a "
            f"valid one, e.g. {valid[rows[0]].tolist()}); rnnfuse needs lengths "
            f"(valid steps first, padding after), which such a mask cannot be"
        )
    return lengths


# --------------------------------------------------------------------------- sources
def _live_keras_major(items: list[Any]) -> int:
    """The major version of the Keras a live layer belongs to (``tf_keras``: 2)."""
    root = type(items[0]).__module__.split(".")[0] if items else "keras"
    if root == "tf_keras":
        return 2
    import sys

    return keras_major(getattr(sys.modules.get(root), "__version__", None), 3)


def _from_live(source: Any) -> list[_Layer]:
    items = (
        list(source) if isinstance(source, (list, tuple)) else getattr(source, "layers", [source])
    )
    layers = with_keras_major(_live_layers(items), _live_keras_major(items))
    if type(source).__name__ == "Sequential":
        return sequential(layers)
    config = (
        source.get_config() if hasattr(source, "layers") and hasattr(source, "get_config") else None
    )
    entries = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(entries, list):
        return layers
    graph = {
        e.get("name", e.get("config", {}).get("name")): e for e in entries if isinstance(e, dict)
    }
    return [
        lay._replace(inbound=parse_inbound(graph[lay.name], str(graph[lay.name].get("class_name"))))
        if lay.name in graph
        else lay
        for lay in layers
    ]


def _live_layers(items: list[Any]) -> list[_Layer]:
    out = []
    for layer in items:
        cls = type(layer).__name__
        if cls == "Bidirectional":
            fw, bw = _live(layer.forward_layer), _live(layer.backward_layer)
            out.append(
                fw._replace(
                    name=layer.name,
                    config={**fw.config, "merge_mode": layer.merge_mode},
                    backward=bw,
                )
            )
        elif hasattr(layer, "get_config") and hasattr(layer, "get_weights"):
            out.append(_live(layer))
        else:
            raise TypeError(f"source: expected a Keras model or layers, got {type(layer).__name__}")
    return out


def _live(layer: Any) -> _Layer:
    if hasattr(layer, "layers") and type(layer).__name__ in ("Functional", "Sequential", "Model"):
        raise ValueError(f"layer {layer.name!r}: a nested model; pass the inner model itself")
    if type(layer).__name__ == "RNN":
        return _live_rnn(layer)
    weights = [np.asarray(w) for w in layer.get_weights()]
    return _Layer(layer.name, type(layer).__name__, layer.get_config(), weights)


def _live_rnn(layer: Any) -> _Layer:
    """A live ``RNN(cell)`` / ``RNN(StackedRNNCells(...))`` / ``RNN([cells])``:
    one entry per cell."""
    cell = layer.cell
    cells = list(cell.cells) if type(cell).__name__ == "StackedRNNCells" else [cell]
    return _Layer(
        layer.name,
        "RNN",
        layer.get_config(),
        [],
        cells=tuple(
            _Layer(
                f"{layer.name}/cell_{k}",
                type(c).__name__,
                c.get_config(),
                [np.asarray(w) for w in c.get_weights()],
            )
            for k, c in enumerate(cells)
        ),
    )


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "reading .keras and .weights.h5 files needs h5py: pip install h5py"
        ) from None
    return h5py


MAX_KERAS_FILE_BYTES = 16 * GIB  # a .keras or .h5 file
MAX_CONFIG_BYTES = 64 * MIB  # the config.json of a .keras file


def _check_file(path: str) -> None:
    """A regular file (a device or FIFO would be read without end): ``ValueError`` otherwise."""
    try:
        check_regular_file(path, "a Keras file", MAX_KERAS_FILE_BYTES)
    except NotRegularFileError as exc:
        raise ValueError(f"source: {exc}") from None


def _read_keras_zip(path: str) -> tuple[Any, bytes, Any]:
    """The parsed ``config.json``, the bytes of ``model.weights.h5`` and the parsed
    ``metadata.json`` (``{}`` when absent: it names the Keras version that wrote the file) of
    a .keras file, each inflated only after its declared size and compression are checked."""
    what = f"source: {path!r}"
    try:
        with zipfile.ZipFile(path) as z:
            config = loads_json(
                read_zip_member(z, "config.json", what, MAX_CONFIG_BYTES), f"{what}: config.json"
            )
            weights = read_zip_member(z, "model.weights.h5", what, MAX_WEIGHT_BYTES)
            metadata = (
                loads_json(
                    read_zip_member(z, "metadata.json", what, MAX_CONFIG_BYTES),
                    f"{what}: metadata.json",
                )
                if "metadata.json" in z.namelist()
                else {}
            )
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise ValueError(f"{what} is not a Keras 3 .keras file ({exc})") from None
    return config, weights, metadata


def _from_keras_file(path: str) -> list[_Layer]:
    h5py = _h5py()
    _check_file(path)
    config, weights, metadata = _read_keras_zip(path)
    entries = config.get("config") if isinstance(config, dict) else None
    entries = entries.get("layers") if isinstance(entries, dict) else None
    if not isinstance(entries, list):
        raise ValueError(
            f"source: {path!r}: config.json has no list of layers (a subclassed model?)"
        )
    parsed = [_entry(entry, "a layer of config.json", path) for entry in entries]
    used: dict[str, int] = {}
    major = keras_major(metadata.get("keras_version") if isinstance(metadata, dict) else None, 3)
    with _open_h5(h5py, io.BytesIO(weights), f"{path}: model.weights.h5") as f:
        check_h5_file(f, f"{path}: model.weights.h5")
        layers = [
            _file_layer(f, cls, cfg, used, path)._replace(inbound=parse_inbound(entry, cls))
            for entry, (cls, cfg) in zip(entries, parsed, strict=True)
        ]
    return with_keras_major(
        sequential(layers) if config.get("class_name") == "Sequential" else layers, major
    )


def _entry(entry: Any, what: str, path: str) -> tuple[str, dict[str, Any]]:
    """``(class_name, config)`` of a ``{"class_name": ..., "config": {...}}`` entry."""
    if (
        not isinstance(entry, dict)
        or not isinstance(entry.get("class_name"), str)
        or not isinstance(entry.get("config"), dict)
    ):
        raise KerasFormatError(
            f'source: {path!r}: {what} is not {{"class_name": <string>, "config": '
            f"<object>}}, got {_brief(entry)}"
        )
    if not isinstance(entry["config"].get("name", ""), str):
        raise KerasFormatError(f"source: {path!r}: {what} has a name that is not a string")
    return entry["class_name"], entry["config"]


def _brief(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else f"{shown[:77]}..."


def _file_layer(
    f: Any, cls: str, cfg: dict[str, Any], used: dict[str, int], path: str = ""
) -> _Layer:
    """One layer of a .keras file; Keras names its weight groups by class, numbered in order."""
    group = f"layers/{_unique(_snake(cls), used)}"
    cfg = {"name": group.rsplit("/", 1)[-1], **cfg}
    if cls in ("Functional", "Sequential"):
        raise ValueError(f"layer {cfg.get('name')!r}: a nested model is not supported")
    if cls == "RNN":
        return _file_rnn(f, group, cfg, path)
    if cls != "Bidirectional":
        return _Layer(cfg["name"], cls, cfg, _vars(f, f"{group}/cell" if cls in _GATES else group))
    where = f"Bidirectional layer {cfg['name']!r}"
    inner_cls, inner = _entry(cfg.get("layer"), f'{where}: its "layer"', path)
    default_bw = {
        "class_name": inner_cls,
        "config": {**inner, "go_backwards": not inner.get("go_backwards", False)},
    }
    bw_cls, bw_cfg = _entry(
        cfg.get("backward_layer") or default_bw, f'{where}: its "backward_layer"', path
    )
    bw = _Layer(cfg["name"], bw_cls, bw_cfg, _vars(f, f"{group}/backward_layer/cell"))
    return _Layer(
        cfg["name"],
        inner_cls,
        {**inner, "merge_mode": cfg.get("merge_mode")},
        _vars(f, f"{group}/forward_layer/cell"),
        bw,
    )


def _file_rnn(f: Any, group: str, cfg: dict[str, Any], path: str) -> _Layer:
    """``RNN(cell)``, ``RNN(StackedRNNCells(...))`` or ``RNN([cells])`` of a .keras file."""
    cell = cfg.get("cell")
    if not isinstance(cell, dict) or not isinstance(cell.get("config"), dict):
        raise ValueError(f"layer {cfg.get('name')!r}: an RNN layer without a cell configuration")
    if cell.get("class_name") != "StackedRNNCells":
        return _Layer(
            cfg["name"],
            "RNN",
            cfg,
            [],
            cells=(
                _Layer(
                    cfg["name"],
                    str(cell.get("class_name")),
                    cell["config"],
                    _vars(f, f"{group}/cell"),
                ),
            ),
        )
    used: dict[str, int] = {}
    cells = []
    entries = cell["config"].get("cells") or []
    if not isinstance(entries, list):
        raise KerasFormatError(
            f"source: {path!r}: RNN layer {cfg['name']!r}: its cells are not a list"
        )
    for k, entry in enumerate(entries):
        cls, cell_cfg = _entry(entry, f"RNN layer {cfg['name']!r}: cell {k}", path)
        name = _unique(_snake(cls), used)
        cells.append(
            _Layer(f"{cfg['name']}/cell_{k}", cls, cell_cfg, _vars(f, f"{group}/cell/cells/{name}"))
        )
    return _Layer(cfg["name"], "RNN", cfg, [], cells=tuple(cells))


def _expand_rnn(layers: list[_Layer]) -> list[_Layer]:
    """Each ``RNN`` layer replaced by one layer per cell (a StackedRNNCells is a stack)."""
    out = []
    for layer in layers:
        if layer.class_name != "RNN":
            out.append(layer)
            continue
        if not layer.cells:
            raise ValueError(f"layer {layer.name!r}: an RNN layer without cells")
        for k, cell in enumerate(layer.cells):
            cls = CELL_CLASSES.get(cell.class_name)
            if cls is None:
                raise ValueError(
                    f"layer {layer.name!r}: cell {cell.class_name!r} is not an LSTMCell, "
                    f"GRUCell or SimpleRNNCell"
                )
            name = layer.name if len(layer.cells) == 1 else f"{layer.name}/{k}"
            config = {**cell.config, "go_backwards": layer.config.get("go_backwards", False)}
            inbound = (
                layer.inbound if k == 0 or layer.inbound is None else Inbound(((out[-1].name, 0),))
            )
            out.append(cell._replace(name=name, class_name=cls, config=config, inbound=inbound))
    return out


def _open_h5(h5py: Any, source: Any, shown: str) -> Any:
    try:
        return h5py.File(source, "r")
    except OSError as exc:
        raise ValueError(f"source: {shown!r} is not an HDF5 file ({exc})") from None


def _from_h5(path: str, layer_names: Sequence[str] | None) -> list[_Layer]:
    """A Keras 2 ``.h5`` (full model or weights) or a Keras 3 ``.weights.h5`` file, checked
    whole (no links out, no external or virtual data, sizes backed) before any data is read."""
    h5py = _h5py()
    _check_file(path)
    with _open_h5(h5py, path, path) as f:
        check_h5_file(f, path)
        try:
            keras2 = is_keras2_h5(f)
        except (OSError, RuntimeError, KeyError) as exc:
            raise KerasFormatError(
                f"source: {path!r}: unreadable HDF5 attributes ({exc})"
            ) from None
        if keras2:
            return read_keras2_h5(f, path)
        return _from_weights_file(f, path, layer_names)


def _from_weights_file(f: Any, path: str, layer_names: Sequence[str] | None) -> list[_Layer]:
    if "layers" not in f:
        raise ValueError(f"source: {path!r} has no 'layers' group (not a Keras 3 .weights.h5 file)")
    out = [_inferred(name, f[f"layers/{name}"]) for name in f["layers"]]
    if layer_names is not None:
        return out
    return _order(out)


def _inferred(name: str, group: Any) -> _Layer:
    if "forward_layer" in group:
        fw = _inferred_rnn(name, _vars(group, "forward_layer/cell"), False)
        bw = _inferred_rnn(name, _vars(group, "backward_layer/cell"), True)
        return fw._replace(config={**fw.config, "merge_mode": "concat"}, backward=bw)
    if "cell/cells" in group:  # RNN(StackedRNNCells([...])) / RNN([cells])
        return _inferred_cells(name, group["cell/cells"])
    if "cell" in group:
        return _inferred_rnn(name, _vars(group, "cell"), False)
    weights: list[np.ndarray] = []
    group.visititems(
        lambda _, obj: weights.append(np.asarray(obj)) if hasattr(obj, "shape") else None
    )
    base = re.sub(r"_\d+$", "", name)
    neutral = next((c for c in _NEUTRAL if _snake(c) == base), None)
    return _Layer(name, neutral or f"<{base}>", {}, weights)


def _inferred_cells(name: str, cells: Any) -> _Layer:
    """The cells of an ``RNN`` over a ``StackedRNNCells`` in a .weights.h5 file.  Their
    groups are named by class (``lstm_cell``, ``lstm_cell_1``, ``gru_cell``) and listed
    alphabetically, so their order is rebuilt from the numbers and the shapes."""
    count, found = _chains(
        [_inferred_rnn(f"{name}/{cell}", _vars(cells, cell), False) for cell in cells]
    )
    if count != 1:
        raise ValueError(
            f"layer {name!r}: a .weights.h5 file does not store the order of its cells "
            f"{sorted(cells)} and {_why(count)}; use the .keras file, which stores it"
        )
    return _Layer(
        name,
        "RNN",
        {"name": name},
        [],
        cells=tuple(c._replace(class_name=f"{c.class_name}Cell") for c in found),
    )


def _inferred_rnn(name: str, weights: list[np.ndarray], backwards: bool) -> _Layer:
    if (
        len(weights) not in (2, 3)
        or weights[1].ndim != 2
        or weights[1].shape[1] % weights[1].shape[0]
    ):
        raise ValueError(
            f"layer {name!r}: expected kernel, recurrent_kernel[, bias], got shapes "
            f"{[list(w.shape) for w in weights]}"
        )
    units, gates = weights[1].shape[0], weights[1].shape[1] // weights[1].shape[0]
    cls = {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}.get(gates)
    if cls is None:
        raise ValueError(
            f"layer {name!r}: a recurrent kernel {list(weights[1].shape)} fits no "
            f"LSTM, GRU or SimpleRNN"
        )
    config = {
        "units": units,
        "use_bias": len(weights) == 3,
        "go_backwards": backwards,
        "reset_after": len(weights) == 2 or weights[2].ndim == 2,
    }  # no bias: Keras' default
    return _Layer(name, cls, config, weights)


def _vars(f: Any, where: str) -> list[np.ndarray]:
    group = f.get(f"{where}/vars")
    if group is None:
        return []
    return [np.asarray(group[k]) for k in sorted(group, key=int)]


def _unique(name: str, used: dict[str, int]) -> str:
    used[name] = used.get(name, -1) + 1
    return f"{name}_{used[name]}" if used[name] else name


def _order(layers: list[_Layer]) -> list[_Layer]:
    """Model order for a weights-only file: each class in numbered order, merged so that
    every layer reads what the one below writes; raise unless exactly one merge fits."""
    rnn = [lay for lay in layers if _recurrent(lay)]
    count, found = _chains(rnn)
    if count != 1:
        shapes = {lay.name: [list(w.shape) for w in lay.weights] for lay in rnn[:20]}
        raise ValueError(
            f"layer order: a .weights.h5 file does not store it and {_why(count)}; pass "
            f"layer_names=[...] in model order (layers: {shapes}"
            f"{' ...' if len(rnn) > 20 else ''}) or use the .keras file"
        )
    return found + [lay for lay in layers if not _recurrent(lay)]


def _why(count: int) -> str:
    return {0: "no order of them chains", 2: "more than one order fits their shapes"}.get(
        count, "their shapes leave too many orders open to decide"
    )


MAX_ORDER_STATES = 50_000  # partial orders weighed before a file is refused as ambiguous
MAX_ORDER_CLASSES = 8  # kinds of group name (lstm, gru_3, ...) whose merge is searched
_Heads = tuple[int, ...]
_State = tuple[_Heads, int]


def _chains(rnn: list[_Layer]) -> tuple[int, list[_Layer]]:
    """``(count, order)``: how many orders of ``rnn`` keep each class's numbered order and
    chain sizes (0, 1, 2 for more than one, or -1 when more than :data:`MAX_ORDER_STATES`
    partial orders would have to be weighed, or the names form more than
    :data:`MAX_ORDER_CLASSES` classes) and, for exactly one, that order.

    Partial orders are merged by what decides the rest (how far each class has got and the
    size the last layer writes), level by level: never every order, and polynomial in the
    layers (a class's queue adds a factor of its length)."""
    by_class: dict[str, list[_Layer]] = {}
    for lay in rnn:
        by_class.setdefault(re.sub(r"_\d+$", "", lay.name), []).append(lay)
    queues = [sorted(group, key=_number) for group in by_class.values()]
    if len(queues) > MAX_ORDER_CLASSES:  # Keras names groups by class: a few classes at most
        return -1, []
    start: _State = ((0,) * len(queues), -1)
    level: dict[_State, int] = {start: 1}
    parents: dict[_State, tuple[_State, int]] = {}
    for _ in range(len(rnn)):
        level = _next_level(level, queues, parents)
        if len(parents) > MAX_ORDER_STATES:
            return -1, []
    count = min(2, sum(level.values()))
    return count, (_walk_back(next(iter(level)), parents, queues) if count == 1 else [])


def _next_level(
    level: dict[_State, int], queues: list[list[_Layer]], parents: dict[_State, tuple[_State, int]]
) -> dict[_State, int]:
    """The partial orders one layer longer, each with its number of ways (at most 2)."""
    following: dict[_State, int] = {}
    for (heads, last), ways in level.items():
        for q, i in enumerate(heads):
            if i < len(queues[q]) and (last < 0 or _in_size(queues[q][i]) == last):
                state = (heads[:q] + (i + 1,) + heads[q + 1 :], _out_size(queues[q][i]))
                following[state] = min(2, following.get(state, 0) + ways)
                parents.setdefault(state, ((heads, last), q))
    return following


def _walk_back(
    state: _State, parents: dict[_State, tuple[_State, int]], queues: list[list[_Layer]]
) -> list[_Layer]:
    order = []
    while state in parents:
        previous, q = parents[state]
        order.append(queues[q][state[0][q] - 1])
        state = previous
    return order[::-1]


def _recurrent(layer: _Layer) -> bool:
    """A recurrent layer, or an ``RNN`` over cells."""
    return layer.class_name in _GATES or bool(layer.cells)


def _number(layer: _Layer) -> int:
    found = re.search(r"_(\d+)$", layer.name)
    return int(found.group(1)) if found else 0


def _in_size(layer: _Layer) -> int:
    return _in_size(layer.cells[0]) if layer.cells else layer.weights[0].shape[0]


def _out_size(layer: _Layer) -> int:
    if layer.cells:
        return _out_size(layer.cells[-1])
    return layer.weights[1].shape[0] * (2 if layer.backward is not None else 1)


def _select(layers: list[_Layer], names: Sequence[str] | None) -> list[_Layer]:
    if names is not None:
        if isinstance(names, str):
            raise TypeError(
                f"layer_names: expected a list of layer names, got the string {names!r}"
            )
        by_name = {lay.name: lay for lay in layers}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(
                f"layer_names: no layers named {unknown}; the layers are {list(by_name)}"
            )
        picked = [by_name[n] for n in names]
    else:
        picked = [lay for lay in layers if lay.class_name not in _NEUTRAL]
    others = [
        f"{lay.name} ({lay.class_name}{', with weights' if lay.weights else ''})"
        for lay in picked
        if lay.class_name not in _GATES
    ]
    if others:
        rnn = [lay.name for lay in picked if lay.class_name in _GATES]
        raise ValueError(
            f"layers {others} are not LSTM, GRU or SimpleRNN and would be left out of "
            f"the stack; pass layer_names={rnn} to import only the recurrent layers"
        )
    if not picked:
        raise ValueError("source: no LSTM, GRU or SimpleRNN layer found")
    return picked


# --------------------------------------------------------------------------- conversion
def _build(layers: list[_Layer], batch_first: bool) -> Any:
    if len(layers) == 1 and layers[0].backward is None and layers[0].config.get("go_backwards"):
        return GoBackwards(
            StackedRNN.from_cells([_cell(layers[0], None, backwards=True)], batch_first=batch_first)
        )
    fw: list[RecurrentCell] = []
    bw: list[RecurrentCell | None] = []
    merges: list[str] = []
    in_size = None
    for k, layer in enumerate(layers):
        fw.append(_cell(layer, in_size, backwards=False))
        merge = layer.config.get("merge_mode", "concat") if layer.backward is not None else "concat"
        if merge not in _MERGES:
            raise ValueError(
                f"layer {layer.name!r}: merge_mode={merge!r}; expected one of "
                f"{sorted(str(m) for m in _MERGES)}"
            )
        if merge is None and k < len(layers) - 1:
            raise ValueError(
                f"layer {layer.name!r}: merge_mode=None below another layer; it "
                f"returns fw and bw as two outputs, which no next layer reads as one"
            )
        merges.append("concat" if merge is None else merge)
        if layer.backward is not None:
            backward = layer.backward._replace(name=f"{layer.name}/backward")
            bw.append(_cell(backward, in_size, backwards=True))
        else:
            bw.append(None)
        in_size = fw[-1].output_size * (2 if bw[-1] is not None and merges[-1] == "concat" else 1)
    stack = StackedRNN.from_cells(
        fw,
        backward_cells=bw if any(c is not None for c in bw) else None,
        batch_first=batch_first,
        merge_mode=merges,
    )
    top_none = (
        layers[-1].backward is not None and layers[-1].config.get("merge_mode", "concat") is None
    )
    return MergedBidirectional(stack, None) if top_none else stack


_MERGES = ("concat", "sum", "mul", "ave", None)


class GoBackwards(torch.nn.Module):
    """One Keras recurrent layer with ``go_backwards=True`` (and no other layer).

    Keras reads each sequence from its end and returns the outputs in that processing
    order, not flipped back; with post-padding and a mask, the padded steps come first and
    their outputs are zeros.  Here: the cell runs backwards within each length (as the
    backward half of a bidirectional layer) and the outputs are flipped in time, which
    gives exactly Keras' numbers.  ``forward(x, lengths=None, initial_state=None)``;
    ``self.stack`` holds the cell.
    """

    def __init__(self, stack: StackedRNN) -> None:
        super().__init__()
        if stack.num_layers != 1 or any(stack.bidirectional):
            raise ValueError("stack: expected one unidirectional layer")
        self.stack = stack

    def forward(
        self, x: torch.Tensor, lengths: Any = None, initial_state: Any = None
    ) -> tuple[Any, Any]:
        stack = self.stack
        x = check_sequence_input(x, stack.input_size, stack.batch_first)
        lens = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        start = stack._check_initial_state(initial_state, x)
        out, final = run_layer(stack.layers[0], x, lens, start[0], True)
        out = out.flip(1)
        return (out if stack.batch_first else out.transpose(0, 1)), (final,)


class MergedBidirectional(torch.nn.Module):
    """A stack whose top bidirectional layer merges fw and bw as Keras' ``merge_mode``:
    ``"sum"``, ``"mul"``, ``"ave"``, or ``None`` (the pair ``(fw outputs, bw outputs)``).

    ``forward(x, lengths=None, initial_state=None) -> (outputs, state)``; the state is the
    stack's.  ``self.stack`` is the :class:`~rnnfuse.StackedRNN` (its outputs concatenated).
    """

    def __init__(self, stack: StackedRNN, merge_mode: str | None) -> None:
        super().__init__()
        if merge_mode not in ("sum", "mul", "ave", None):
            raise ValueError(
                f"merge_mode: expected 'sum', 'mul', 'ave' or None, got {merge_mode!r}"
            )
        self.stack = stack
        self.merge_mode = merge_mode

    def forward(
        self, x: torch.Tensor, lengths: Any = None, initial_state: Any = None
    ) -> tuple[Any, Any]:
        outputs, state = self.stack(x, lengths, initial_state)
        fw, bw = outputs.chunk(2, dim=-1)
        if self.merge_mode is None:
            return (fw, bw), state
        merged = {"sum": lambda: fw + bw, "mul": lambda: fw * bw, "ave": lambda: (fw + bw) / 2}
        return merged[self.merge_mode](), state

    def extra_repr(self) -> str:
        return f"merge_mode={self.merge_mode!r}"


def _activations(layer: _Layer) -> dict[str, Any]:
    """The cell options of the layer's activations, in rnnfuse's names (the Keras name
    ``hard_sigmoid`` means another equation in Keras 2 and in Keras 3)."""
    cfg, where = layer.config, f"layer {layer.name!r}"
    act = keras_activation(cfg.get("activation", "tanh"), layer.keras_major, f"{where}: activation")
    if layer.class_name == "SimpleRNN":
        return {"nonlinearity": act}
    gate = keras_activation(
        cfg.get("recurrent_activation", "sigmoid"),
        layer.keras_major,
        f"{where}: recurrent_activation",
    )
    return {"activation": act, "recurrent_activation": gate}


def _check_config(layer: _Layer, backwards: bool) -> None:
    cfg = layer.config
    if bool(cfg.get("go_backwards", False)) != backwards:
        raise ValueError(
            f"layer {layer.name!r}: go_backwards={cfg.get('go_backwards')} is supported "
            f"only as the backward half of a Bidirectional layer, or in a model with "
            f"that one recurrent layer (GoBackwards: Keras returns its outputs in "
            f"reversed time, which no layer of a StackedRNN can feed to the next)"
        )


def _cell(layer: _Layer, in_size: int | None, backwards: bool) -> RecurrentCell:
    _check_config(layer, backwards)
    cfg, cls, w = layer.config, layer.class_name, layer.weights
    units, gates = cfg["units"], _GATES[cls]
    # a GRU configuration without reset_after predates the option (Keras < 2.1.3): False
    reset_after = bool(cls == "GRU" and cfg.get("reset_after", layer.keras_major >= 3))
    n_in = in_size or (w[0].shape[0] if w and w[0].ndim == 2 else -1)
    bias_shape = (2, gates * units) if reset_after else (gates * units,)
    shapes: list[tuple[int, ...]] = [(n_in, gates * units), (units, gates * units)]
    shapes += [bias_shape] if cfg.get("use_bias", True) else []
    if [tuple(a.shape) for a in w] != shapes:
        raise ValueError(
            f"layer {layer.name!r}: expected weights of shapes {[list(s) for s in shapes]}"
            f" (kernel, recurrent_kernel, bias), got {[list(a.shape) for a in w]}"
        )
    check_real_weights(w, f"layer {layer.name!r}")
    kind = _KINDS[cls]
    bias = w[2] if len(w) == 3 else np.zeros(bias_shape, w[0].dtype)
    params = {
        "weight_ih": to_rnnfuse_gates(w[0], "keras", kind, -1).T,
        "weight_hh": to_rnnfuse_gates(w[1], "keras", kind, -1).T,
    }
    bias = to_rnnfuse_gates(bias, "keras", kind, -1)
    params.update({"bias_ih": bias[0], "bias_hh": bias[1]} if reset_after else {"bias": bias})
    acts = _activations(layer)
    if cls == "LSTM":
        cell: RecurrentCell = LSTMCell(n_in, units, **acts)
    elif cls == "SimpleRNN":
        cell = RNNCell(n_in, units, **acts)
    else:
        cell = GRUCell(n_in, units, reset_after=reset_after, **acts)
    cell = cell.to(torch.from_numpy(w[0]).dtype)
    copy_params(cell, params, f"layer {layer.name!r}")
    return cell
