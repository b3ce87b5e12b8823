"""The forecaster is an optional part: its extra and its imports.  (No import cycles inside
it: ``tests/package/test_architecture.py`` checks the whole package, deferred imports included.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rnnfuse.app

pytestmark = pytest.mark.slow  # each test runs Python in a subprocess

APP = Path(rnnfuse.app.__file__).parent
BLOCK = "import sys; sys.modules['tqdm'] = None; sys.modules['matplotlib'] = None; "


def _python(code: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(APP.parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


def test_the_command_module_does_not_import_matplotlib():
    """(tqdm is not checked: ``import torch`` loads it, for torch.hub, when it is installed.)"""
    done = _python(
        "import json, sys, rnnfuse.app.commands, rnnfuse.cli; rnnfuse.cli.build_parser(); "
        "print(json.dumps('matplotlib' in sys.modules))"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) is False


def test_without_the_extra_the_forecaster_commands_say_how_to_install_it(tmp_path):
    runs = [
        ["demo", "--out", str(tmp_path)],
        ["train", "--out", str(tmp_path)],
        ["predict", "--model", str(tmp_path)],
    ]
    done = _python(
        BLOCK + f"from rnnfuse.cli import main; print([main(argv) for argv in {runs!r}])"
    )
    assert done.stdout.strip() == "[2, 2, 2]", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3 and "Traceback" not in done.stderr
    for argv, line in zip(runs, lines):
        assert line.startswith(
            f"rnnfuse {argv[0]}: error: the forecaster is an optional part and needs matplotlib, tqdm"
        )
        assert line.endswith("install it with: pip install 'rnnfuse[forecast]'")


def test_without_the_extra_inspect_still_works(tmp_path):
    from rnnfuse import StackedRNN, save
    from rnnfuse.app.checkpoint import MODEL_FORMAT, save_model_file
    from rnnfuse.app.config import ModelConfig, RunConfig
    from rnnfuse.app.model import build_model

    config = RunConfig(model=ModelConfig(local_sizes=(4,), global_sizes=(4,)))
    model_path = tmp_path / "best.safetensors"
    save_model_file(
        model_path,
        build_model(config.model).state_dict(),
        {
            "format": MODEL_FORMAT,
            "config": config.to_dict(),
            "scale": 1.5,
            "epoch": 1,
            "best_val_mae": 0.5,
        },
    )
    stack_path = tmp_path / "stack.safetensors"
    save(StackedRNN(3, [4]), stack_path)
    done = _python(
        BLOCK + "from rnnfuse.cli import main; "
        f"print([main(['inspect', p]) for p in {[str(model_path), str(stack_path)]!r}])"
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("[0, 0]"), (
        done.stdout + done.stderr
    )
    assert f"rnnfuse forecaster {model_path} (format {MODEL_FORMAT!r}" in done.stdout
