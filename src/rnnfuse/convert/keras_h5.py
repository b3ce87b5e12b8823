"""Keras 2 (tf-keras) ``.h5`` files: full models and weights-only files, read with h5py.

* Full model (``model.save("model.h5")``): root attributes ``keras_version``, ``backend`` and
  ``model_config`` (JSON ``{"class_name": "Functional" | "Sequential", "config": ...}``); the
  weights under ``model_weights``, whose attribute ``layer_names`` lists the layer groups.
* Weights only (``model.save_weights("weights.h5")``): the same layer groups at the root,
  ``layer_names`` a root attribute, and no architecture.

Each layer group has the attribute ``weight_names`` (the layer's weight order, e.g.
``lstm/lstm_cell/kernel:0``), each a dataset under the group.  A ``Bidirectional`` layer
lists its forward weights (``.../forward_lstm/...``) before the backward ones.  An ``RNN``
layer over cells (``RNN(cell)``, ``RNN(StackedRNNCells([...]))``, ``RNN([cells])``, saved as
a StackedRNNCells) lists each cell's weights under its own scope
(``rnn/stacked_rnn_cells/lstm_cell/kernel:0``), in the cells' order.

Without a configuration (weights-only files) a recurrent layer's class comes from its
weights' shapes (as for Keras 3 ``.weights.h5``): a GRU's ``reset_after`` from its bias
shape, activations are taken to be Keras' defaults, and layers without weights (an
``InputLayer``, ``Masking``, but also an ``Activation``: the file cannot tell) are passed
over.  Everything that is not what the format promises raises :class:`KerasFormatError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._files import loads_json
from ._h5_checks import DatasetReader
from ._keras_graph import parse_inbound, sequential
from ._keras_model import GATES, KerasFormatError, KerasLayer, keras_major, text, with_keras_major

__all__ = ["is_keras2_h5", "read_keras2_h5"]


def is_keras2_h5(f: Any) -> bool:
    """Whether the open HDF5 file is a Keras 2 full model or weights-only file."""
    return "model_config" in f.attrs or "layer_names" in f.attrs


def read_keras2_h5(f: Any, path: str) -> list[KerasLayer]:
    """The layers of a Keras 2 ``.h5`` file, in model order (Keras 3 writes this format
    too: its ``keras_version`` attribute tells which Keras' activations the names mean);
    ``f`` checked by :func:`~rnnfuse.convert._h5_checks.check_h5_file`, each dataset read at
    most once."""
    reader = DatasetReader(path)
    try:
        version = f.attrs.get("keras_version")
        major = keras_major(text(version) if version is not None else None, 2)
        if major < 2:
            raise KerasFormatError(
                f"source: {path!r} was written by Keras {text(version)}, which "
                f"rnnfuse does not read: Keras 1 stores each gate's weights apart "
                f"(W_i, U_i, ...) under other option names (output_dim, "
                f"inner_activation); load it in Keras 2 and save it again"
            )
        if "model_config" in f.attrs:
            return with_keras_major(_full_model(f, path, reader), major)
        return with_keras_major(_weights_only(f, path, reader), major)
    except KerasFormatError:
        raise
    except (
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
        OSError,
        RuntimeError,
        NotImplementedError,
    ) as exc:
        raise KerasFormatError(
            f"source: {path!r} is not a readable Keras 2 .h5 file ({type(exc).__name__}: {exc})"
        ) from None


def _strings(value: Any, what: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise KerasFormatError(f"{what}: expected a list of strings, got {type(value).__name__}")
    return [text(v) for v in value]


def _layer_weights(
    group: Any, name: str, path: str, reader: DatasetReader
) -> list[tuple[str, np.ndarray]]:
    if name not in group:
        raise KerasFormatError(f"source: {path!r}: no weight group for layer {name!r}")
    layer = group[name]
    names = _strings(layer.attrs.get("weight_names", []), f"{name}/weight_names")
    out = []
    for wn in names:
        if wn not in layer or not hasattr(layer[wn], "shape"):
            raise KerasFormatError(
                f"source: {path!r}: layer {name!r} lists weight {wn!r}, which is not a dataset"
            )
        out.append((wn, reader.read(layer[wn], f"{name}/{wn}")))
    return out


def _full_model(f: Any, path: str, reader: DatasetReader) -> list[KerasLayer]:
    config = loads_json(text(f.attrs["model_config"]), f"source: {path!r}: model_config")
    if (
        isinstance(config, dict)
        and config.get("class_name") == "Sequential"
        and isinstance(config.get("config"), list)
    ):  # Keras <= 2.1: the list of layers itself
        config = {**config, "config": {"layers": config["config"]}}
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise KerasFormatError(f"source: {path!r}: model_config is not a Keras model configuration")
    entries = config["config"].get("layers")
    if not isinstance(entries, list):
        raise KerasFormatError(
            f"source: {path!r}: model_config ({config.get('class_name')}) "
            f"has no list of layers (a subclassed model?)"
        )
    if "model_weights" not in f:
        raise KerasFormatError(f"source: {path!r}: has model_config but no model_weights group")
    group = f["model_weights"]
    layers = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
            raise KerasFormatError(
                f"source: {path!r}: a layer entry of model_config is not {{class_name, config}}"
            )
        cls, cfg = entry.get("class_name"), entry["config"]
        name = cfg.get("name", entry.get("name"))
        if not isinstance(cls, str) or not isinstance(name, str):
            raise KerasFormatError(f"source: {path!r}: a layer entry lacks class_name or name")
        weights = _layer_weights(group, name, path, reader) if name in group else []
        layers.append(
            _configured(name, cls, cfg, weights, path)._replace(inbound=parse_inbound(entry, cls))
        )
    return sequential(layers) if config.get("class_name") == "Sequential" else layers


def _configured(
    name: str, cls: str, cfg: dict[str, Any], weights: list[tuple[str, np.ndarray]], path: str
) -> KerasLayer:
    arrays = [a for _, a in weights]
    if cls == "RNN":
        return _configured_rnn(name, cfg, weights, path)
    if cls != "Bidirectional":
        return KerasLayer(name, cls, cfg, arrays)
    inner = cfg.get("layer")
    if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
        raise KerasFormatError(f"source: {path!r}: Bidirectional layer {name!r} has no inner layer")
    fw = [a for wn, a in weights if "/forward_" in wn]
    bw = [a for wn, a in weights if "/backward_" in wn]
    if len(fw) + len(bw) != len(weights) or len(fw) != len(bw):
        raise KerasFormatError(
            f"source: {path!r}: Bidirectional layer {name!r}: weight names "
            f"{[wn for wn, _ in weights]} are not forward_*/backward_* halves"
        )
    inner_cls, inner_cfg = inner.get("class_name"), inner["config"]
    default_bw = {
        "class_name": inner_cls,
        "config": {**inner_cfg, "go_backwards": not inner_cfg.get("go_backwards", False)},
    }
    bw_entry = cfg.get("backward_layer") or default_bw
    if not isinstance(bw_entry, dict) or not isinstance(bw_entry.get("config"), dict):
        raise KerasFormatError(
            f"source: {path!r}: Bidirectional layer {name!r}: bad backward_layer"
        )
    backward = KerasLayer(name, str(bw_entry.get("class_name")), bw_entry["config"], bw)
    return KerasLayer(
        name,
        str(inner_cls),
        {**inner_cfg, "merge_mode": cfg.get("merge_mode", "concat")},
        fw,
        backward,
    )


def _configured_rnn(
    name: str, cfg: dict[str, Any], weights: list[tuple[str, np.ndarray]], path: str
) -> KerasLayer:
    """``RNN(cell)``, ``RNN(StackedRNNCells([...]))`` or ``RNN([cells])`` (which Keras saves
    as a StackedRNNCells): one :class:`KerasLayer` per cell in ``cells``, each with the
    weights of its own ``<rnn>/[stacked_rnn_cells/]<cell>/`` scope, in the configuration's
    cell order."""
    cell = cfg.get("cell")
    if not isinstance(cell, dict) or not isinstance(cell.get("config"), dict):
        raise KerasFormatError(f"source: {path!r}: RNN layer {name!r} has no cell configuration")
    if cell.get("class_name") == "StackedRNNCells":
        entries = cell["config"].get("cells")
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, dict) and isinstance(e.get("config"), dict) for e in entries)
        ):
            raise KerasFormatError(
                f"source: {path!r}: RNN layer {name!r}: StackedRNNCells "
                f"without a list of cell configurations"
            )
    else:
        entries = [cell]
    groups = _cell_scopes(weights)
    if len(groups) != len(entries):
        raise KerasFormatError(
            f"source: {path!r}: RNN layer {name!r} has {len(entries)} cells "
            f"but weights in {len(groups)} cell scopes {list(groups)}"
        )
    cells = []
    for k, (entry, (scope, arrays)) in enumerate(zip(entries, groups.items(), strict=True)):
        cell_name = entry["config"].get("name")
        if isinstance(cell_name, str) and scope.rsplit("/", 1)[-1] != cell_name:
            raise KerasFormatError(
                f"source: {path!r}: RNN layer {name!r}: cell {k} is "
                f"{cell_name!r} but its weights are under {scope!r}"
            )
        cells.append(
            KerasLayer(f"{name}/cell_{k}", str(entry.get("class_name")), entry["config"], arrays)
        )
    return KerasLayer(name, "RNN", cfg, [], cells=tuple(cells))


def _cell_scopes(weights: list[tuple[str, np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """The weights of an RNN layer grouped by their cell scope (the name up to the last
    ``/``, e.g. ``rnn/stacked_rnn_cells/lstm_cell``), in the order the file lists them."""
    groups: dict[str, list[np.ndarray]] = {}
    for wn, array in weights:
        scope, sep, _ = wn.rpartition("/")
        if not sep:
            raise KerasFormatError(f"weight name {wn!r} has no cell scope")
        groups.setdefault(scope, []).append(array)
    return groups


def _weights_only(f: Any, path: str, reader: DatasetReader) -> list[KerasLayer]:
    names = _strings(f.attrs["layer_names"], "layer_names")
    layers = []
    for name in names:
        weights = _layer_weights(f, name, path, reader)
        if not weights:
            layers.append(KerasLayer(name, "InputLayer", {}, []))  # weightless: passed over
            continue
        layers.append(_inferred(name, weights, path))
    return layers


def _inferred(name: str, weights: list[tuple[str, np.ndarray]], path: str) -> KerasLayer:
    """A layer of a weights-only file: recurrent if its weights sit in an ``*_cell`` scope."""
    cell_scoped = all("_cell/" in wn for wn, _ in weights)
    if not cell_scoped:
        return KerasLayer(name, f"<{name}>", {}, [a for _, a in weights])
    fw = [a for wn, a in weights if "/forward_" in wn]
    bw = [a for wn, a in weights if "/backward_" in wn]
    if fw and bw:
        forward = _inferred_rnn(name, fw, False, path)
        return forward._replace(
            config={**forward.config, "merge_mode": "concat"},
            backward=_inferred_rnn(name, bw, True, path),
        )
    groups = _cell_scopes(weights)
    if len(groups) > 1:  # RNN(StackedRNNCells([...])): one cell scope per cell
        cells = tuple(
            _inferred_rnn(f"{name}/cell_{k}", arrays, False, path)
            for k, arrays in enumerate(groups.values())
        )
        return KerasLayer(
            name,
            "RNN",
            {"name": name},
            [],
            cells=tuple(c._replace(class_name=f"{c.class_name}Cell") for c in cells),
        )
    return _inferred_rnn(name, [a for _, a in weights], False, path)


def _inferred_rnn(name: str, weights: list[np.ndarray], backwards: bool, path: str) -> KerasLayer:
    if (
        len(weights) not in (2, 3)
        or weights[1].ndim != 2
        or not weights[1].shape[0]
        or weights[1].shape[1] % weights[1].shape[0]
    ):
        raise KerasFormatError(
            f"source: {path!r}: layer {name!r}: expected kernel, "
            f"recurrent_kernel[, bias], got shapes {[list(w.shape) for w in weights]}"
        )
    units, gates = weights[1].shape[0], weights[1].shape[1] // weights[1].shape[0]
    cls = {g: c for c, g in GATES.items()}.get(gates)
    if cls is None:
        raise KerasFormatError(
            f"source: {path!r}: layer {name!r}: a recurrent kernel "
            f"{list(weights[1].shape)} fits no LSTM, GRU or SimpleRNN"
        )
    config = {
        "units": units,
        "use_bias": len(weights) == 3,
        "go_backwards": backwards,
        "reset_after": len(weights) == 2 or weights[2].ndim == 2,
    }
    return KerasLayer(name, cls, config, weights)
