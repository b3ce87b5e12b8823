"""Run directories and configuration files that are links, FIFOs, devices or huge (see
SECURITY.md).  Every crafted directory is made here; a test that could hang or allocate runs
the command in a subprocess under an address-space limit and a timeout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rnnfuse.app.config import RunConfig
from rnnfuse.cli import main

SRC = str(Path(__file__).resolve().parents[2] / "src")
SMALL = [
    "--local-sizes",
    "4",
    "--global-sizes",
    "4",
    "--no-progress",
    "--epochs",
    "1",
    "--steps",
    "2",
]


def _cli(
    argv: list[str], tmp_path: Path, extra_bytes: int = 512 << 20, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``rnnfuse <argv>`` in a fresh interpreter limited to ``extra_bytes`` more address space
    than its imports take, killed after ``timeout`` seconds (which fails the test)."""
    script = textwrap.dedent(f"""
        import resource, sys
        import rnnfuse.cli, rnnfuse.app.commands, rnnfuse.app.training, rnnfuse.convert.keras, torch
        base = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (base + {extra_bytes}, base + {extra_bytes}))
        sys.exit(rnnfuse.cli.main({argv!r}))
    """)
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=timeout,
    )


def _one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def _run_dir(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    return out


# ------------------------------------------------------------------ 2. links in a run directory
def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = _run_dir(tmp_path)
    (out / ".lock").symlink_to(victim)
    assert main(["train", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert victim.read_text() == "precious\n"
    assert f"{out / '.lock'} (a symbolic link)" in err and len(err.strip().splitlines()) == 1, err


def test_a_checkpoints_symlink_is_refused_and_its_target_neither_written_nor_pruned(
    tmp_path, capsys
):
    victim = tmp_path / "elsewhere"
    for step in ("step-00000001", "step-00000002", "step-00000003"):
        (victim / step).mkdir(parents=True)
        (victim / step / "keep.txt").write_text("mine\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").symlink_to(victim, target_is_directory=True)
    assert main(["train", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert sorted(p.name for p in victim.iterdir()) == [
        "step-00000001",
        "step-00000002",
        "step-00000003",
    ]
    assert f"{out / 'checkpoints'} (a symbolic link)" in err, err


def test_a_run_config_json_that_is_a_symlink_is_refused_on_resume(tmp_path, capsys):
    elsewhere = tmp_path / "their.json"
    elsewhere.write_text(json.dumps(RunConfig().to_dict()))
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").symlink_to(elsewhere)
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert f"{out / 'config.json'} (a symbolic link)" in capsys.readouterr().err


# ------------------------------------------------------------------ 3. reads that the size checks missed
@pytest.mark.slow
@pytest.mark.parametrize("where", ["--config", "run config.json"])
def test_a_config_that_is_a_fifo_is_refused_at_once(tmp_path, where):
    if where == "--config":
        fifo = tmp_path / "config.json"
        argv = ["train", "--out", str(tmp_path / "run"), "--config", str(fifo)]
    else:
        (tmp_path / "run").mkdir()
        fifo = tmp_path / "run" / "config.json"
        argv = ["train", "--out", str(tmp_path / "run"), "--resume"]
    os.mkfifo(fifo)
    err = _one_line_error(_cli(argv, tmp_path, timeout=60))
    assert str(fifo) in err and ("FIFO" in err or "not a regular file" in err), err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["/dev/zero", "sparse 6 GB"])
def test_a_config_file_that_never_ends_is_refused_without_reading_it(tmp_path, kind):
    path = Path("/dev/zero")
    if kind != "/dev/zero":
        path = tmp_path / "config.json"
        with path.open("wb") as handle:
            handle.truncate(6 << 30)
    err = _one_line_error(
        _cli(["train", "--out", str(tmp_path / "run"), "--config", str(path)], tmp_path)
    )
    assert str(path) in err and ("not a regular file" in err or "bytes at most" in err), err


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "sparse 6 GB"])
def test_a_savedmodel_keras_metadata_that_never_ends_is_refused(tmp_path, kind):
    model = tmp_path / "saved"
    model.mkdir()
    meta = model / "keras_metadata.pb"
    if kind == "fifo":
        os.mkfifo(meta)
    else:
        with meta.open("wb") as handle:
            handle.truncate(6 << 30)
    err = _one_line_error(_cli(["inspect", str(model)], tmp_path, timeout=60))
    assert "keras_metadata.pb" in err and ("not a regular file" in err or "bytes at most" in err), (
        err
    )


def test_entries_that_vanish_while_checked_are_not_refused(tmp_path):
    """Another run's atomic write renames its temporary file, and its pruning removes a
    checkpoint, while a second process checks the directory: what is gone is not a problem
    (the second process must go on to report the lock's holder, not crash)."""
    from rnnfuse.app import rundir

    gone = tmp_path / ".latest.json.tmp"
    gone.write_text("{}")
    with os.scandir(tmp_path) as listing:
        entries = list(listing)
    gone.unlink()
    assert [rundir._kind(entry) for entry in entries] == [None]
    assert rundir._bad_entries(tmp_path / "checkpoints" / "step-00000001", depth=1) == []
    with pytest.raises(FileNotFoundError):
        rundir._bad_entries(tmp_path / "missing", depth=0)  # --out itself must exist
