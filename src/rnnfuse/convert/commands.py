"""``rnnfuse inspect`` of Keras files: Keras 2 ``.h5`` (full or weights only), ``.keras``,
Keras 3 ``.weights.h5`` and tf-keras SavedModel directories.

Prints each layer as read (class, sizes, direction, merge mode, ``go_backwards``, the cells
of an ``RNN`` layer), which layers the stack leaves out and why, and the module
:func:`~rnnfuse.stack_from_keras` builds from the recurrent layers with its state structure.
"""

from __future__ import annotations

import os
from typing import Any

from .._command import fail
from ..describe import state_str
from ._keras_model import GATES, NEUTRAL, KerasLayer

__all__ = ["inspect_path", "describe_layers"]


def _is_keras(path: str) -> bool:
    if os.path.isdir(path):
        return os.path.exists(os.path.join(path, "keras_metadata.pb")) or os.path.exists(
            os.path.join(path, "saved_model.pb")
        )
    return os.path.isfile(path) and path.endswith((".keras", ".h5"))


def inspect_path(path: str) -> int | None:
    """``rnnfuse inspect`` for a Keras file or SavedModel directory; ``None`` otherwise."""
    if not _is_keras(path):
        return None
    from .keras import read_keras_layers

    try:
        layers = read_keras_layers(path)
        print(
            f"Keras {'SavedModel' if os.path.isdir(path) else 'file'} {path}: {len(layers)} layers"
        )
    except (ValueError, TypeError, OSError) as exc:
        return fail("inspect", exc)
    return describe_layers(layers)


def describe_layers(layers: list[KerasLayer]) -> int:
    """Print each layer, then the module ``stack_from_keras`` builds from the recurrent ones
    and its state; the exit status of ``rnnfuse inspect``."""
    from ._keras_graph import chains, describe_chain
    from .keras import _build, _select

    try:
        for layer in layers:
            print(f"  {layer.name}: {_describe(layer)}")
        found = chains(layers)
        if not found:
            print("no LSTM, GRU or SimpleRNN layer found")
            return 1
        if len(found) > 1:
            print(
                f"{len(found)} separate chains of recurrent layers (a layer stacks on the one "
                "whose output sequence it reads); stacks_from_keras(path) loads "
                "each as its own module:"
            )
        for chain in found:
            names = [lay.name for lay in chain]
            if len(found) > 1:
                print(f"chain {describe_chain(chain, layers)}")
            _print_module(names, _build(_select(layers, names), True))
    except (ValueError, TypeError, OSError) as exc:
        return fail("inspect", exc)
    if any(lay.class_name == "Masking" for lay in layers):
        print(
            "  Masking: pass lengths (rnnfuse.convert.keras.lengths_from_masking(x)); outputs past "
            "a length are zeros here, where a plain Keras LSTM/GRU repeats its last output"
        )
    return 0


def _print_module(names: list[str], module: Any) -> None:
    """The module one chain becomes: its layers, outputs and state."""
    stack = getattr(module, "stack", module)
    print(f"stack_from_keras(path, layer_names={names}) -> {type(module).__name__}")
    for k, cell in enumerate(stack.layers):
        backward = stack.backward_cell(k)
        print(
            f"  layer {k}: {cell!r}" + (f" | backward {backward!r}" if backward is not None else "")
        )
    extra = getattr(module, "merge_mode", "concat")
    merges = [m for k, m in enumerate(stack.merge_modes) if stack.layer_directions[k]]
    if any(m != "concat" for m in merges):
        print(f"  bidirectional layers merge with merge_mode={merges}")
    print(
        f"  outputs: [batch, time, {stack.output_size}]"
        + (f" as two outputs (fw, bw): merge_mode={extra!r}" if extra != "concat" else "")
        + (
            " in reversed time (go_backwards)"
            if module is not stack and not hasattr(module, "merge_mode")
            else ""
        )
    )
    print(f"  state: {state_str(stack.state_sizes, 'LSTMState')}")


def _describe(layer: KerasLayer) -> str:
    cls, cfg = layer.class_name, layer.config
    if cls in GATES:
        w = layer.weights
        units = cfg.get("units", w[1].shape[0] if len(w) > 1 else "?")
        defaults = {
            "reset_after": (False,),
            "go_backwards": (False,),
            "activation": ("tanh",),
            "recurrent_activation": ("sigmoid",),
        }
        options = "".join(
            f", {k}={cfg[k]!r}"
            for k in defaults
            if k in cfg and cfg[k] not in defaults[k] and not (k == "reset_after" and cls != "GRU")
        )
        size = f", input {w[0].shape[0]}" if w and w[0].ndim == 2 else ""
        text = f"{cls}(units={units}{options}){size}"
        if layer.backward is not None:
            text = f"Bidirectional({text}, merge_mode={cfg.get('merge_mode', 'concat')!r})"
        return text
    if cls in NEUTRAL:
        return f"{cls} (no effect at inference: passed over)"
    shapes = [list(a.shape) for a in layer.weights]
    return (
        f"{cls.strip('<>')} {'with weights ' + str(shapes) if shapes else ''} "
        "(not recurrent: left out)"
    )
