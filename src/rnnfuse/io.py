"""Saving and loading stacks: one safetensors file, the configuration in its metadata.

The file holds every parameter under its ``state_dict`` name and, in the metadata,
``{"format": "rnnfuse", "version": 1, "config": {...}}``.  The configuration describes a
:class:`~rnnfuse.StackedRNN` (each layer's ``cell.config()``, ``batch_first``,
``bidirectional`` (one bool per layer; a file may hold one bool for all) with the backward
layers, ``dropout``, ``variational_dropout``, ``residual`` (one bool per layer; ``true`` in a
file: every layer after the first), ``merge_mode`` where a layer merges otherwise than
concat) or a TF-style :class:`~rnnfuse.bidirectional.BidirectionalRNN` (two such stacks,
``fw`` and ``bw``).  No pickle is involved; loading is strict: a file that is not
safetensors, lacks rnnfuse metadata, or whose tensors are missing, unexpected or of the
wrong shape raises ``ValueError`` saying so.

One metadata convention for every safetensors file rnnfuse writes (stacks here, the
forecaster's files in :mod:`rnnfuse.app`): each metadata value is JSON text, written by
:func:`write_safetensors` and decoded by :func:`read_safetensors_metadata`.  A value that
is not JSON is read as the text itself: files saved before the convention stored
``format`` as plain text, and other programs' files do (``{"format": "pt"}``).

>>> import tempfile, torch
>>> from rnnfuse import StackedRNN
>>> stack = StackedRNN(6, [8, 4], cell="gru")
>>> path = tempfile.mkdtemp() + "/encoder.safetensors"
>>> save(stack, path)
>>> again = load(path)
>>> x = torch.randn(2, 5, 6)
>>> torch.equal(stack(x)[0], again(x)[0])
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import nn

from ._files import GIB, MAX_JSON_DEPTH, check_regular_file, json_depth
from .bidirectional import BidirectionalRNN
from .cells import RecurrentCell, cell_from_config
from .stack import StackedRNN

__all__ = [
    "save",
    "load",
    "read_config",
    "module_from_config",
    "check_state_dict",
    "write_safetensors",
    "read_safetensors_metadata",
    "safetensors_bytes",
    "FORMAT",
    "VERSION",
]

FORMAT = "rnnfuse"
VERSION = 1
MAX_FILE_BYTES = 16 * GIB  # the largest safetensors file rnnfuse reads
_STACK_KEYS = {
    "kind",
    "layers",
    "backward_layers",
    "batch_first",
    "dropout",
    "variational_dropout",
    "residual",
    "bidirectional",
}


def save(module: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write a :class:`StackedRNN` or :class:`BidirectionalRNN` to ``path`` (safetensors).

    The weights are the module's ``state_dict``; its configuration (cells, sizes, options,
    directions) goes into the file's metadata as JSON, so :func:`load` rebuilds the module
    without pickle.

    Args:
        module: the stack to write.
        path: the file to write (conventionally ``*.safetensors``).

    Raises:
        TypeError: ``module`` is neither a ``StackedRNN`` nor a ``BidirectionalRNN``.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from rnnfuse import StackedRNN
        >>> stack = StackedRNN(6, [20, 10], cell="gru")
        >>> path = Path(tempfile.mkdtemp()) / "encoder.safetensors"
        >>> save(stack, path)
        >>> x = torch.randn(3, 5, 6)
        >>> torch.equal(load(path)(x)[0], stack(x)[0])
        True
    """
    config = _module_config(module)
    write_safetensors(
        path, module.state_dict(), {"format": FORMAT, "version": VERSION, "config": config}
    )


def safetensors_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None
) -> bytes:
    """A safetensors file's bytes: ``tensors`` (copied to the CPU, contiguous) and ``metadata``
    with every value stored as JSON text (the convention of every file rnnfuse writes)."""
    from safetensors.torch import save

    plain = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    return save(plain, {key: json.dumps(value) for key, value in (metadata or {}).items()})


