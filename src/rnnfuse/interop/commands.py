"""The ``rnnfuse convert`` and ``rnnfuse inspect`` commands.

``rnnfuse convert PREFIX [--scope SCOPE] --out FILE.safetensors`` turns the RNN under a
TF1 checkpoint's scope into an rnnfuse file (:func:`rnnfuse.io.save`).
``rnnfuse inspect PREFIX_OR_FILE`` prints each variable's name and shape, the cells and the
state structure with its sizes, for a TF1 checkpoint or an rnnfuse ``.safetensors`` file; for a
forecaster written by ``rnnfuse train`` (``best.safetensors``) it prints the tensors, the run's
configuration and the scale.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..cli import fail
from ..state import LSTMState
from .tf1_checkpoint import CheckpointError, list_variables
from .tf1_names import TFBidirectional, TFStack, find_rnn_scopes, parse_scope

__all__ = ["add_commands"]


def add_commands(subparsers: Any) -> None:
    """Register ``convert`` and ``inspect`` on the ``rnnfuse`` command's subparsers."""
    convert = subparsers.add_parser(
        "convert", help="TF1 checkpoint -> rnnfuse .safetensors",
        description="Convert the RNN under a TF1 checkpoint's scope into an rnnfuse file.")
    convert.add_argument("prefix", help="checkpoint prefix (what Saver.save returned)")
    convert.add_argument("--scope", help="dynamic_rnn scope, e.g. rnn or encoder1/rnn "
                         "(default: the only RNN scope in the checkpoint)")
    convert.add_argument("--out", required=True, help="output .safetensors file")
    convert.add_argument("--forget-bias", type=float, default=1.0,
                         help="forget bias the LSTM cells ran with (TF default 1.0; not stored)")
    convert.add_argument("--cell-clip", type=float, help="LSTMCell cell_clip (not stored)")
    convert.add_argument("--proj-clip", type=float, help="LSTMCell proj_clip (not stored)")
    convert.add_argument("--activation", default="tanh", choices=["tanh", "relu"],
                         help="activation (relu only for BasicRNNCell stacks)")
    convert.add_argument("--time-major", action="store_true",
                         help="the stack takes (time, batch, features) inputs")
    convert.add_argument("--ignore", action="append", default=[], metavar="PATTERN",
                         help="glob of variable names to leave out, e.g. '*/Adam*' (repeatable)")
    convert.set_defaults(handler=run_convert)
    inspect = subparsers.add_parser(
        "inspect", help="show the variables, cells and state of a checkpoint or file",
        description="Print variables, cells and state structure of a TF1 checkpoint or an "
                    "rnnfuse .safetensors file (or the tensors and configuration of a "
                    "best.safetensors written by `rnnfuse train`).")
    inspect.add_argument("path", help="TF1 checkpoint prefix or .safetensors file")
    inspect.set_defaults(handler=run_inspect)


def run_convert(args: argparse.Namespace) -> int:
    from ..io import save
    from .tf1 import load_stack

    try:
        names = [v.name for v in list_variables(args.prefix)]
        scope = args.scope or _only_scope(names)
        module = load_stack(args.prefix, scope, batch_first=not args.time_major,
                            forget_bias=args.forget_bias, cell_clip=args.cell_clip,
                            proj_clip=args.proj_clip, activation=args.activation, ignore=args.ignore)
        save(module, args.out)
    except (CheckpointError, ValueError, TypeError, OSError) as exc:
        return fail("convert", exc)
    count = sum(p.numel() for p in module.parameters())
    print(f"wrote {args.out}: {type(module).__name__} from scope {scope!r}, {count} parameters")
    return 0


def _only_scope(names: list[str]) -> str:
    scopes = find_rnn_scopes(names)
    if len(scopes) != 1:
        raise ValueError(f"--scope: the checkpoint holds {len(scopes)} RNN scopes {scopes}; pick one")
    return scopes[0]


def run_inspect(args: argparse.Namespace) -> int:
    path = os.fspath(args.path)
    is_checkpoint = os.path.exists(path + ".index") or path.endswith(".index")
    try:
        if is_checkpoint:
            return _inspect_tf1(path)
        if os.path.isfile(path):
            return _inspect_file(path)
    except (CheckpointError, ValueError, OSError) as exc:
        return fail("inspect", exc)
    return fail("inspect", f"{path!r} is neither a TF1 checkpoint prefix ({path}.index not found) "
                            f"nor a file")


# --------------------------------------------------------------------------- TF1
def _inspect_tf1(prefix: str) -> int:
    variables = list_variables(prefix)
    print(f"TF1 checkpoint {prefix}: {len(variables)} variables")
    width = max((len(v.name) for v in variables), default=0)
    for v in variables:
        print(f"  {v.name:<{width}}  {list(v.shape)}  {v.dtype}")
    shapes = {v.name: v.shape for v in variables}
    scopes = find_rnn_scopes(shapes)
    if not scopes:
        print("no TF1 RNN cells found")
    status = 0
    for scope in scopes:
        try:
            parsed = parse_scope(shapes, scope)
        except ValueError as exc:
            print(f"{scope}: cannot be read: {exc}")
            status = 1
            continue
        _print_tf1_rnn(parsed)
    return status


