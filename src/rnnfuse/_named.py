"""A ``ModuleDict`` whose keys may be Python keywords (``"global"``, ``"lambda"``).

``torch.fx`` writes attribute paths into generated Python (``self.encoders.global.layers``),
which is a ``SyntaxError`` for a keyword: ``ExportedProgram.module()`` and the ONNX exporter
fail on a model with an encoder named ``"global"``.  :class:`NameSafeModuleDict` keeps such a
module under the attribute ``<name>_`` and shows the user's name everywhere else: indexing,
iteration, ``keys``/``items``, ``in``, and the ``state_dict`` (saved files keep the names
they always had; loading maps them back).
"""

from __future__ import annotations

import keyword
from collections.abc import Iterator, Mapping
from typing import Any

from torch import nn


def _attr(name: str) -> str:
    return f"{name}_" if keyword.iskeyword(name) else name


class NameSafeModuleDict(nn.ModuleDict):
    """``nn.ModuleDict`` keyed by the user's names; a keyword name is stored as ``name_``."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self._names: dict[str, str] = {}
        for name, module in modules.items():
            attr = _attr(name)
            if attr in self._modules:
                raise ValueError(
                    f"names: {name!r} is a Python keyword, kept as {attr!r}, which is "
                    "also given; rename one"
                )
            self._names[name] = attr
            self.add_module(attr, module)
        self._register_state_dict_hook(_public_state_dict)
        self._register_load_state_dict_pre_hook(_internal_state_dict, with_module=True)

    def __getitem__(self, name: str) -> nn.Module:
        return self._modules[self._names.get(name, name)]

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def keys(self) -> Any:
        return self._names.keys()

    def items(self) -> Any:
        return [(name, self._modules[attr]) for name, attr in self._names.items()]

    def values(self) -> Any:
        return [self._modules[attr] for attr in self._names.values()]

    def renamed(self) -> dict[str, str]:
        """User name → attribute name, for the names that differ."""
        return {n: a for n, a in self._names.items() if n != a}


def _rename(state: dict, prefix: str, mapping: dict[str, str]) -> None:
    for old, new in mapping.items():
        head = f"{prefix}{old}."
        for key in [k for k in state if k.startswith(head)]:
            state[f"{prefix}{new}.{key[len(head) :]}"] = state.pop(key)


def _public_state_dict(
    module: NameSafeModuleDict, state: dict, prefix: str, local_metadata: Any
) -> None:
    _rename(state, prefix, {a: n for n, a in module.renamed().items()})


def _internal_state_dict(module: NameSafeModuleDict, state: dict, prefix: str, *args: Any) -> None:
    _rename(state, prefix, module.renamed())
