"""Reading TensorFlow 1 RNN variable names and shapes: which cells, which sizes.

``dynamic_rnn`` names its variables ``<scope>/<cell>/...`` for one cell and
``<scope>/multi_rnn_cell/cell_<i>/<cell>/...`` for a ``MultiRNNCell``;
``bidirectional_dynamic_rnn`` puts two independent stacks under ``<scope>/fw`` and
``<scope>/bw`` (default scope ``bidirectional_rnn``); ``stack_bidirectional_dynamic_rnn``
one ``bidirectional_dynamic_rnn`` per layer, ``<scope>/cell_<i>/bidirectional_rnn/{fw,bw}``
(default scope ``stack_bidirectional_rnn``).  Cells are recognised by name, sizes
come from shapes (before TF 1.2 ``weights``/``biases`` stood for ``kernel``/``bias``):

==================  ================================================================
``basic_lstm_cell``  ``kernel`` [in+H, 4H], ``bias`` [4H]; gates i, j, f, o
``lstm_cell``        as above (``kernel`` [in+P, 4H]), optional ``w_i_diag``,
                     ``w_f_diag``, ``w_o_diag`` [H] and ``projection/kernel`` [H, P]
``gru_cell``         ``gates/kernel`` [in+H, 2H] (r, u), ``gates/bias`` [2H],
                     ``candidate/kernel`` [in+H, H], ``candidate/bias`` [H]
``basic_rnn_cell``   ``kernel`` [in+H, H], ``bias`` [H]
==================  ================================================================

Only names and shapes are needed here (no values), so ``rnnfuse inspect`` can describe a
checkpoint from its index alone.  Every problem found under a scope (missing, left over,
wrong shape) is collected and reported in one :class:`TF1VariableError`.

>>> shapes = {"rnn/gru_cell/gates/kernel": (14, 16), "rnn/gru_cell/gates/bias": (16,),
...           "rnn/gru_cell/candidate/kernel": (14, 8), "rnn/gru_cell/candidate/bias": (8,)}
>>> layer = parse_scope(shapes, "rnn").layers[0]
>>> layer.cell_type, layer.input_size, layer.num_units
('GRUCell', 6, 8)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from .cell_kinds import OTHER_CLASS_SCOPES, cell_types_map, kinds_that_fit

__all__ = [
    "TF1VariableError",
    "TFLayer",
    "TFStack",
    "TFBidirectional",
    "TFStackBidirectional",
    "CELL_TYPES",
    "PEEPHOLES",
    "parse_scope",
    "find_rnn_scopes",
    "variable_shapes",
]

CELL_TYPES = {
    "basic_lstm_cell": "BasicLSTMCell",
    "lstm_cell": "LSTMCell",
    "gru_cell": "GRUCell",
    "basic_rnn_cell": "BasicRNNCell",
}
_ALIASES = {"weights": "kernel", "biases": "bias"}  # TF < 1.2
PEEPHOLES = ("w_i_diag", "w_f_diag", "w_o_diag")
_ROLES = {
    "basic_lstm_cell": {"kernel", "bias"},
    "lstm_cell": {"kernel", "bias", "projection/kernel", *PEEPHOLES},
    "gru_cell": {"gates/kernel", "gates/bias", "candidate/kernel", "candidate/bias"},
    "basic_rnn_cell": {"kernel", "bias"},
}


class TF1VariableError(ValueError):
    """Variables under a scope do not make a supported RNN; lists every problem found
    (``missing``, ``unexpected``, ``wrong``: the names, when the error is about names)."""

    def __init__(
        self,
        message: str,
        missing: Iterable[str] = (),
        unexpected: Iterable[str] = (),
        wrong: Iterable[str] = (),
    ) -> None:
        super().__init__(message)
        self.missing, self.unexpected, self.wrong = list(missing), list(unexpected), list(wrong)


class TFLayer(NamedTuple):
    """One TF cell read from its variable names and shapes."""

    path: str  # e.g. "rnn/multi_rnn_cell/cell_0/basic_lstm_cell"
    cell_type: str  # "BasicLSTMCell", "LSTMCell", "GRUCell" or "BasicRNNCell"
    input_size: int
    num_units: int
    num_proj: int | None
    use_peepholes: bool
    variables: dict[str, str]  # role ("kernel", "gates/bias", ...) -> full TF name

    @property
    def output_size(self) -> int:
        return self.num_proj or self.num_units


class TFStack(NamedTuple):
    scope: str
    multi: bool  # a MultiRNNCell (cell_<i> names) rather than one cell
    layers: tuple[TFLayer, ...]


class TFBidirectional(NamedTuple):
    scope: str
    fw: TFStack
    bw: TFStack


class TFStackBidirectional(NamedTuple):
    """``stack_bidirectional_dynamic_rnn``: one bidirectional layer (one cell a side) per entry."""

    scope: str
    layers: tuple[TFBidirectional, ...]


_STACK_BI = re.compile(r"(.*?)/?cell_\d+/bidirectional_rnn")


class _Problems:
    def __init__(self) -> None:
        self.missing: list[str] = []
        self.unexpected: list[str] = []
        self.wrong: list[str] = []

    def check(self, scope: str) -> None:
        parts = [
            f"{title}:\n    " + "\n    ".join(items)
            for title, items in (
                ("missing", self.missing),
                ("unexpected (left over)", self.unexpected),
                ("wrong shape", self.wrong),
            )
            if items
        ]
        if self.unexpected:
            parts.append(
                "to leave variables out on purpose, pass ignore= glob patterns of their "
                "names (e.g. ignore=['*/my_slot']; optimizer slots, global_step and EMA "
                "shadows are skipped already)"
            )
        if parts:
            raise TF1VariableError(
                f"variables under scope {scope!r} do not match a TF1 RNN:\n  " + "\n  ".join(parts),
                self.missing,
                [u.split(": ")[0] for u in self.unexpected],
                self.wrong,
            )


def find_rnn_scopes(names: Iterable[str]) -> list[str]:
    """The ``dynamic_rnn`` / ``bidirectional_dynamic_rnn`` scopes holding cells in ``names``."""
    found = set()
    for name in names:
        parts = name.split("/")
        for i, part in enumerate(parts):
            if part in CELL_TYPES or part == "multi_rnn_cell":  # cell_<i>/ holds a cell of any name
                found.add("/".join(parts[:i]))
                break
    scopes = set()
    for scope in found:
        head, _, tail = scope.rpartition("/")
        both = {f"{head}/fw".lstrip("/"), f"{head}/bw".lstrip("/")} <= found
        scope = head if tail in ("fw", "bw") and both else scope
        stacked = _STACK_BI.fullmatch(scope)
        scopes.add(stacked.group(1) if stacked and stacked.group(1) else scope)
    return sorted(scopes)


def parse_scope(
    shapes: Mapping[str, Any],
    scope: str = "rnn",
    ignore: Iterable[str] = (),
    cell_types: Mapping[str, str] | None = None,
) -> TFStack | TFBidirectional | TFStackBidirectional:
    """Read the RNN under ``scope`` from ``{tf_name: shape}`` (arrays work too).

    A cell's scope is normally its class's (``lstm_cell``, ...); a cell built with ``name=``
    has that name instead, and its kind is told from its variables and shapes.  Where they
    fit two kinds (``kernel`` [in + H, H] and ``bias`` [H] fit a BasicRNNCell of H units and,
    when H is a multiple of 4, an LSTM of H/4), ``cell_types`` names it:
    ``{cell scope name or full path: TF class name}``, e.g. ``{"plain": "BasicRNNCell"}``.
    """
    if not isinstance(scope, str) or not scope.strip("/"):
        raise ValueError(f"scope: expected a TF scope name such as 'rnn', got {scope!r}")
    scope = scope.strip("/")
    patterns = [ignore] if isinstance(ignore, str) else list(ignore)
    rel = {
        name[len(scope) + 1 :]: _shape(value)
        for name, value in shapes.items()
        if name.startswith(scope + "/") and not any(fnmatch.fnmatchcase(name, p) for p in patterns)
    }
    if not rel:
        found = find_rnn_scopes(shapes)
        hint = (
            f"RNN scopes in the checkpoint: {found}"
            if found
            else "the checkpoint holds no TF1 RNN cells"
        )
        raise TF1VariableError(f"scope: no variables under {scope!r}; {hint}")
    problems = _Problems()
    types = cell_types_map(cell_types, CELL_TYPES)
    tops = {r.split("/")[0] for r in rel}
    if any(r.split("/")[1:2] == ["bidirectional_rnn"] for r in rel):
        return _parse_stack_bidirectional(shapes, scope, rel, patterns, problems, cell_types)
    if tops & {"fw", "bw"}:
        problems.unexpected += [f"{scope}/{r}" for r in rel if r.split("/")[0] not in ("fw", "bw")]
        problems.missing += [f"{scope}/{side}/..." for side in ("fw", "bw") if side not in tops]
        problems.check(scope)
        stacks = [
            _parse_stack(f"{scope}/{side}", _sub(rel, side), problems, types)
            for side in ("fw", "bw")
        ]
        problems.check(scope)
        return TFBidirectional(scope, *stacks)
    stack = _parse_stack(scope, rel, problems, types)
    problems.check(scope)
    return stack


def _parse_stack_bidirectional(
    shapes: Mapping[str, Any],
    scope: str,
    rel: dict[str, Any],
    patterns: list[str],
    problems: _Problems,
    cell_types: Mapping[str, str] | None,
) -> TFStackBidirectional:
    """``<scope>/cell_<i>/bidirectional_rnn/{fw,bw}/<cell>/...``: one cell a side per layer."""
    layers: dict[int, str] = {}
    for r in rel:
        parts = r.split("/")
        match = re.fullmatch(r"cell_(\d+)", parts[0])
        if match is None or parts[1:2] != ["bidirectional_rnn"]:
            problems.unexpected.append(f"{scope}/{r}")
        else:
            layers[int(match.group(1))] = f"{scope}/{parts[0]}/bidirectional_rnn"
    count = max(layers, default=-1) + 1
    problems.missing += [
        f"{scope}/cell_{i}/bidirectional_rnn/..." for i in range(count) if i not in layers
    ]
    problems.check(scope)
    parsed: list[TFBidirectional] = []
    for i in range(count):
        layer = parse_scope(shapes, layers[i], patterns, cell_types)
        if not isinstance(layer, TFBidirectional):
            raise TF1VariableError(
                f"{layers[i]}: expected fw/ and bw/ (a bidirectional_dynamic_rnn)"
            )
        for side in (layer.fw, layer.bw):
            if len(side.layers) != 1:
                raise TF1VariableError(
                    f"{side.scope}: expected one cell per direction and layer, got a MultiRNNCell "
                    f"of {len(side.layers)}; rnnfuse reads stack_bidirectional_dynamic_rnn of "
                    "plain cells"
                )
        if parsed:
            below = parsed[-1].fw.layers[0].output_size + parsed[-1].bw.layers[0].output_size
            for side in (layer.fw, layer.bw):
                cell = side.layers[0]
                if cell.input_size != below:
                    kernel = cell.variables.get("kernel") or cell.variables["gates/kernel"]
                    problems.wrong.append(
                        f"{kernel}: its rows hold the input of size {cell.input_size}, "
                        f"but the layer below outputs [fw, bw] = {below}"
                    )
        parsed.append(layer)
    problems.check(scope)
    return TFStackBidirectional(scope, tuple(parsed))


def _shape(value: Any) -> tuple[int, ...]:
    """A shape given as a tuple/list, or the shape of an array (a Python scalar: ``()``)."""
    return tuple(value) if isinstance(value, (tuple, list)) else tuple(getattr(value, "shape", ()))


def _sub(rel: Mapping[str, Any], top: str) -> dict[str, Any]:
    return {r[len(top) + 1 :]: s for r, s in rel.items() if r.startswith(top + "/")}


def _parse_stack(
    scope: str, rel: dict[str, Any], problems: _Problems, types: dict[str, str]
) -> TFStack:
    if "multi_rnn_cell" not in {r.split("/")[0] for r in rel}:
        return TFStack(scope, False, _parse_cells([(scope, rel)], problems, types))
    problems.unexpected += [f"{scope}/{r}" for r in rel if not r.startswith("multi_rnn_cell/")]
    cells: dict[int, dict[str, Any]] = {}
    for r, shape in _sub(rel, "multi_rnn_cell").items():
        match = re.fullmatch(r"cell_(\d+)", r.split("/")[0])
        if match is None or "/" not in r:
            problems.unexpected.append(f"{scope}/multi_rnn_cell/{r}")
            continue
        cells.setdefault(int(match.group(1)), {})[r.split("/", 1)[1]] = shape
    count = max(cells, default=-1) + 1
    problems.missing += [
        f"{scope}/multi_rnn_cell/cell_{i}/..." for i in range(count) if i not in cells
    ]
    dirs = [(f"{scope}/multi_rnn_cell/cell_{i}", cells[i]) for i in sorted(cells)]
    return TFStack(scope, True, _parse_cells(dirs, problems, types))


def _parse_cells(
    dirs: list[tuple[str, dict[str, Any]]], problems: _Problems, types: dict[str, str]
) -> tuple[TFLayer, ...]:
    layers: list[TFLayer] = []
    for path, rel in dirs:
        names = sorted({r.split("/")[0] for r in rel})
        known = [n for n in names if n in CELL_TYPES] or (names if len(names) == 1 else [])
        if not known:
            cells = ", ".join(f"{k} ({v})" for k, v in CELL_TYPES.items())
            raise TF1VariableError(
                f"no cell at {path}: its variables {sorted(f'{path}/{r}' for r in rel)} sit in "
                f"{len(names)} scopes {names}, none a TF1 cell's ({cells}), and a cell built with "
                f"name= holds its variables in one scope"
            )
        name = known[0]
        if len(names) > 1:
            problems.unexpected += [f"{path}/{r}" for r in rel if r.split("/")[0] != name]
        kind = name if name in CELL_TYPES else _kind(f"{path}/{name}", _sub(rel, name), types)
        layer = _parse_cell(f"{path}/{name}", kind, _sub(rel, name), problems)
        if layer is not None and layers and layer.input_size != layers[-1].output_size:
            kernel = layer.variables.get("kernel") or layer.variables["gates/kernel"]
            problems.wrong.append(
                f"{kernel}: its rows hold the input of size {layer.input_size}, but the layer "
                f"below outputs {layers[-1].output_size}"
            )
        if layer is not None:
            layers.append(layer)
    return tuple(layers)


def _kind(path: str, rel: dict[str, Any], types: dict[str, str]) -> str:
    """The kind of a cell whose scope is not a TF class name (built with ``name=``), from
    ``cell_types`` or its variables and shapes; ambiguous or unknown: an error saying what
    to pass."""
    given = types.get(path) or types.get(path.rsplit("/", 1)[-1])
    if given:
        return given
    roles = {
        "/".join(
            filter(
                None,
                [r.rpartition("/")[0], _ALIASES.get(r.rpartition("/")[2], r.rpartition("/")[2])],
            )
        ): shape
        for r, shape in rel.items()
    }
    name = path.rsplit("/", 1)[-1]
    if name in OTHER_CLASS_SCOPES:
        known = ", ".join(f"{k} ({v})" for k, v in CELL_TYPES.items())
        raise TF1VariableError(
            f"unknown cell {name!r} at {path}: the scope of a TF cell class rnnfuse does not read "
            f"(variables: {sorted(f'{path}/{r}' for r in rel)}); rnnfuse reads {known}, and cells "
            f"built with name= by their variables; if its math is one of these, "
            f"cell_types={{{name!r}: 'LSTMCell'}} (or another) reads it as that class"
        )
    fits = kinds_that_fit(roles)
    if len(fits) == 1:
        return fits[0][0]
    variables = sorted(f"{path}/{r} {list(shape)}" for r, shape in rel.items())
    if not fits:
        known = ", ".join(f"{k} ({v})" for k, v in CELL_TYPES.items())
        raise TF1VariableError(
            f"unknown cell {name!r} at {path} (variables: {variables}): its "
            f"variables fit no TF1 cell; rnnfuse reads {known}"
        )
    raise TF1VariableError(
        f"cell_types: the cell at {path} (built with name={name!r}) has variables {variables}, "
        f"which fit both {fits[0][1]} and {fits[1][1]}; pass cell_types={{{name!r}: 'LSTMCell'}} "
        f"or {{{name!r}: 'BasicRNNCell'}} (rnnfuse convert: --cell-type {name}=LSTMCell)"
    )


def _parse_cell(path: str, kind: str, rel: dict[str, Any], problems: _Problems) -> TFLayer | None:
    roles: dict[str, tuple[str, tuple[int, ...]]] = {}
    for r, shape in sorted(rel.items()):
        head, _, last = r.rpartition("/")
        role = "/".join(filter(None, [head, _ALIASES.get(last, last)]))
        if role not in _ROLES[kind] or role in roles:
            problems.unexpected.append(f"{path}/{r}")
        else:
            roles[role] = (f"{path}/{r}", shape)
    required = _ROLES[kind] - {"projection/kernel", *PEEPHOLES}
    if kind == "lstm_cell" and roles.keys() & set(PEEPHOLES):
        required |= set(PEEPHOLES)
    absent = sorted(required - roles.keys())
    problems.missing += [f"{path}/{role}" for role in absent]
    if absent:
        return None
    sizes = _SIZES[kind](roles, problems)
    if sizes is None:
        return None
    names = {role: name for role, (name, _) in roles.items()}
    return TFLayer(path, CELL_TYPES[kind], sizes[0], sizes[1], sizes[2], "w_i_diag" in roles, names)


def _expect(roles: dict, role: str, shape: tuple[int, ...], why: str, problems: _Problems) -> bool:
    name, got = roles[role]
    if got != shape:
        problems.wrong.append(f"{name}: expected {list(shape)} ({why}), got {list(got)}")
        return False
    return True


def _kernel(roles: dict, role: str, gates: int, problems: _Problems) -> tuple[int, int] | None:
    name, shape = roles[role]
    if len(shape) != 2 or shape[1] % gates or shape[1] == 0:
        problems.wrong.append(
            f"{name}: expected a 2-D [input + hidden, {gates} * num_units] "
            f"kernel, got {list(shape)}"
        )
        return None
    return shape[0], shape[1] // gates


def _lstm_sizes(roles: dict, problems: _Problems) -> tuple[int, int, int | None] | None:
    rows_units = _kernel(roles, "kernel", 4, problems)
    if rows_units is None:
        return None
    rows, units = rows_units
    proj = None
    if "projection/kernel" in roles:
        shape = roles["projection/kernel"][1]
        proj = shape[1] if len(shape) == 2 else 0
        if (
            not _expect(
                roles, "projection/kernel", (units, proj), "[num_units, num_proj]", problems
            )
            or not proj
        ):
            return None
    ok = _expect(roles, "bias", (4 * units,), f"4 * num_units, num_units={units}", problems)
    for role in PEEPHOLES:
        if role in roles:
            ok = _expect(roles, role, (units,), f"num_units={units}", problems) and ok
    return _with_input(roles, "kernel", rows, proj or units, units, proj, problems) if ok else None


def _gru_sizes(roles: dict, problems: _Problems) -> tuple[int, int, None] | None:
    rows_units = _kernel(roles, "candidate/kernel", 1, problems)
    if rows_units is None:
        return None
    rows, units = rows_units
    ok = _expect(
        roles, "gates/kernel", (rows, 2 * units), "like candidate/kernel, 2 gates r, u", problems
    )
    ok = (
        _expect(roles, "gates/bias", (2 * units,), f"2 * num_units, num_units={units}", problems)
        and ok
    )
    ok = _expect(roles, "candidate/bias", (units,), f"num_units={units}", problems) and ok
    return (
        _with_input(roles, "candidate/kernel", rows, units, units, None, problems) if ok else None
    )


def _rnn_sizes(roles: dict, problems: _Problems) -> tuple[int, int, None] | None:
    rows_units = _kernel(roles, "kernel", 1, problems)
    if rows_units is None:
        return None
    rows, units = rows_units
    if not _expect(roles, "bias", (units,), f"num_units={units}", problems):
        return None
    return _with_input(roles, "kernel", rows, units, units, None, problems)


def _with_input(
    roles: dict,
    role: str,
    rows: int,
    recurrent: int,
    units: int,
    proj: int | None,
    problems: _Problems,
) -> tuple[int, int, Any] | None:
    if rows <= recurrent:
        problems.wrong.append(
            f"{roles[role][0]}: expected more than {recurrent} rows (input + "
            f"recurrent {recurrent}), got {rows}"
        )
        return None
    return rows - recurrent, units, proj


_SIZES = {
    "basic_lstm_cell": _lstm_sizes,
    "lstm_cell": _lstm_sizes,
    "gru_cell": _gru_sizes,
    "basic_rnn_cell": _rnn_sizes,
}


def variable_shapes(layer: TFLayer) -> dict[str, tuple[int, ...]]:
    """The shape of each of the layer's TF variables, by role."""
    rows, h = layer.input_size + layer.output_size, layer.num_units
    if layer.cell_type == "GRUCell":
        return {
            "gates/kernel": (rows, 2 * h),
            "gates/bias": (2 * h,),
            "candidate/kernel": (rows, h),
            "candidate/bias": (h,),
        }
    if layer.cell_type == "BasicRNNCell":
        return {"kernel": (rows, h), "bias": (h,)}
    shapes = {"kernel": (rows, 4 * h), "bias": (4 * h,)}
    if layer.use_peepholes:
        shapes.update({role: (h,) for role in PEEPHOLES})
    if layer.num_proj:
        shapes["projection/kernel"] = (h, layer.num_proj)
    return shapes
