"""TF2 object-based checkpoints and SavedModels without Keras metadata, read without TensorFlow.

What TF2 programs write by default holds no layer configuration, only objects and
variables: ``tf.train.Checkpoint(model=m).save(prefix)``, Keras ``model.save_weights(prefix)``
(TF format) and ``tf.saved_model.save(model, dir)`` (TF-Serving exports, whose
``variables/variables`` is the same kind of checkpoint).  The checkpoint's object graph
(:mod:`rnnfuse.tf1.checkpoint.object_graph`) says which object owns which variable:

* a recurrent layer is an object with a ``cell`` whose children are ``kernel``,
  ``recurrent_kernel`` and (optionally) ``bias``; a ``Bidirectional`` layer has a
  ``forward_layer`` and a ``backward_layer``; ``RNN(StackedRNNCells)`` a ``cell`` with
  ``cells``;
* the cell kind and sizes come from the shapes: ``recurrent_kernel`` [H, G*H] with G = 4
  (LSTM), 3 (GRU: ``reset_after`` from the bias, [2, 3H] or [3H]) or 1 (SimpleRNN).  A GRU
  without bias does not tell ``reset_after``: pass it.  Activations are taken to be Keras'
  defaults (tanh, sigmoid): the file does not store them;
* the layer names come from the variables' names (``lstm/lstm_cell/kernel`` is layer
  ``lstm``), the order from the model's (``layer_with_weights-0``, ``-1``, ...);
* optimizer state (slot variables, anything under an ``optimizer`` attribute) and
  ``save_counter`` are skipped and reported; other objects with variables (a ``Dense``
  head) are layers that are not recurrent.

The layers go to :func:`rnnfuse.stack_from_keras`'s converter
(:func:`rnnfuse.convert.tf2.stack_from_tf2`), so everything it checks and supports holds here too.

>>> found = read_object_checkpoint("tests/fixtures/legacy/tf2_checkpoint/ckpt-1")
>>> [layer.name for layer in found.layers], found.skipped["counter"]
(['lstm', 'gru', 'simple_rnn', 'dense'], ['save_counter'])
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from ..tf1.checkpoint import CheckpointError, read_object_bundle
from ..tf1.checkpoint.object_graph import OBJECT_GRAPH_KEY, ObjectNode, parse_object_graph
from ._keras_model import GATES, KerasFormatError, KerasLayer

__all__ = ["ObjectCheckpoint", "read_object_checkpoint", "read_tf2_layers"]

_ROLES = ("kernel", "recurrent_kernel", "bias")
_OPTIMIZER_ATTRIBUTES = ("optimizer", "_optimizer", "inner_optimizer")
_MODEL_ORDER = re.compile(r"layer(_with_weights)?-\d+")  # a Functional/Sequential model's layers


class ObjectCheckpoint(NamedTuple):
    """What a TF2 object-based checkpoint holds: its layers in model order, and what was
    skipped (``{kind: [variable names]}``: ``optimizer``, ``counter``, ``other``)."""

    layers: list[KerasLayer]
    skipped: dict[str, list[str]]
    variables: int  # every variable in the checkpoint
    ordered: bool  # the layers' order is the model's (layer-<n>), not attribute order

    def skipped_summary(self) -> str:
        parts = []
        for kind, names in self.skipped.items():
            if kind == "optimizer":
                parts.append(
                    f"optimizer state, {len(names)} variable{'s' * (len(names) != 1)} "
                    f"(slots, iterations, learning rate)"
                )
            elif kind == "other":
                parts.append(
                    f"variables of no layer {names[:5]}" + (" ..." if len(names) > 5 else "")
                )
            else:
                parts += names
        return ", ".join(parts) if parts else "nothing"


def read_tf2_layers(
    path: str | os.PathLike[str],
    *,
    reset_after: bool | None = None,
    layer_names: Sequence[str] | None = None,
) -> list[KerasLayer]:
    """The layers of a TF2 checkpoint prefix or of a SavedModel directory, in model order.

    A subclassed model stores its layers as attributes, in the order they were assigned,
    not called: with more than one recurrent layer there, ``layer_names`` must give the order.
    """
    path = os.fspath(path)
    prefix = os.path.join(path, "variables", "variables") if os.path.isdir(path) else path
    found = read_object_checkpoint(prefix, reset_after=reset_after)
    recurrent = [lay.name for lay in found.layers if lay.class_name in GATES or lay.cells]
    if not found.ordered and len(recurrent) > 1 and layer_names is None:
        raise ValueError(
            f"layer_names: {path!r} holds the layers of a subclassed model (attributes "
            f"in the order they were assigned, not called), so the file does not tell "
            f"their order; pass layer_names=[...] bottom first, from {recurrent} "
            f"(rnnfuse convert: --layer NAME, repeated)"
        )
    return found.layers


def read_object_checkpoint(prefix: str, *, reset_after: bool | None = None) -> ObjectCheckpoint:
    """Read a TF2 object-based checkpoint: its layers (with their weights) and what it skips."""
    try:
        arrays, strings = read_object_bundle(prefix)
    except CheckpointError as exc:
        raise KerasFormatError(f"source: {exc}") from None
    if OBJECT_GRAPH_KEY not in strings:
        raise KerasFormatError(
            f"source: {prefix!r} holds no {OBJECT_GRAPH_KEY}: a TF1 name-based checkpoint (a TF1 "
            "Saver or SavedModelBuilder wrote it); read it with "
            f"rnnfuse.tf1.load_stack({prefix!r}, scope) (`rnnfuse inspect {prefix}` "
            "lists its RNN scopes)"
        )
    try:
        nodes = parse_object_graph(strings[OBJECT_GRAPH_KEY], f"{prefix}: {OBJECT_GRAPH_KEY}")
    except CheckpointError as exc:
        raise KerasFormatError(f"source: {exc}") from None
    return _Walk(nodes, arrays, prefix, reset_after).run()


class _Walk:
    """One depth-first pass over the object graph from the root, children in saved order."""

    def __init__(
        self,
        nodes: list[ObjectNode],
        arrays: dict[str, np.ndarray],
        prefix: str,
        reset_after: bool | None,
    ) -> None:
        self.nodes, self.arrays, self.prefix, self.reset_after = nodes, arrays, prefix, reset_after
        self.used: set[int] = set()  # variable nodes a layer took
        self.optimizer: set[int] = set()  # nodes reached through an optimizer
        self.layers: list[KerasLayer] = []
        self.paths: dict[int, str] = {}
        self.others: list[tuple[int, int, str]] = []  # (place in layers, node, path)
        self.ordered = True

    def run(self) -> ObjectCheckpoint:
        slot_nodes = {slot for node in self.nodes for _, _, slot in node.slots}
        self._visit()
        self._other_layers()
        skipped: dict[str, list[str]] = {}
        for k, node in enumerate(self.nodes):
            if node.variable is None or k in self.used:
                continue
            name = node.variable[0] or self.paths.get(k, f"node {k}")
            if k in slot_nodes or k in self.optimizer:
                skipped.setdefault("optimizer", []).append(name)
            elif self.paths.get(k) == "save_counter":
                skipped.setdefault("counter", []).append("save_counter")
            else:  # a variable of no layer (e.g. tf.train.Checkpoint(step=tf.Variable(...)))
                skipped.setdefault("other", []).append(self.paths.get(k) or name)
        count = sum(node.variable is not None for node in self.nodes)
        return ObjectCheckpoint(self._unique(self.layers), skipped, count, self.ordered)

    def _visit(self) -> None:
        stack: list[tuple[int, str, bool]] = [(0, "", False)]
        seen: set[int] = set()
        while stack:
            k, path, in_optimizer = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            self.paths[k] = path
            if in_optimizer or self.nodes[k].slots:
                self.optimizer.add(k)
                in_optimizer = True
            elif self._layer(k, path):
                continue
            children = self.nodes[k].children
            for name, child in reversed(children):
                stack.append(
                    (
                        child,
                        f"{path}/{name}".lstrip("/"),
                        in_optimizer or name in _OPTIMIZER_ATTRIBUTES,
                    )
                )

    # ------------------------------------------------------------------ layers
    def _child(self, k: int, name: str) -> int | None:
        return next((c for n, c in self.nodes[k].children if n == name), None)

    def _is_cell(self, k: int | None) -> bool:
        return (
            k is not None
            and self._child(k, "kernel") is not None
            and self._child(k, "recurrent_kernel") is not None
        )

    def _is_rnn(self, k: int | None) -> bool:
        cell = None if k is None else self._child(k, "cell")
        return cell is not None and (self._is_cell(cell) or self._child(cell, "cells") is not None)

    def _layer(self, k: int, path: str) -> bool:
        """Record the layer at node ``k``, if it is one; whether it was."""
        fw, bw = self._child(k, "forward_layer"), self._child(k, "backward_layer")
        if (self._is_rnn(fw) and self._is_rnn(bw)) or self._is_rnn(k):
            self.ordered = self.ordered and bool(_MODEL_ORDER.fullmatch(path.rsplit("/", 1)[-1]))
        if self._is_rnn(fw) and self._is_rnn(bw):
            forward = self._rnn(fw, path, backwards=False, scope_depth=3)  # type: ignore[arg-type]
            backward = self._rnn(bw, path, backwards=True, scope_depth=3)  # type: ignore[arg-type]
            config = {**forward.config, "merge_mode": "concat"}
            self.layers.append(forward._replace(config=config, backward=backward))
            return True
        if self._is_rnn(k):
            self.layers.append(self._rnn(k, path, backwards=False, scope_depth=2))
            return True
        if k != 0 and self._own_variables(k):
            self.others.append((len(self.layers), k, path))
        return False

    def _own_variables(self, k: int) -> list[int]:
        """The variables an object holds under its own attribute names (``kernel``, not a
        list's ``0``, ``1``, ...)."""
        return [
            c
            for n, c in self.nodes[k].children
            if self.nodes[c].variable is not None and not n.isdigit() and n != "save_counter"
        ]

    def _other_layers(self) -> None:
        """Objects with variables of their own that no recurrent layer took (a Dense head):
        layers that are not recurrent, at their place in the model's order."""
        shift = 0
        for at, k, path in self.others:
            own = [c for c in self._own_variables(k) if c not in self.used]
            if not own:
                continue
            self.used.update(own)
            name = self._name(own[0], 1, path)
            layer = KerasLayer(
                name, f"<{name.rsplit('/', 1)[-1]}>", {}, [self._array(c) for c in own]
            )
            self.layers.insert(at + shift, layer)
            shift += 1

    def _rnn(self, k: int, path: str, backwards: bool, scope_depth: int) -> KerasLayer:
        cell = self._child(k, "cell")
        assert cell is not None
        cells_list = self._child(cell, "cells")
        if cells_list is None:
            return self._cell(cell, path, backwards, scope_depth)
        cells = [
            c
            for _, c in sorted(
                self.nodes[cells_list].children,
                key=lambda item: int(item[0]) if item[0].isdigit() else -1,
            )
        ]
        parts = [self._cell(c, path, False, 3) for c in cells]
        name = parts[0].name
        return KerasLayer(
            name,
            "RNN",
            {"name": name, "go_backwards": backwards},
            [],
            cells=tuple(
                p._replace(name=f"{name}/cell_{i}", class_name=f"{p.class_name}Cell")
                for i, p in enumerate(parts)
            ),
        )

    def _cell(self, cell: int, path: str, backwards: bool, scope_depth: int) -> KerasLayer:
        roles = {n: c for n, c in self.nodes[cell].children if self.nodes[c].variable is not None}
        kernel = roles.get("kernel")
        name = self._name(kernel, scope_depth, path) if kernel is not None else path
        others = sorted(set(roles) - set(_ROLES))
        if others or "recurrent_kernel" not in roles:
            raise KerasFormatError(
                f"source: {self.prefix!r}: layer {name!r}: its cell holds variables "
                f"{sorted(roles)}; rnnfuse reads Keras LSTM, GRU and SimpleRNN cells (kernel, "
                f"recurrent_kernel, bias), not {others or 'a cell without recurrent_kernel'}"
            )
        self.used.update(roles.values())
        weights = [self._array(roles[r]) for r in _ROLES if r in roles]
        return _inferred(name, weights, backwards, self.reset_after, self.prefix)

    def _array(self, k: int) -> np.ndarray:
        variable = self.nodes[k].variable
        assert variable is not None
        key = variable[1]
        if key not in self.arrays:
            raise KerasFormatError(
                f"source: {self.prefix!r}: the object graph names {key!r}, "
                f"which the checkpoint does not hold"
            )
        return self.arrays[key]

    def _name(self, k: int, depth: int, path: str) -> str:
        """The layer's name from a variable's ``full_name`` less its last ``depth`` parts
        (``lstm/lstm_cell/kernel`` -> ``lstm``); the object path if it has none."""
        variable = self.nodes[k].variable
        parts = (variable[0] if variable else "").split("/")
        return "/".join(parts[:-depth]) if len(parts) > depth else path

    @staticmethod
    def _unique(layers: list[KerasLayer]) -> list[KerasLayer]:
        names = [lay.name for lay in layers]
        if len(set(names)) == len(names):
            return layers
        return [lay._replace(name=f"{lay.name}#{k}") for k, lay in enumerate(layers)]


def _inferred(
    name: str, weights: list[np.ndarray], backwards: bool, reset_after: bool | None, prefix: str
) -> KerasLayer:
    """A Keras recurrent layer from its kernel, recurrent kernel and bias shapes."""
    kernel, recurrent = weights[0], weights[1]
    shapes = [list(w.shape) for w in weights]
    units = recurrent.shape[0] if recurrent.ndim == 2 else 0
    if kernel.ndim != 2 or not units or recurrent.shape[1] % units:
        raise KerasFormatError(
            f"source: {prefix!r}: layer {name!r}: expected kernel [input, G * "
            f"units] and recurrent_kernel [units, G * units], got {shapes}"
        )
    gates = recurrent.shape[1] // units
    cls = {g: c for c, g in GATES.items()}.get(gates)
    if cls is None:
        raise KerasFormatError(
            f"source: {prefix!r}: layer {name!r}: recurrent_kernel "
            f"{shapes[1]} has {gates} gates; LSTM has 4, GRU 3, SimpleRNN 1"
        )
    config: dict[str, Any] = {
        "name": name,
        "units": units,
        "use_bias": len(weights) == 3,
        "go_backwards": backwards,
    }
    if cls == "GRU":
        if len(weights) == 3:
            config["reset_after"] = weights[2].ndim == 2
        elif reset_after is None:
            raise ValueError(
                f"reset_after: layer {name!r} is a GRU without bias, and only its bias "
                f"shape tells reset_after ([2, 3 * units] True, [3 * units] False); "
                f"pass reset_after=True or False, as the model was built, to "
                f"rnnfuse.convert.tf2.stack_from_tf2 (rnnfuse convert: "
                f"--reset-after true|false)"
            )
        else:
            config["reset_after"] = bool(reset_after)
    return KerasLayer(name, cls, config, weights)
