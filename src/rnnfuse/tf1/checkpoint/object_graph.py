"""The object graph of a TF2 object-based checkpoint, without TensorFlow.

``tf.train.Checkpoint.save``, Keras ``save_weights`` (TF format) and every SavedModel's
``variables/variables`` store, beside the tensors, a scalar string tensor
``_CHECKPOINTABLE_OBJECT_GRAPH``: a ``TrackableObjectGraph`` proto.  Its ``nodes`` (field 1)
are the saved objects, node 0 the root; each ``TrackableObject`` has

* ``children`` (1): ``ObjectReference`` (``node_id`` = 1, ``local_name`` = 2), the
  attribute names (``model``, ``layer_with_weights-0``, ``cell``, ``kernel``, ...);
* ``attributes`` (2): ``SerializedTensor`` (``name`` = 1, ``full_name`` = 2,
  ``checkpoint_key`` = 3); a variable has one named ``VARIABLE_VALUE`` whose
  ``full_name`` is the variable's name (``lstm/lstm_cell/kernel``) and whose
  ``checkpoint_key`` is its key in the bundle;
* ``slot_variables`` (3): ``SlotVariableReference`` (``original_variable_node_id`` = 1,
  ``slot_name`` = 2, ``slot_variable_node_id`` = 3), an optimizer's slots (``m``, ``v``).

Every node id is checked against the number of nodes; errors are :class:`CheckpointError`.
"""

from __future__ import annotations

from typing import NamedTuple

from .proto import Fields, int_field, messages, parse_message
from .reader import CheckpointError
from .table import TableError

__all__ = ["OBJECT_GRAPH_KEY", "ObjectNode", "parse_object_graph"]

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


class ObjectNode(NamedTuple):
    """One saved object: its named children, its variable (if it is one), its slots."""

    children: tuple[tuple[str, int], ...]  # (local_name, node id), in the saved order
    variable: tuple[str, str] | None  # (full_name, checkpoint_key) of VARIABLE_VALUE
    slots: tuple[tuple[int, str, int], ...]  # (variable node, slot name, slot node)


def _text(fields: Fields, number: int) -> str:
    values = [v for wire, v in fields.get(number, []) if wire == 2 and isinstance(v, bytes)]
    if not values:
        return ""
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise TableError(f"string field {number} is not UTF-8") from None


def _node(fields: Fields, count: int) -> ObjectNode:
    def node_id(ref: Fields, number: int) -> int:
        value = int_field(ref, number)
        if not 0 <= value < count:
            raise TableError(f"a reference to node {value}, but the graph has {count} nodes")
        return value

    children = tuple((_text(ref, 2), node_id(ref, 1)) for ref in messages(fields, 1))
    variables = [
        (_text(attr, 2), _text(attr, 3))
        for attr in messages(fields, 2)
        if _text(attr, 1) == "VARIABLE_VALUE"
    ]
    slots = tuple((node_id(ref, 1), _text(ref, 2), node_id(ref, 3)) for ref in messages(fields, 3))
    return ObjectNode(children, variables[-1] if variables else None, slots)


def parse_object_graph(data: bytes, where: str = OBJECT_GRAPH_KEY) -> list[ObjectNode]:
    """The nodes of a serialized ``TrackableObjectGraph``, node 0 the root."""
    try:
        raw = messages(parse_message(data), 1)
        nodes = [_node(fields, len(raw)) for fields in raw]
    except (TableError, RecursionError) as exc:
        raise CheckpointError(f"{where}: not a TrackableObjectGraph ({exc})") from None
    if not nodes:
        raise CheckpointError(f"{where}: the object graph has no nodes")
    return nodes
