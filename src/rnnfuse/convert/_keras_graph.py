"""Which Keras recurrent layers feed which: the chains a functional model's graph makes.

A functional model's configuration lists, per layer, its ``inbound_nodes``: the tensors it
was called on.  Keras 2 writes each node as a list of ``[layer, node, tensor, kwargs]``
(an RNN's ``initial_state`` tensors after its input, or inside ``kwargs``); Keras 3 as
``{"args": [...], "kwargs": {...}}`` whose tensors are ``{"class_name": "__keras_tensor__",
"config": {"keras_history": [layer, node, tensor]}}`` (``initial_state`` in ``kwargs``).
A Sequential model's layers each read the one before (:func:`sequential`); weights-only
files and lists of layers have no graph: their recurrent layers chain in order.

Layer B *reads* layer A when B's input is A's output sequence (tensor 0), directly or
through layers that change nothing at inference (``Masking``, ``Dropout``, ...).  Only such
layers stack: each root-to-leaf path of "reads" is one chain.  Layers on other inputs
(an encoder and a decoder, parallel branches) are other chains, and a layer whose initial
state comes from another layer's states starts a chain of its own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._keras_model import GATES, NEUTRAL, KerasFormatError, KerasLayer

Tensor = tuple[str, int]  # (layer name, output index)
_RECURRENT_CLASSES = set(GATES) | {"Bidirectional", "RNN"}


class Inbound(NamedTuple):
    """What a layer was called on (its first call; ``calls`` counts them)."""

    data: tuple[Tensor, ...]  # the inputs (a recurrent layer: its input sequence only)
    states: tuple[Tensor, ...] = ()  # a recurrent layer's initial_state tensors
    calls: int = 1


def parse_inbound(entry: dict[str, Any], class_name: str) -> Inbound | None:
    """The inbound tensors of a layer entry of a model configuration; ``None`` when the
    entry has no ``inbound_nodes`` (a Sequential model)."""
    nodes = entry.get("inbound_nodes")
    if not isinstance(nodes, list):
        return None
    if not nodes:
        return Inbound(())  # an InputLayer
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3
        args = _tensors(node.get("args"))
        found = node.get("kwargs")
        states = _tensors(found.get("initial_state") if isinstance(found, dict) else None)
    else:  # Keras 2: [[layer, node, tensor, kwargs], ...]
        args = _tensors(node)
        first: Any = node[0] if isinstance(node, list) and node else None
        extra = first[3] if isinstance(first, list) and len(first) > 3 else None
        states = _tensors(extra.get("initial_state") if isinstance(extra, dict) else None)
    if class_name in _RECURRENT_CLASSES:
        return Inbound(tuple(args[:1]), tuple(args[1:]) + tuple(states), len(nodes))
    return Inbound(tuple(args), (), len(nodes))


def sequential(layers: list[KerasLayer]) -> list[KerasLayer]:
    """The layers of a Sequential model, each reading the one before (the first: the model's
    input), so that a layer between two recurrent ones (``RepeatVector``) breaks the chain
    as it does in the model."""
    return [
        lay._replace(inbound=Inbound(((layers[k - 1].name, 0),) if k else ()))
        for k, lay in enumerate(layers)
    ]


def _tensors(value: Any) -> list[Tensor]:
    """The ``(layer, tensor index)`` references in a node's arguments, in order."""
    if isinstance(value, dict):
        config = value.get("config")
        history: Any = config.get("keras_history") if isinstance(config, dict) else None
        if value.get("class_name") == "__keras_tensor__" and _is_ref(history):
            return [(history[0], history[2])]
        return []
    if _is_ref(value):
        return [(value[0], value[2])]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def _is_ref(value: Any) -> bool:
    return (
        isinstance(value, (list, tuple))
        and len(value) in (3, 4)
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and isinstance(value[2], int)
    )


def _is_recurrent(layer: KerasLayer) -> bool:
    return layer.class_name in GATES or bool(layer.cells)


def feeder(layer: KerasLayer, by_name: dict[str, KerasLayer]) -> tuple[str, str]:
    """``("layer", name)`` when ``layer``'s input is recurrent layer ``name``'s output
    sequence (through layers that change nothing); otherwise ``("input", name)`` for a model
    input or ``("other", name)`` for any other layer it reads."""
    seen: set[str] = set()
    current: tuple[Tensor, ...] = layer.inbound.data if layer.inbound is not None else ()
    while len(current) == 1:
        name, index = current[0]
        source = by_name.get(name)
        if source is None or name in seen:
            return ("other", name)
        seen.add(name)
        if _is_recurrent(source):
            return (
                ("layer", name)
                if index == 0
                else ("other", f"{name} (its output {index}: a state)")
            )
        if source.class_name == "InputLayer":
            return ("input", name)
        if source.class_name not in NEUTRAL or source.inbound is None:
            return ("other", name)
        current = source.inbound.data
    return ("other", "several inputs") if current else ("input", "")  # "": the model's one input


def chains(layers: list[KerasLayer]) -> list[list[KerasLayer]]:
    """The recurrent layers as chains where each layer reads the one before, in model
    order: every root-to-leaf path.  Without a graph: one chain, in order."""
    rnn = [lay for lay in layers if _is_recurrent(lay)]
    if not rnn or any(lay.inbound is None for lay in rnn):
        return [rnn] if rnn else []
    by_name = {lay.name: lay for lay in layers}
    parent = {}
    for lay in rnn:
        kind, name = feeder(lay, by_name)
        parent[lay.name] = name if kind == "layer" and not lay.inbound.states else None
    children: dict[str | None, list[KerasLayer]] = {}
    for lay in rnn:
        children.setdefault(parent[lay.name], []).append(lay)
    found: list[list[KerasLayer]] = []
    todo = [[root] for root in reversed(children.get(None, []))]
    while todo:  # depth first, in model order; a list, not recursion: a file sets the depth
        path = todo.pop()
        below = children.get(path[-1].name, [])
        if not below:
            found.append(path)
        todo.extend(path + [child] for child in reversed(below))
    reached = {lay.name for path in found for lay in path}
    if len(reached) != len(rnn):
        raise KerasFormatError(
            f"the model's graph has a cycle: layers "
            f"{sorted(lay.name for lay in rnn if lay.name not in reached)} read each other"
        )
    return found


def describe_chain(chain: list[KerasLayer], layers: list[KerasLayer]) -> str:
    """``['encoder'] (on input 'encoder_inputs')``, with where its initial state comes from."""
    first = chain[0]
    text = repr([lay.name for lay in chain])
    if first.inbound is None:
        return text
    kind, name = feeder(first, {lay.name: lay for lay in layers})
    text += {
        "input": f" on input {name!r}" if name else " on the model's input",
        "layer": f" on the outputs of {name!r}",
    }.get(kind, f" reading {name!r}")
    sources = sorted({n for n, _ in first.inbound.states})
    if sources:
        text += f", its initial state from {', '.join(map(repr, sources))}"
    return text
