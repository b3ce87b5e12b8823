"""tf-keras SavedModel directories (``model.save(dir, save_format="tf")``), without TensorFlow.

* ``keras_metadata.pb``: a ``SavedMetadata`` proto (``nodes`` = 1, each a ``SavedObject``:
  ``node_id`` = 2, ``node_path`` = 3, ``identifier`` = 4, ``metadata`` = 5, a JSON string).
  The ``root`` node's metadata holds the model's ``class_name`` and ``config`` (its layers).
* ``variables/variables.{index,data-*}``: a TF2 object-based checkpoint, the TF1 bundle
  format (read by :func:`rnnfuse.tf1.checkpoint.read_object_bundle`).  Its keys depend on
  ``save_traces`` (``variables/0/...`` or ``layer_with_weights-0/cell/kernel/...``), so they
  are resolved through the ``_CHECKPOINTABLE_OBJECT_GRAPH`` string tensor, a
  ``TrackableObjectGraph`` (``nodes`` = 1; a node's ``attributes`` = 2, each with ``name`` = 1,
  ``full_name`` = 2, ``checkpoint_key`` = 3): ``full_name`` is the Keras weight name
  (``lstm/lstm_cell/kernel``).

Both protos are decoded with the project's own wire-format reader
(:mod:`rnnfuse.tf1.checkpoint.proto`); any malformed content raises
:class:`~rnnfuse.convert._keras_model.KerasFormatError`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._files import MIB, NotRegularFileError, loads_json, read_regular_file
from ..tf1.checkpoint import CheckpointError, read_object_bundle
from ..tf1.checkpoint.proto import Fields, parse_message
from ..tf1.checkpoint.table import TableError
from ._keras_graph import parse_inbound, sequential
from ._keras_model import KerasFormatError, KerasLayer, with_keras_major

__all__ = ["read_savedmodel", "read_keras_metadata", "object_graph_keys"]

_ROLES = ("kernel", "recurrent_kernel", "bias")
MAX_METADATA_BYTES = 64 * MIB  # keras_metadata.pb


def _strings(fields: Fields, number: int) -> list[bytes]:
    return [v for wire, v in fields.get(number, []) if wire == 2 and isinstance(v, bytes)]


def _one_string(fields: Fields, number: int) -> str:
    values = _strings(fields, number)
    try:
        return values[-1].decode("utf-8") if values else ""
    except UnicodeDecodeError as exc:
        raise KerasFormatError(f"a protobuf string field {number} is not UTF-8 ({exc})") from None


def read_keras_metadata(data: bytes) -> dict[str, tuple[str, Any]]:
    """``{node_path: (identifier, metadata JSON)}`` of a ``keras_metadata.pb``."""
    try:
        nodes = _strings(parse_message(data), 1)
        out = {}
        for node in nodes:
            fields = parse_message(node)
            path, ident, meta = (_one_string(fields, n) for n in (3, 4, 5))
            out[path] = (
                ident,
                loads_json(meta, f"keras_metadata.pb: node {path!r}") if meta else None,
            )
    except (TableError, ValueError, RecursionError) as exc:
        if isinstance(exc, KerasFormatError):
            raise
        raise KerasFormatError(f"keras_metadata.pb: not a SavedMetadata proto ({exc})") from None
    return out


def object_graph_keys(data: bytes) -> dict[str, str]:
    """``{full_name: checkpoint_key}`` of the variables in a ``TrackableObjectGraph``."""
    keys = {}
    try:
        for node in _strings(parse_message(data), 1):
            for attr in _strings(parse_message(node), 2):
                fields = parse_message(attr)
                if _one_string(fields, 1) == "VARIABLE_VALUE":
                    keys[_one_string(fields, 2)] = _one_string(fields, 3)
    except TableError as exc:
        raise KerasFormatError(
            f"_CHECKPOINTABLE_OBJECT_GRAPH: not a TrackableObjectGraph ({exc})"
        ) from None
    return keys


def read_savedmodel(path: str) -> list[KerasLayer]:
    """The layers of a tf-keras SavedModel directory, in model order, with their weights."""
    meta_path = os.path.join(path, "keras_metadata.pb")
    if not os.path.exists(meta_path) and os.path.exists(os.path.join(path, "saved_model.pb")):
        from .tf2_checkpoint import (
            read_tf2_layers,
        )  # tf.saved_model.save: objects and variables only

        return read_tf2_layers(path)
    try:
        data = read_regular_file(meta_path, "a keras_metadata.pb", MAX_METADATA_BYTES)
    except NotRegularFileError as exc:
        raise KerasFormatError(f"source: {exc}") from None
    except OSError as exc:
        raise KerasFormatError(
            f"source: {path!r} is not a tf-keras SavedModel directory (cannot "
            f"read keras_metadata.pb: {exc.strerror or exc}); a SavedModel "
            f"without Keras metadata holds no layer configuration"
        ) from None
    metadata = read_keras_metadata(data)
    root = metadata.get("root", (None, None))[1]
    config = root.get("config") if isinstance(root, dict) else None
    entries = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(entries, list):
        raise KerasFormatError(
            f"source: {path!r}: the root of keras_metadata.pb is not a Keras "
            f"Functional/Sequential model with layers (a subclassed model?)"
        )
    try:
        arrays, strings = read_object_bundle(os.path.join(path, "variables", "variables"))
    except CheckpointError as exc:
        raise KerasFormatError(f"source: {path!r}: variables: {exc}") from None
    graph = strings.get("_CHECKPOINTABLE_OBJECT_GRAPH")
    if graph is None:
        raise KerasFormatError(f"source: {path!r}: variables hold no _CHECKPOINTABLE_OBJECT_GRAPH")
    by_name = {}
    for full_name, key in object_graph_keys(graph).items():
        if key not in arrays:
            raise KerasFormatError(
                f"source: {path!r}: the object graph names {key!r}, which the variables do not hold"
            )
        by_name[full_name] = arrays[key]
    layers = [_layer(entry, by_name, path) for entry in entries]
    layers = [
        lay._replace(inbound=parse_inbound(entry, str(entry.get("class_name"))))
        for lay, entry in zip(layers, entries, strict=True)
    ]
    if isinstance(root, dict) and root.get("class_name") == "Sequential":
        layers = sequential(layers)
    return with_keras_major(layers, 2)  # tf-keras only


def _layer(entry: Any, by_name: dict[str, np.ndarray], path: str) -> KerasLayer:
    if not isinstance(entry, dict) or not isinstance(entry.get("config"), dict):
        raise KerasFormatError(f"source: {path!r}: a layer entry is not {{class_name, config}}")
    cls, cfg = entry.get("class_name"), entry["config"]
    name = cfg.get("name")
    if not isinstance(cls, str) or not isinstance(name, str):
        raise KerasFormatError(f"source: {path!r}: a layer entry lacks class_name or name")
    mine = {n[len(name) + 1 :]: a for n, a in by_name.items() if n.startswith(name + "/")}
    if cls != "Bidirectional":
        return KerasLayer(name, cls, cfg, _ordered(mine))
    inner = cfg.get("layer")
    if not isinstance(inner, dict) or not isinstance(inner.get("config"), dict):
        raise KerasFormatError(f"source: {path!r}: Bidirectional layer {name!r} has no inner layer")
    fw = {n: a for n, a in mine.items() if n.startswith("forward_")}
    bw = {n: a for n, a in mine.items() if n.startswith("backward_")}
    inner_cfg = inner["config"]
    backward = KerasLayer(
        name,
        str(inner.get("class_name")),
        {**inner_cfg, "go_backwards": not inner_cfg.get("go_backwards", False)},
        _ordered(bw),
    )
    return KerasLayer(
        name,
        str(inner.get("class_name")),
        {**inner_cfg, "merge_mode": cfg.get("merge_mode", "concat")},
        _ordered(fw),
        backward,
    )


def _ordered(weights: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Weights in the layer's order (kernel, recurrent_kernel, bias) by their last name part."""
    rank = {role: i for i, role in enumerate(_ROLES)}
    return [
        weights[n] for n in sorted(weights, key=lambda n: (rank.get(n.rsplit("/", 1)[-1], 9), n))
    ]
