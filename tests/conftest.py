"""Shared test set-up: seeds, a Hypothesis profile, a NumPy random generator, two threads, both kernels."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

HERE = Path(__file__).parent
# `import numpy_reference` (and legacy_cases) from any rootdir; tf1/: other folders import the
# TF1 fixture cases from tf1/test_tf1_load.py (core/test_io.py, convert/test_interop_cli.py).
sys.path[:0] = [str(HERE), str(HERE / "tf1")]

# Test tensors are tiny: a second intra-op thread only adds synchronisation, which costs
# 10x on a busy 2-core machine (an OpenMP barrier waiting on a descheduled thread).
torch.set_num_threads(1)

# No deadline: the CPU is shared, and a test must never fail because it was slow.
settings.register_profile(
    "rnnfuse", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("rnnfuse")


def pytest_configure(config: pytest.Config) -> None:
    """torch warns on every projected LSTM run on CPU; the warning says nothing about us."""
    config.addinivalue_line(
        "filterwarnings", "ignore:LSTM with projections is not supported with oneDNN:UserWarning"
    )


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same seeds, whatever ran before it."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture
def two_threads():
    """Run a test with two intra-op threads (paths chosen only with more than one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["compiled", "fallback"])
def bptt_impl(request):
    """Run a test with the C++ extension's kernels (``compiled``, skipped where it cannot be
    built) and with their pure-PyTorch fallback (``fallback``)."""
    from rnnfuse.kernels import _ext

    if request.param == "fallback":
        with _ext.disabled():
            yield request.param
        return
    if not _ext.available():
        pytest.skip("the C++ extension could not be built here (no compiler or ninja)")
    yield request.param


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator for reference weights and inputs."""
    return np.random.default_rng(1234)


# --doctest-modules imports every module under tests/: the fixture generator needs TensorFlow,
# which is never installed here (it runs in its own virtual environment).
collect_ignore_glob = ["fixtures/*"]
