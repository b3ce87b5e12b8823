"""TF1 checkpoints as ``rnnfuse inspect`` and ``rnnfuse convert`` read them (:data:`FILE_KINDS`).

``rnnfuse convert PREFIX [--scope SCOPE] --out FILE.safetensors`` turns the RNN under a
TF1 checkpoint's scope into an rnnfuse file (:func:`rnnfuse.io.save`).  ``--scope`` given
several times stacks RNNs that fed each other into one stack, bottom first, and
``--residual`` names its residual layers (``ResidualWrapper``; not stored by TF), as
``load_stack(prefix, [scopes], residual=...)`` does: GNMT's encoder is
``--scope encoder/bidirectional_rnn --scope encoder/rnn --residual 2``.
``rnnfuse inspect PREFIX`` prints each variable's name and shape, what training left there
(optimizer slots, ``global_step``, EMA shadows: skipped by both commands; ``convert --ema``
loads the shadows), the cells and the state structure with its sizes.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .._command import Converted, FileKind, fail
from ..cells.activations import ACTIVATIONS
from ..describe import state_str as _state_str
from ..state import LSTMState
from .checkpoint import CheckpointError, is_object_based, list_variables
from .names import (
    TF1VariableError,
    TFBidirectional,
    TFStack,
    TFStackBidirectional,
    find_rnn_scopes,
    parse_scope,
)
from .skip import split

__all__ = ["FILE_KINDS", "checkpoint_prefix", "ignore_patterns", "ACTIVATION_NAMES"]

ACTIVATION_NAMES = sorted(ACTIVATIONS)  # the choices of ``--activation``


def checkpoint_prefix(path: str) -> str | None:
    """The prefix of the checkpoint at ``path`` (a prefix or its ``.index`` file), or
    ``None`` where there is no ``.index`` file.  Any path ending in ``.index`` counts, and so
    does an ``.index`` that is no regular file: the reader then says what is wrong.

    >>> checkpoint_prefix("tests/fixtures/tf1/gru/model.index")
    'tests/fixtures/tf1/gru/model'
    >>> checkpoint_prefix("tests/fixtures/tf1/gru") is None
    True
    """
    if os.path.exists(path + ".index"):
        return path
    if path.endswith(".index"):
        return path[: -len(".index")]
    return None


def _is_tf1(path: str) -> bool:
    """A checkpoint that is not object-based (an unreadable one counts: its errors are TF1's)."""
    prefix = checkpoint_prefix(path)
    if prefix is None:
        return False
    try:
        return not is_object_based(prefix)
    except (CheckpointError, ValueError, OSError):
        return True


def _describe(path: str) -> int:
    try:
        return _inspect_tf1(path)
    except (CheckpointError, ValueError, OSError) as exc:
        return fail("inspect", exc)


def _convert(path: str, args: argparse.Namespace) -> Converted:
    """``rnnfuse convert`` of a TF1 checkpoint: the RNN under ``--scope`` (or the only one)."""
    try:
        return _convert_checkpoint(path, args)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None


def _convert_checkpoint(path: str, args: argparse.Namespace) -> Converted:
    from .checkpoint import read_checkpoint
    from .convert import stack_from_variables

    residual = _residual_layers(args.residual)
    shapes = {v.name: v.shape for v in list_variables(path)}
    given = list(args.scope or [])
    kept, skipped = split(shapes, args.ema, given[0] if len(given) == 1 else None)
    scopes = given or [_only_scope(list(kept))]
    if args.ema:
        for scope in scopes:
            split(shapes, True, scope)  # every variable under each scope has its shadow
    variables = read_checkpoint(path)

    def build(flags: bool | list[bool]) -> Any:
        return stack_from_variables(
            variables,
            scopes[0] if len(scopes) == 1 else scopes,
            batch_first=not args.time_major,
            forget_bias=_forget_bias(args.forget_bias or "1.0"),
            cell_clip=args.cell_clip,
            proj_clip=args.proj_clip,
            activation=args.activation or "tanh",
            ignore=args.ignore or (),
            use_ema=args.ema,
            residual=flags,
            cell_types=_cell_types(args.cell_type or []),
        )

    module = build(residual if isinstance(residual, bool) else False)
    if isinstance(residual, list):
        module = build(_residual_flags(residual, module, scopes))
    where = f"scope {scopes[0]!r}" if len(scopes) == 1 else f"scopes {scopes}"
    summary = skipped.summary().replace("use_ema=True", "--ema") if skipped else ""
    notes = (f"skipped: {summary}",) if skipped else ()
    return Converted(module, where, notes)


FILE_KINDS = (
    FileKind(
        "a TF1 checkpoint",
        _is_tf1,
        _describe,
        _convert,
        (
            "--scope",
            "--residual",
            "--forget-bias",
            "--cell-type",
            "--cell-clip",
            "--proj-clip",
            "--activation",
            "--ignore",
            "--ema",
        ),
    ),
)


def _forget_bias(text: str) -> float | list[float]:
    """``--forget-bias``: one number, or comma-separated numbers (one per layer)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--forget-bias: expected a number or comma-separated numbers (one per "
            f"layer), e.g. 1.0 or 0.5,1.0; got {text!r}"
        ) from None
    return values[0] if len(values) == 1 else values


def _cell_types(items: list[str]) -> dict[str, str] | None:
    """``--cell-type NAME=CLASS`` (repeatable) as ``load_stack``'s ``cell_types``."""
    pairs = [item.partition("=") for item in items]
    bad = [
        item
        for item, (name, eq, cls) in zip(items, pairs, strict=True)
        if not (name and eq and cls)
    ]
    if bad:
        raise ValueError(f"--cell-type: expected NAME=CLASS, e.g. cell0=LSTMCell; got {bad}")
    return {name: cls for name, _, cls in pairs} or None


def _residual_layers(text: str | None) -> bool | list[int]:
    """``--residual``: ``False`` if absent, ``True`` for ``all``, else the layer numbers."""
    if text is None:
        return False
    if text.strip() == "all":
        return True
    try:
        layers = [int(part) for part in text.split(",")]
    except ValueError:
        layers = [-1]
    if any(k < 0 for k in layers) or len(set(layers)) != len(layers):
        raise ValueError(
            f"--residual: expected 'all' or distinct comma-separated layer numbers "
            f"(0-based), e.g. 2 or 1,2; got {text!r}"
        )
    return layers


def _residual_flags(layers: list[int], module: Any, scopes: list[str]) -> list[bool]:
    """One flag per layer of the stack ``module`` from the layer numbers of ``--residual``."""
    from ..stack import StackedRNN

    if not isinstance(module, StackedRNN):
        raise ValueError(
            f"--residual: {scopes[0]!r} is a bidirectional_dynamic_rnn of two independent "
            f"stacks ({type(module).__name__}), which have no residual connections"
        )
    count = module.num_layers
    outside = [k for k in layers if k >= count]
    if outside:
        raise ValueError(
            f"--residual: layers {outside} do not exist; the stack from {scopes} has "
            f"{count} layers, numbered 0 to {count - 1}"
        )
    return [k in layers for k in range(count)]


def _only_scope(names: list[str]) -> str:
    scopes = find_rnn_scopes(names)
    if len(scopes) != 1:
        raise ValueError(
            f"--scope: the checkpoint holds {len(scopes)} RNN scopes {scopes}; pick one"
        )
    return scopes[0]


# --------------------------------------------------------------------------- TF1
def _inspect_tf1(prefix: str) -> int:
    variables = list_variables(prefix)
    print(f"TF1 checkpoint {prefix}: {len(variables)} variables")
    width = max((len(v.name) for v in variables), default=0)
    for v in variables:
        print(f"  {v.name:<{width}}  {list(v.shape)}  {v.dtype}")
    shapes, skipped = split({v.name: v.shape for v in variables})
    if skipped:
        print(f"skipped (not model weights): {skipped.summary()}")
    scopes = find_rnn_scopes(shapes)
    if not scopes:
        print("no TF1 RNN cells found")
    status = 0
    parsed_scopes = []
    for scope in scopes:
        try:
            parsed = _parse_or_suggest(shapes, scope)
        except ValueError as exc:
            print(f"{scope}: cannot be read: {exc}")
            status = 1
            continue
        _print_tf1_rnn(parsed)
        parsed_scopes.append(parsed)
    _print_chains(parsed_scopes)
    return status


def _parse_or_suggest(shapes: dict[str, Any], scope: str) -> Any:
    """The RNN under ``scope``; where only left-over variables stop it (a hand-stepped
    decoder's output layer beside its cell), the ``ignore=`` that makes it load is printed."""
    try:
        return parse_scope(shapes, scope)
    except TF1VariableError as exc:
        if exc.missing or exc.wrong or not exc.unexpected:
            raise
        patterns = ignore_patterns(exc.unexpected, shapes)
        parsed = parse_scope(shapes, scope, patterns)  # raises if even that does not load
        flags = " ".join(f"--ignore '{p}'" for p in patterns)
        print(
            f"{scope}: loads leaving out {sorted(exc.unexpected)} (not a cell's): "
            f"load_stack(prefix, {scope!r}, ignore={patterns}); rnnfuse convert PREFIX "
            f"--scope {scope} {flags} --out FILE"
        )
        return parsed


def ignore_patterns(names: list[str], shapes: dict[str, Any]) -> list[str]:
    """Glob patterns matching exactly ``names``: ``<dir>/*`` for a directory all of whose
    variables are in ``names``, the name itself otherwise."""
    chosen = set(names)
    out = set()
    for name in names:
        parent = name.rpartition("/")[0]
        under = [n for n in shapes if n.startswith(parent + "/")] if parent else []
        out.add(f"{parent}/*" if under and set(under) <= chosen else name)
    return sorted(out)


def _print_chains(parsed: list[Any]) -> None:
    """Point out a bidirectional scope whose [fw, bw] outputs fit another scope's input (GNMT)."""
    for bi in parsed:
        if not isinstance(bi, TFBidirectional) or len(bi.fw.layers) != 1 or len(bi.bw.layers) != 1:
            continue
        width = bi.fw.layers[0].output_size + bi.bw.layers[0].output_size
        for uni in parsed:
            if isinstance(uni, TFStack) and uni.layers[0].input_size == width:
                print(
                    f"{bi.scope} -> {uni.scope}: the [fw, bw] outputs fit its input; if they fed "
                    f"it (GNMT's encoder), load_stack(prefix, [{bi.scope!r}, {uni.scope!r}], "
                    f"residual=[...]) makes one StackedRNN (residual connections are not stored: "
                    f"ResidualWrapper layers must be named); from the shell: rnnfuse convert "
                    f"PREFIX --scope {bi.scope} --scope {uni.scope} [--residual LAYERS] --out FILE"
                )


def _print_tf1_rnn(parsed: TFStack | TFBidirectional | TFStackBidirectional) -> None:
    if isinstance(parsed, TFStackBidirectional):
        print(
            f"{parsed.scope}: stack_bidirectional_dynamic_rnn, {len(parsed.layers)} bidirectional "
            f"layers (each reads the [fw, bw] outputs of the one below)"
        )
        for k, bi in enumerate(parsed.layers):
            for side, stack in (("fw", bi.fw), ("bw", bi.bw)):
                _print_tf1_layers(stack._replace(multi=False), f"  cell_{k}/{side}: ")
        top = parsed.layers[-1]
        print(
            "  outputs: [batch, time, "
            f"{top.fw.layers[0].output_size + top.bw.layers[0].output_size}]"
        )
        fw = tuple(_tf1_state(bi.fw) for bi in parsed.layers)
        bw = tuple(_tf1_state(bi.bw) for bi in parsed.layers)
        print(f"  state: (states_fw={_state_str(fw)}, states_bw={_state_str(bw)})")
        return
    if isinstance(parsed, TFBidirectional):
        print(f"{parsed.scope}: bidirectional_dynamic_rnn, two independent stacks")
        for side, stack in (("fw", parsed.fw), ("bw", parsed.bw)):
            print(f"  {side}: {_tf1_stack_title(stack)}")
            _print_tf1_layers(stack, "    ")
        out_fw, out_bw = parsed.fw.layers[-1].output_size, parsed.bw.layers[-1].output_size
        print(f"  outputs: ([batch, time, {out_fw}], [batch, time, {out_bw}])")
        print(
            f"  state: ({_state_str(_tf1_state(parsed.fw))}, {_state_str(_tf1_state(parsed.bw))})"
        )
        return
    print(f"{parsed.scope}: dynamic_rnn, {_tf1_stack_title(parsed)}")
    _print_tf1_layers(parsed, "  ")
    print(f"  outputs: [batch, time, {parsed.layers[-1].output_size}]")
    print(f"  state: {_state_str(_tf1_state(parsed))}")


def _tf1_stack_title(stack: TFStack) -> str:
    return f"MultiRNNCell of {len(stack.layers)} cells" if stack.multi else "one cell"


def _print_tf1_layers(stack: TFStack, indent: str) -> None:
    for k, layer in enumerate(stack.layers):
        extra = (", use_peepholes=True" if layer.use_peepholes else "") + (
            f", num_proj={layer.num_proj}" if layer.num_proj else ""
        )
        label = f"cell_{k}: " if stack.multi else ""
        print(
            f"{indent}{label}{layer.cell_type}(num_units={layer.num_units}{extra}), "
            f"input {layer.input_size} -> output {layer.output_size}"
        )


def _tf1_state(stack: TFStack) -> Any:
    sizes = tuple(
        LSTMState._make((lay.num_units, lay.output_size))
        if "LSTM" in lay.cell_type
        else lay.num_units
        for lay in stack.layers
    )
    return sizes if stack.multi else sizes[0]
