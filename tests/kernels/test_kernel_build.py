"""Building the C++ kernels: one folder per version, a lock that dies with its holder, a
bounded wait, one line per build.

The process tests run real processes on a private ``TORCH_EXTENSIONS_DIR`` with a tiny
pybind11 source (a few seconds to build) through the same :func:`load_extension` as the
kernels; one test kills a build of the real kernels' lock holder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from rnnfuse.kernels import _ext
from rnnfuse.kernels._ext import build
from rnnfuse.kernels._ext.build import (
    BuildSpec,
    BuildTimeout,
    build_name,
    exclusive,
    load_extension,
)
from rnnfuse.kernels.commands import build_kernels

TINY = """
#include <pybind11/pybind11.h>
int answer() { return %d; }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("answer", &answer); }
"""

# A child process: build and load the tiny source in ``sys.argv[1]`` under the root in
# ``sys.argv[2]``; print the answer and whether it built.
CHILD = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from rnnfuse.kernels._ext.build import BuildSpec, load_extension
    module, built = load_extension(BuildSpec("tiny", (Path(sys.argv[1]),)), root=Path(sys.argv[2]),
                                   timeout=float(sys.argv[3]) if len(sys.argv) > 3 else None)
    print(json.dumps({"answer": module.answer(), "built": built}))
""")


def _source(tmp_path: Path, answer: int, name: str = "tiny.cpp") -> Path:
    path = tmp_path / name
    path.write_text(TINY % answer)
    return path


def _child(source: Path, root: Path, timeout: float | None = None) -> subprocess.Popen[str]:
    args = [
        sys.executable,
        "-c",
        CHILD,
        str(source),
        str(root),
        *([] if timeout is None else [str(timeout)]),
    ]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _finish(proc: subprocess.Popen[str], limit: float = 180) -> tuple[dict, str]:
    out, err = proc.communicate(timeout=limit)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err


def test_name_follows_what_determines_the_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = _source(tmp_path, 1, "a.cpp"), _source(tmp_path, 2, "b.cpp")
    base = build_name(BuildSpec("k", (one,)))
    assert base == build_name(BuildSpec("k", (one,)))
    assert base != build_name(BuildSpec("k", (two,)))  # the source's bytes
    assert base != build_name(BuildSpec("k", (one,), cflags=("-O3",)))
    assert base != build_name(BuildSpec("k", (one,), ldflags=("-fopenmp",)))
    monkeypatch.setattr(torch, "__version__", torch.__version__ + "+other")
    assert base != build_name(BuildSpec("k", (one,)))  # torch's version
    assert base.startswith("k_")


def test_the_kernels_build_name_carries_the_source_hash() -> None:
    names = [build_name(spec) for spec in _ext.specs()]
    assert len(set(names)) == len(names) == 2
    assert all(
        name.startswith("rnnfuse_bptt_") and len(name.rsplit("_", 1)[1]) == 16 for name in names
    )


def test_wait_is_bounded_when_the_lock_is_held(tmp_path: Path) -> None:
    lock = tmp_path / "x.flock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
            "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        waits = []
        began = time.monotonic()
        with pytest.raises(BuildTimeout, match="RNNFUSE_BUILD_WAIT"):
            with exclusive(lock, 0.5, on_wait=lambda: waits.append(1)):
                pass
        assert time.monotonic() - began < 10 and waits == [1]
    finally:
        holder.kill()
        holder.wait()
    with exclusive(lock, 5):  # released by the kernel when its holder died
        pass


def test_kernels_fall_back_with_one_warning_when_another_build_outlasts_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv(build.ENV_WAIT, "0.5")
    lock = tmp_path / (build_name(_ext.specs()[0]) + ".flock")
    monkeypatch.setattr(_ext, "_state", {"tried": False, "module": None, "seconds": None})
    with exclusive(lock, 5):  # this process holds it: the build cannot start
        with pytest.warns(RuntimeWarning, match="pure-PyTorch kernels.*slower"):
            assert _ext.extension() is None
    assert _ext.extension() is None  # decided once per process


def test_wait_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(build.ENV_WAIT, "soon")
    with pytest.raises(
        ValueError, match="RNNFUSE_BUILD_WAIT: expected a number of seconds, got 'soon'"
    ):
        build.wait_limit()
    monkeypatch.setenv(build.ENV_WAIT, "-1")
    with pytest.raises(ValueError, match=">= 0"):
        build.wait_limit()


@pytest.mark.slow
def test_a_build_killed_midway_does_not_block_the_next_process(tmp_path: Path) -> None:
    source, root = _source(tmp_path, 7), tmp_path / "cache"
    first = _child(source, root)
    assert first.stderr is not None
    line = first.stderr.readline()  # printed before the compiler starts
    assert "building the C++ kernels" in line, line
    folder = root / build_name(BuildSpec("tiny", (source,)))
    deadline = time.monotonic() + 60
    while not (folder / "lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (
        folder / "lock"
    ).exists()  # PyTorch's lock file: on which every later process used to wait
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert (folder / "lock").exists()
    began = time.monotonic()
    result, err = _finish(_child(source, root), limit=120)
    assert result == {"answer": 7, "built": True}
    assert time.monotonic() - began < 120


@pytest.mark.slow
def test_versions_alternating_in_one_cache_build_once_each(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    one, two = _source(tmp_path, 1, "one.cpp"), _source(tmp_path, 2, "two.cpp")
    results = [_finish(_child(source, root))[0] for source in (one, two, one, two)]
    assert results == [
        {"answer": 1, "built": True},
        {"answer": 2, "built": True},
        {"answer": 1, "built": False},
        {"answer": 2, "built": False},
    ]
    assert len([p for p in root.iterdir() if p.is_dir()]) == 2


@pytest.mark.slow
def test_two_processes_building_at_once_both_load_it_and_one_builds(tmp_path: Path) -> None:
    source, root = _source(tmp_path, 5), tmp_path / "cache"
    procs = [_child(source, root), _child(source, root)]
    results = [_finish(p) for p in procs]
    assert [r["answer"] for r, _ in results] == [5, 5]
    assert sorted(r["built"] for r, _ in results) == [False, True]
    messages = "".join(err for _, err in results)
    assert messages.count("building the C++ kernels for this machine") == 1
    assert messages.count("built the C++ kernels in") == 1


@pytest.mark.slow
def test_message_once_in_process_and_none_on_a_load(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = _source(tmp_path, 3)
    module, built = load_extension(BuildSpec("tiny", (source,)), root=tmp_path / "cache")
    assert (module.answer(), built) == (3, True)
    err = capfd.readouterr().err
    assert (
        err.count("building the C++ kernels for this machine") == 1
        and err.count("built the C++ kernels in") == 1
    )
    _, built = load_extension(BuildSpec("tiny", (source,)), root=tmp_path / "cache")
    assert built is False and "building" not in capfd.readouterr().err


@pytest.mark.slow
def test_build_kernels_command_reports_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(_ext, "specs", lambda: [BuildSpec("tiny", (_source(tmp_path, 9),))])
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(_ext.ENV_DISABLE, raising=False)
    assert build_kernels() == 0
    assert "were built in" in capsys.readouterr().out
    assert build_kernels() == 0
    out = capsys.readouterr().out
    assert "are built already" in out and str(tmp_path / "cache" / "tiny_") in out
    monkeypatch.setenv(_ext.ENV_DISABLE, "1")
    assert build_kernels() == 2
