"""The ONNX translation of ``rnnfuse::layer`` in ``torch.onnx``'s default registry.

With it, what a PyTorch user types, ``torch.onnx.export(model, args, dynamo=True)``, exports
every rnnfuse module, with no ``custom_translation_table`` argument.  Each call of
``torch.onnx.export(..., dynamo=True)`` builds its registry of translations
(``ONNXRegistry.from_torchlib``) from torch's own list of ONNX functions, before it traces.
:func:`install` adds the operator's translation
(:func:`rnnfuse._onnx_translation.layer_onnx`, the one ``custom_translation_table`` passes) to
that list, as the entry ``custom_translation_table`` makes (a custom one, preferred over any
other).

That list is private to torch (``torch.onnx._internal.exporter``), and its module imports
onnxscript (seconds), so it is not imported with rnnfuse: the entry is added right after torch
loads that module (an import hook), or at once when it is already loaded.  If torch's layout
ever differs, nothing is added, :func:`failure` says why and a plain export warns while
tracing (:func:`warn_if_missing`), pointing to :func:`rnnfuse.export.export_onnx`, which passes
the translation explicitly.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import threading
import warnings
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

# the module that defines OnnxDecompMeta (and imports the list it is added to)
_TARGET = "torch.onnx._internal.exporter._registration"
_LIST = "torch.onnx._internal.exporter._torchlib._torchlib_registry"

_lock = threading.Lock()
_installed = False
_failure: str | None = None
_warned = False


def _register(registration: ModuleType) -> None:
    """Add the translation to torch's list (once), through ``registration.OnnxDecompMeta``."""
    global _failure
    try:
        import torch

        from ._onnx_translation import layer_onnx

        listing = importlib.import_module(_LIST)
        entries = listing._registry
        target = torch.ops.rnnfuse.layer.default
        if any(getattr(e, "fx_target", None) is target for e in entries):
            return
        meta = registration.OnnxDecompMeta(
            onnx_function=layer_onnx, fx_target=target, signature=None, is_custom=True
        )
        entries.append(meta)
        _failure = None
    except (
        Exception
    ) as e:  # torch's internals changed: the plain call is unavailable, export_onnx still works
        _failure = f"{type(e).__name__}: {e}"


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for :data:`_TARGET` it asks the other finders and makes the
    loader call :func:`_register` once the module has run (then it leaves ``sys.meta_path``)."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> ModuleSpec | None:
        if fullname != _TARGET:
            return None
        with _lock:
            if self in sys.meta_path:
                sys.meta_path.remove(self)
        spec = None
        for finder in list(sys.meta_path):  # the other finders (this one is gone)
            find = getattr(finder, "find_spec", None)
            spec = None if find is None else find(fullname, path, target)
            if spec is not None:
                break
        loader = None if spec is None else spec.loader
        run = getattr(loader, "exec_module", None)
        if run is None:
            return spec

        def exec_module(module: ModuleType) -> None:
            run(module)
            _register(module)

        loader.exec_module = exec_module  # type: ignore[union-attr]  # this loader serves this one import
        return spec


def install() -> None:
    """Add the translation now if torch's exporter is loaded, else right after it loads."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        loaded = sys.modules.get(_TARGET)
        if loaded is None or not hasattr(loaded, "OnnxDecompMeta"):
            sys.meta_path.insert(0, _AfterImport())
            return
    _register(loaded)


def failure() -> str | None:
    """Why the translation could not be added (``None``: it was,
    or torch's exporter is not loaded yet)."""
    return _failure


def warn_if_missing() -> None:
    """While ``torch.onnx.export`` traces: a warning (once) if the translation could
    not be added."""
    global _warned
    if _failure is None or _warned:
        return
    import torch

    if torch.onnx.is_in_onnx_export():
        _warned = True
        warnings.warn(
            "rnnfuse: the ONNX translation of rnnfuse::layer could not be added to torch.onnx's "
            f"registry ({_failure}); torch.onnx.export(..., dynamo=True) will not find it.  Use "
            "rnnfuse.export.export_onnx(model, args), or pass "
            "custom_translation_table=rnnfuse.export.onnx_translation_table().",
            RuntimeWarning,
            stacklevel=3,
        )
