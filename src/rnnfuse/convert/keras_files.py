"""Keras and TF2 files as ``rnnfuse inspect`` and ``rnnfuse convert`` read them
(:data:`FILE_KINDS`): Keras 2 ``.h5`` (full or weights only), ``.keras``, Keras 3
``.weights.h5``, tf-keras SavedModel directories, and what TF2 programs write without Keras
metadata (object-based checkpoints of ``tf.train.Checkpoint`` and ``save_weights``,
``tf.saved_model.save`` directories).

``inspect`` prints each layer as read (class, sizes, direction, merge mode,
``go_backwards``, the cells of an ``RNN`` layer), which layers the stack leaves out and why,
and the module :func:`~rnnfuse.stack_from_keras` builds from the recurrent layers with its
state structure.  ``convert`` writes that module (``--layer`` picks the layers, bottom
first; ``--reset-after`` tells a bias-less GRU's option where no configuration is stored).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

from .._command import Converted, FileKind, fail
from ..describe import state_str
from ..tf1.files import checkpoint_prefix
from ._keras_model import GATES, NEUTRAL, KerasLayer

__all__ = ["FILE_KINDS", "describe_layers"]


def _is_tf2_checkpoint(path: str) -> bool:
    """An object-based checkpoint (``tf.train.Checkpoint``, ``save_weights``)."""
    from ..tf1.checkpoint import CheckpointError, is_object_based

    prefix = checkpoint_prefix(path)
    try:
        return prefix is not None and is_object_based(prefix)
    except (CheckpointError, ValueError, OSError):
        return False  # TF1's reader reports what is wrong with it


def _has(path: str, name: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, name))


def _is_keras_savedmodel(path: str) -> bool:
    return _has(path, "keras_metadata.pb")


def _is_tf2_savedmodel(path: str) -> bool:
    """A ``tf.saved_model.save`` directory without Keras metadata."""
    return _has(path, "saved_model.pb") and not _has(path, "keras_metadata.pb")


def _is_keras_file(path: str) -> bool:
    return os.path.isfile(path) and path.endswith((".keras", ".h5"))


def _describe_keras(path: str) -> int:
    """``rnnfuse inspect`` of a Keras file or SavedModel directory."""
    from .keras import read_keras_layers

    try:
        layers = read_keras_layers(path)
        print(
            f"Keras {'SavedModel' if os.path.isdir(path) else 'file'} {path}: {len(layers)} layers"
        )
    except (ValueError, TypeError, OSError) as exc:
        return fail("inspect", exc)
    return describe_layers(layers)


def _describe_tf2_checkpoint(path: str) -> int:
    """``rnnfuse inspect`` of a TF2 object-based checkpoint: its Keras layers."""
    from .tf2_checkpoint import read_object_checkpoint

    prefix = checkpoint_prefix(path) or path
    try:
        found = read_object_checkpoint(prefix)
    except (ValueError, OSError) as exc:
        return fail("inspect", exc)
    print(
        f"TF2 object-based checkpoint {prefix}: {found.variables} variables, "
        f"{len(found.layers)} layers with weights"
    )
    print(f"skipped (not model weights): {found.skipped_summary()}")
    print(
        "no configuration stored: kinds and sizes from the shapes, activations taken to be "
        "Keras' defaults (tanh, sigmoid)"
    )
    if not found.ordered:
        print(
            "a subclassed model: its layers are listed in the order they were assigned, which "
            "the file cannot tell from the order they are called; with several recurrent "
            "layers, pass layer_names=[...] (--layer NAME) in call order"
        )
    return describe_layers(found.layers)


def _convert_keras(path: str, args: argparse.Namespace) -> Converted:
    """``rnnfuse convert`` of a Keras file or a Keras SavedModel: the one chain of recurrent
    layers, or the layers of ``--layer``."""
    from .keras import stack_from_keras

    if not args.layer:
        _check_one_chain(path)
    with _flag_names():
        module = stack_from_keras(path, layer_names=args.layer, batch_first=not args.time_major)
    return _storable(module, path)


def _convert_tf2(path: str, args: argparse.Namespace) -> Converted:
    """``rnnfuse convert`` of a TF2 checkpoint or SavedModel without Keras metadata."""
    from .tf2 import stack_from_tf2

    reset_after = None if args.reset_after is None else args.reset_after == "true"
    with _flag_names():
        module = stack_from_tf2(
            checkpoint_prefix(path) or path,
            layer_names=args.layer,
            reset_after=reset_after,
            batch_first=not args.time_major,
        )
    return _storable(module, path)


def _check_one_chain(path: str) -> None:
    """``ValueError`` naming ``--layer`` where the recurrent layers are not one stack."""
    from ._keras_graph import chains, describe_chain
    from .keras import read_keras_layers

    layers = read_keras_layers(path)
    found = chains(layers)
    if len(found) > 1:
        listed = "; ".join(f"{k + 1}. {describe_chain(c, layers)}" for k, c in enumerate(found))
        picks = " or ".join(" ".join(f"--layer {lay.name}" for lay in c) for c in found)
        raise ValueError(
            f"--layer: the recurrent layers of {path!r} form {len(found)} separate chains, "
            f"not one stack (a layer stacks on the one whose output sequence it reads): "
            f"{listed}; convert one chain per file: {picks}"
        )


@contextlib.contextmanager
def _flag_names() -> Iterator[None]:
    """Re-raise a loader's ``ValueError`` that names the argument ``layer_names`` with the
    flag that sets it."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        if "layer_names" not in text or "--layer" in text:
            raise
        raise ValueError(
            f"{layer_flags(text)} (rnnfuse convert: --layer NAME, once per layer, bottom first)"
        ) from None