def write_safetensors(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Write :func:`safetensors_bytes` to ``path`` (``OSError`` naming the path if it cannot)."""
    data = safetensors_bytes(tensors, metadata)
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise OSError(f"path: cannot write {os.fspath(path)!r} ({exc.strerror or exc})") from None


def read_safetensors_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a safetensors file, each value JSON-decoded (a value that is not JSON,
    as in files of other programs or of rnnfuse before the convention, is kept as text).
    ``ValueError`` names a file that is not safetensors; ``FileNotFoundError`` a missing one."""
    from safetensors import SafetensorError, safe_open

    if os.path.isdir(path):
        raise IsADirectoryError(
            f"path: {os.fspath(path)!r} is a directory; expected a .safetensors file"
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no such file {os.fspath(path)!r}")
    try:
        check_regular_file(path, "a .safetensors file", MAX_FILE_BYTES)
    except ValueError as exc:
        raise ValueError(f"path: {exc}") from None
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(
            f"path: {os.fspath(path)!r} is not a readable safetensors file ({exc})"
        ) from None
    return {
        key: _decoded(value, f"path: {os.fspath(path)!r}: metadata {key!r}")
        for key, value in raw.items()
    }


def _decoded(text: str, what: str) -> Any:
    """A metadata value: its JSON, or the text itself when it is not JSON; ``ValueError``
    naming ``what`` for JSON nested deeper than :data:`~rnnfuse._files.MAX_JSON_DEPTH`."""
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"{what}: JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load(path: str | os.PathLike[str]) -> nn.Module:
    """Read what :func:`save` wrote: a :class:`StackedRNN` or a :class:`BidirectionalRNN`.

    Loading is strict: every tensor of the file must fit the rebuilt module's ``state_dict``
    by name, shape and dtype, and every parameter must be in the file.

    Args:
        path: a file written by :func:`save`.

    Returns:
        The module, on the CPU, in training mode (call ``.eval()`` for inference).

    Raises:
        IsADirectoryError: ``path`` is a directory.
        ValueError: the file is no rnnfuse stack file (no or another format's metadata, an
            unknown version, a damaged configuration) or its tensors do not fit the module
            (the message lists what is missing, unexpected or of the wrong shape).
    """
    from safetensors import safe_open

    config = read_config(path)
    with safe_open(os.fspath(path), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    check_state_dict(
        _module_or_error(config, path, meta=True), tensors, path
    )  # nothing allocated yet
    module = _module_or_error(config, path)
    _load_strict(module, tensors, path)
    return module


def _module_or_error(config: dict[str, Any], path: Any, *, meta: bool = False) -> nn.Module:
    """:func:`module_from_config`, a ``ValueError`` naming ``path`` for a bad configuration.
    ``meta=True`` builds it on the meta device: shapes without memory, so that the sizes a
    file asks for are checked against the tensors it holds before anything is allocated."""
    try:
        if meta:
            with torch.device("meta"):
                return module_from_config(config)
        return module_from_config(config)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OverflowError) as exc:
        raise ValueError(
            f"path: {os.fspath(path)!r} has an invalid configuration ({exc})"
        ) from None


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration stored in an rnnfuse stack file (``ValueError`` if none)."""
    if os.path.isdir(path):
        raise IsADirectoryError(
            f"path: {os.fspath(path)!r} is a directory; expected an rnnfuse .safetensors file"
        )
    metadata = read_safetensors_metadata(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(
            f"path: {os.fspath(path)!r} is not an rnnfuse stack file: a safetensors file without "
            f"rnnfuse metadata (format={metadata.get('format')!r}); it was not "
            "written by rnnfuse.io.save"
        )
    version = metadata.get("version")
    if version != VERSION:
        raise ValueError(
            f"path: {os.fspath(path)!r} has rnnfuse format version {str(version)!r}; "
            f"this rnnfuse reads version {VERSION}"
        )
    config = metadata.get("config")
    if isinstance(config, str) or config is None:
        raise ValueError(
            f"path: {os.fspath(path)!r} has a corrupt configuration (expected a JSON object, "
            f"got {'nothing' if config is None else repr(config[:40])})"
        )
    if not isinstance(config, dict):
        raise ValueError(
            f"path: {os.fspath(path)!r}: expected a JSON object as configuration, "
            f"got {type(config).__name__}"
        )
    return config


def _module_config(module: nn.Module) -> dict[str, Any]:
    if isinstance(module, BidirectionalRNN):
        return {
            "kind": "BidirectionalRNN",
            "fw": _module_config(module.fw),
            "bw": _module_config(module.bw),
        }
    if not isinstance(module, StackedRNN):
        raise TypeError(
            f"module: expected a StackedRNN or a BidirectionalRNN, got {type(module).__name__}"
        )
    return {
        "kind": "StackedRNN",
        "layers": [cell.config() for cell in module.layers],
        "backward_layers": [cell.config() for cell in module.backward_layers],
        "bidirectional": list(module.bidirectional),
        "batch_first": module.batch_first,
        "dropout": module.dropout,
        "variational_dropout": module.variational_dropout,
        "residual": list(module.residual),
        # only where a layer merges otherwise than concat (files without it: all concat)
        **(
            {"merge_mode": list(module.merge_modes)}
            if any(m != "concat" for m in module.merge_modes)
            else {}
        ),
    }


def module_from_config(config: dict[str, Any]) -> nn.Module:
    """An untrained module built from a configuration that :func:`save` wrote."""
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind == "BidirectionalRNN":
        for side in ("fw", "bw"):
            if not isinstance(config.get(side), dict):
                raise ValueError(f"config: a BidirectionalRNN needs a {side!r} stack configuration")
        fw, bw = (
            cast(StackedRNN, module_from_config(config[side])) for side in ("fw", "bw")
        )  # checked by BidirectionalRNN
        return BidirectionalRNN(fw, bw)
    if kind != "StackedRNN":
        raise ValueError(f"config: expected kind 'StackedRNN' or 'BidirectionalRNN', got {kind!r}")
    missing = sorted(_STACK_KEYS - config.keys())
    if missing:
        raise ValueError(f"config: a StackedRNN configuration needs {missing}")
    try:
        cells = [cell_from_config(c) for c in config["layers"]]
        backward = [cell_from_config(c) for c in config["backward_layers"]]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"config: a corrupt cell configuration ({exc!r})") from None
    directions = config["bidirectional"]
    if isinstance(directions, list):  # mixed directions: one bool per layer
        if (
            len(directions) != len(cells)
            or not all(isinstance(d, bool) for d in directions)
            or sum(directions) != len(backward)
        ):
            raise ValueError(
                f"config: bidirectional={directions} does not fit {len(cells)} layers "
                f"and {len(backward)} backward layers"
            )
        queue = iter(backward)
        per_layer: list[RecurrentCell | None] = [next(queue) if d else None for d in directions]
    elif directions != bool(backward):
        raise ValueError(
            f"config: bidirectional={config['bidirectional']} but {len(backward)} backward layers"
        )
    else:
        per_layer = list(backward)
    residual = config["residual"]
    return StackedRNN.from_cells(
        cells,
        backward_cells=per_layer or None,
        batch_first=config["batch_first"],
        dropout=config["dropout"],
        variational_dropout=config["variational_dropout"],
        residual=residual if isinstance(residual, bool) else list(residual),
        merge_mode=config.get("merge_mode", "concat"),
    )


def check_state_dict(module: nn.Module, tensors: dict[str, torch.Tensor], path: Any) -> None:
    """Raise ``ValueError`` unless ``tensors`` fit ``module.state_dict()`` exactly: the message
    names the file and lists the missing, unexpected and wrong-shape tensors, and mixed or
    non-floating dtypes."""
    expected = module.state_dict()
    missing = sorted(expected.keys() - tensors.keys())
    unexpected = sorted(tensors.keys() - expected.keys())
    wrong = [
        f"{name}: expected {list(expected[name].shape)}, got {list(t.shape)}"
        for name, t in sorted(tensors.items())
        if name in expected and t.shape != expected[name].shape
    ]
    dtypes = {t.dtype for t in tensors.values()}
    if (
        missing
        or unexpected
        or wrong
        or len(dtypes) > 1
        or not all(d.is_floating_point for d in dtypes)
    ):
        parts = [
            f"{title}: {items}"
            for title, items in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
                (
                    "dtypes (expected one floating dtype)",
                    sorted(map(str, dtypes))
                    if len(dtypes) > 1 or not all(d.is_floating_point for d in dtypes)
                    else [],
                ),
            )
            if items
        ]
        raise ValueError(
            f"path: {os.fspath(path)!r} does not match its configuration; " + "; ".join(parts)
        )


def _load_strict(module: nn.Module, tensors: dict[str, torch.Tensor], path: Any) -> None:
    check_state_dict(module, tensors, path)
    dtypes = {t.dtype for t in tensors.values()}
    if dtypes:
        module.to(dtypes.pop())
    module.load_state_dict(tensors, strict=True)