def _print_tf1_rnn(parsed: TFStack | TFBidirectional) -> None:
    if isinstance(parsed, TFBidirectional):
        print(f"{parsed.scope}: bidirectional_dynamic_rnn, two independent stacks")
        for side, stack in (("fw", parsed.fw), ("bw", parsed.bw)):
            print(f"  {side}: {_tf1_stack_title(stack)}")
            _print_tf1_layers(stack, "    ")
        out_fw, out_bw = parsed.fw.layers[-1].output_size, parsed.bw.layers[-1].output_size
        print(f"  outputs: ([batch, time, {out_fw}], [batch, time, {out_bw}])")
        print(f"  state: ({_state_str(_tf1_state(parsed.fw))}, {_state_str(_tf1_state(parsed.bw))})")
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
            f", num_proj={layer.num_proj}" if layer.num_proj else "")
        label = f"cell_{k}: " if stack.multi else ""
        print(f"{indent}{label}{layer.cell_type}(num_units={layer.num_units}{extra}), "
              f"input {layer.input_size} -> output {layer.output_size}")


def _tf1_state(stack: TFStack) -> Any:
    sizes = tuple(LSTMState(lay.num_units, lay.output_size) if "LSTM" in lay.cell_type
                  else lay.num_units for lay in stack.layers)
    return sizes if stack.multi else sizes[0]


def _state_str(sizes: Any, lstm: str = "LSTMStateTuple") -> str:
    if isinstance(sizes, LSTMState):
        return f"{lstm}(c=[batch, {sizes.c}], h=[batch, {sizes.h}])"
    if isinstance(sizes, tuple):
        inner = ", ".join(_state_str(s, lstm) for s in sizes)
        return f"({inner},)" if len(sizes) == 1 else f"({inner})"
    return f"Tensor[batch, {sizes}]"


# --------------------------------------------------------------------------- rnnfuse file
def _inspect_file(path: str) -> int:
    from safetensors import SafetensorError, safe_open

    from ..io import FORECASTER_PREFIX, load, read_config, stored_format

    try:
        with safe_open(path, framework="pt") as f:
            shown = stored_format(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        shown = None  # read_config below says what is wrong with the file
    if isinstance(shown, str) and shown.startswith(FORECASTER_PREFIX):
        return _inspect_forecaster(path)
    read_config(path)  # a clear error for a foreign file, before anything else
    module = load(path)
    with safe_open(path, framework="pt") as f:
        names = list(f.keys())
    tensors = dict(module.state_dict())
    print(f"rnnfuse file {path}: {len(names)} tensors")
    width = max((len(n) for n in names), default=0)
    for name in sorted(names):
        t = tensors[name]
        print(f"  {name:<{width}}  {list(t.shape)}  {str(t.dtype).replace('torch.', '')}")
    stacks = [("fw", module.fw), ("bw", module.bw)] if hasattr(module, "fw") else [("", module)]
    print(f"{type(module).__name__} (batch_first={module.batch_first})")
    for side, stack in stacks:
        indent = "  " + ("  " if side else "")
        if side:
            print(f"  {side}: StackedRNN of {stack.num_layers} layers")
        for k, cell in enumerate(stack.layers):
            back = f" | backward {stack.backward_layers[k]!r}" if stack.bidirectional else ""
            print(f"{indent}layer {k}: {cell!r}{back}")
    print(f"  outputs: [batch, time, {module.output_size}]")
    print(f"  state: {_state_str(module.state_sizes, 'LSTMState')}")
    return 0


def _inspect_forecaster(path: str) -> int:
    """Describe a model file written by ``rnnfuse train``: tensors, configuration, scale."""
    from ..app.checkpoint import CheckpointError as ModelFileError
    from ..app.checkpoint import load_model_file
    from ..app.config import ConfigError
    from ..app.predict import load_model

    try:
        model, config, scale = load_model(path)
        meta = load_model_file(path)[1]
    except (ModelFileError, ConfigError) as exc:
        raise ValueError(str(exc)) from None
    tensors = model.state_dict()
    count = sum(p.numel() for p in model.parameters())
    print(f"rnnfuse forecaster {path} (format {meta['format']!r}, written by `rnnfuse train`): "
          f"{len(tensors)} tensors, {count:,} parameters")
    width = max((len(n) for n in tensors), default=0)
    for name, t in tensors.items():
        print(f"  {name:<{width}}  {list(t.shape)}  {str(t.dtype).replace('torch.', '')}")
    print("configuration:")
    for key, value in config.to_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        print(f"  {key}: " + ", ".join(f"{k}={json.dumps(v)}" if k else json.dumps(v) for k, v in items))
    best = meta.get("best_val_mae")
    print(f"scale {scale:.6g}, epoch {meta.get('epoch')}, best validation MAE "
          + (f"{best:.4g}" if isinstance(best, (int, float)) else str(best)))
    print(f"forecast with: rnnfuse predict --model {path}")
    return 0