def layer_flags(text: str) -> str:
    """``text`` with each ``layer_names=[...]`` of names spelled as ``--layer`` flags.

    >>> layer_flags("pass layer_names=['lstm', 'gru'] to import them")
    'pass --layer lstm --layer gru to import them'
    """

    def flags(match: re.Match[str]) -> str:
        try:
            names = ast.literal_eval(match.group(0).partition("=")[2])
        except (ValueError, SyntaxError):
            return match.group(0)
        if not all(isinstance(name, str) for name in names):
            return match.group(0)
        return " ".join(f"--layer {name}" for name in names)

    return re.sub(r"layer_names=\[[^\]]*\]", flags, text)


def _storable(module: Any, path: str) -> Converted:
    """What a stack file can hold of ``module``: a ``StackedRNN`` (a ``MergedBidirectional``
    top with ``merge_mode=None`` is its stack, outputs concatenated); a ``GoBackwards``
    layer is refused."""
    from .keras import GoBackwards, MergedBidirectional

    if isinstance(module, GoBackwards):
        raise ValueError(
            f"{path!r}: a lone go_backwards layer returns its outputs in reversed time, "
            f"which a stack file (a StackedRNN or BidirectionalRNN) cannot record; load it "
            f"in Python with rnnfuse.stack_from_keras(path), which returns a GoBackwards module"
        )
    if isinstance(module, MergedBidirectional):
        note = (
            "merge_mode=None: Keras returns the top layer's forward and backward outputs as "
            "two tensors; the stack file's outputs are the two concatenated (fw first): "
            "outputs.chunk(2, dim=-1) splits them"
        )
        return Converted(module.stack, path, (note,))
    return Converted(module, path)


_KERAS_OPTIONS = ("--layer",)
_TF2_OPTIONS = ("--layer", "--reset-after")
FILE_KINDS = (
    FileKind(
        "a TF2 object-based checkpoint",
        _is_tf2_checkpoint,
        _describe_tf2_checkpoint,
        _convert_tf2,
        _TF2_OPTIONS,
    ),
    FileKind(
        "a Keras SavedModel", _is_keras_savedmodel, _describe_keras, _convert_keras, _KERAS_OPTIONS
    ),
    FileKind("a TF2 SavedModel", _is_tf2_savedmodel, _describe_keras, _convert_tf2, _TF2_OPTIONS),
    FileKind("a Keras file", _is_keras_file, _describe_keras, _convert_keras, _KERAS_OPTIONS),
)


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
                "whose output sequence it reads); stacks_from_keras(path) loads each as its own "
                "module:"
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
    merges = [m for k, m in enumerate(stack.merge_modes) if stack.bidirectional[k]]
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
    weights = "with weights " + str(shapes) if shapes else ""
    return f"{cls.strip('<>')} {weights} (not recurrent: left out)"
