"""TF1 ``dynamic_rnn`` and Keras 3 timings, run as a separate process (optional).

Neither TensorFlow nor Keras is a dependency of rnnfuse.  ``run.py`` starts this script
with the interpreter that has them (``--tf-python PATH`` for TensorFlow; Keras 3 on the
torch backend runs with the current interpreter) and reads one JSON object from its
standard output: ``{"framework": ..., "version": ..., "results": [{"case", "mode", "ms"}]}``.

This file imports neither torch nor rnnfuse, so it runs in a TensorFlow-only venv::

    TF_USE_LEGACY_KERAS=1 PATH_TO_A_TF_VENV/bin/python benchmarks/external.py tf1 --threads 2
    KERAS_BACKEND=torch python benchmarks/external.py keras --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

# (case name, cell kind, hidden sizes, options): the same cases as run.py's
CASES = [
    ("lstm-2x256", "lstm", [256, 256], {}),
    ("gru-reset-before-2x256", "gru", [256, 256], {}),
    ("peephole-lstm-2x256", "lstm", [256, 256], {"peepholes": True}),
    ("lstm-512-256-128", "lstm", [512, 256, 128], {}),
    ("ragged-lstm-2x256", "lstm", [256, 256], {"ragged": True}),
]


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _data(args: argparse.Namespace) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.steps, args.features)).astype("float32")
    lengths = rng.integers(1, args.steps + 1, args.batch).astype("int32")
    return x, lengths


def _hidden(sizes: list[int], shrink: int) -> list[int]:
    return [max(4, h // shrink) for h in sizes]


def run_tf1(args: argparse.Namespace) -> dict[str, Any]:
    """TF1 graph mode: ``MultiRNNCell`` of ``BasicLSTMCell``/``GRUCell``/``LSTMCell`` under
    ``dynamic_rnn``; forward = outputs, forward+backward = gradients of their sum."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    x_np, len_np = _data(args)
    results = []
    for name, kind, sizes, opts in CASES:
        graph = tf.Graph()
        with graph.as_default():
            cells = [_tf1_cell(v1, kind, h, opts) for h in _hidden(sizes, args.shrink)]
            x = v1.placeholder(tf.float32, x_np.shape)
            lengths = v1.placeholder(tf.int32, len_np.shape) if opts.get("ragged") else None
            out, _ = v1.nn.dynamic_rnn(
                v1.nn.rnn_cell.MultiRNNCell(cells), x, sequence_length=lengths, dtype=tf.float32
            )
            loss = tf.reduce_sum(out)
            grads = v1.gradients(loss, v1.trainable_variables() + [x])
            config = v1.ConfigProto(
                intra_op_parallelism_threads=args.threads, inter_op_parallelism_threads=1
            )
            with v1.Session(graph=graph, config=config) as sess:
                sess.run(v1.global_variables_initializer())
                feed = {x: x_np} if lengths is None else {x: x_np, lengths: len_np}
                for mode, fetch in (("fwd", out), ("fwd+bwd", grads)):
                    ms = _median_ms(partial(sess.run, fetch, feed), args.repeats)
                    results.append({"case": name, "mode": mode, "ms": ms})
    return {"framework": "TF1 dynamic_rnn", "version": tf.__version__, "results": results}


def _tf1_cell(v1: Any, kind: str, hidden: int, opts: dict[str, Any]) -> Any:
    cells = v1.nn.rnn_cell
    if kind == "gru":
        return cells.GRUCell(hidden)
    if opts.get("peepholes"):
        return cells.LSTMCell(hidden, use_peepholes=True)
    return cells.BasicLSTMCell(hidden)


def run_keras(args: argparse.Namespace) -> dict[str, Any]:
    """Keras 3 on its configured backend: stacked ``LSTM``/``GRU(reset_after=False)``
    layers (no peepholes in Keras; ragged batches are skipped: Keras masks, it does not skip)."""
    import keras
    import numpy as np

    backend = keras.backend.backend()
    _keras_threads(backend, args.threads)
    x_np, _ = _data(args)
    results = []
    for name, kind, sizes, opts in CASES:
        if opts:
            continue
        layers = [keras.Input(x_np.shape[1:])]
        for h in _hidden(sizes, args.shrink):
            if kind == "gru":
                layers.append(keras.layers.GRU(h, return_sequences=True, reset_after=False))
            else:
                layers.append(keras.layers.LSTM(h, return_sequences=True))
        model = keras.Sequential(layers)
        x = keras.ops.convert_to_tensor(np.asarray(x_np))
        forward = _keras_fwd(backend, model, x)
        results.append({"case": name, "mode": "fwd", "ms": _median_ms(forward, args.repeats)})
        step = _keras_fwd_bwd(backend, model, x)
        results.append({"case": name, "mode": "fwd+bwd", "ms": _median_ms(step, args.repeats)})
    return {"framework": f"Keras 3 ({backend})", "version": keras.__version__, "results": results}


def _keras_threads(backend: str, threads: int) -> None:
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)


def _keras_fwd(backend: str, model: Any, x: Any) -> Callable[[], Any]:
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda: model(x, training=False))
    if backend == "torch":
        import torch

        def forward() -> Any:
            with torch.no_grad():
                return model(x, training=False)

        return forward
    return lambda: model(x, training=False)


def _keras_fwd_bwd(backend: str, model: Any, x: Any) -> Callable[[], Any]:
    if backend == "torch":
        import torch

        x = x.detach().requires_grad_()

        def step() -> None:
            model.zero_grad(set_to_none=True)
            torch.sum(model(x, training=True)).backward()

        return step
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step() -> Any:
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(model(x, training=True))
            return tape.gradient(loss, model.trainable_variables + [x])

        return step
    raise SystemExit(
        f"external.py: Keras backend {backend!r} is not benchmarked (use torch or tensorflow)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=["tf1", "keras"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--shrink", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = run_tf1(args) if args.framework == "tf1" else run_keras(args)
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
