"""Where the time of one benchmark case goes: ``torch.profiler``'s top operators.

    python benchmarks/profile.py peephole-lstm-2x256 --mode fwd+bwd
    RNNFUSE_NO_EXTENSION=1 python benchmarks/profile.py peephole-lstm-2x256  # the pure-PyTorch loop

Profiles the candidate of a case (``--baseline``: its baseline) over one run after two
warm-up runs.  The compiled BPTT loop's own elementwise work shows as the self time of
``LSTMFunction``/``GRUFunction`` (and their backward nodes); its matrix products as
``aten::addmm_``/``aten::mm``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from cases import case_by_name  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from workloads import Size, make_inputs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="profile one benchmark case")
    parser.add_argument("case", help="a case name of cases.py")
    parser.add_argument("--mode", choices=["fwd", "fwd+bwd"], default="fwd")
    parser.add_argument("--baseline", action="store_true", help="profile the baseline instead")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", type=int, default=12, help="operators shown")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    case = case_by_name(args.case)
    size = Size()
    if case.batch is not None:
        size = dataclasses.replace(size, batch=case.batch)
    x, lengths = make_inputs(size, "cpu")
    work = (case.baseline if args.baseline else case.candidate)(x, lengths, size)
    run = work.forward if args.mode == "fwd" else work.forward_backward
    run()
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    print(
        f"{case.name} {args.mode} ({'baseline' if args.baseline else 'candidate'}), "
        f"{args.threads} threads, load {os.getloadavg()}"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
