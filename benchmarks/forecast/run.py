"""rnnfuse on the forecasting panel, through ``rnnfuse demo`` itself (the code users run).

    python benchmarks/forecast/run.py OUT [--series a,b] [--jobs 2] [--panel holdout]

reads ``OUT/data/<name>.csv`` (``benchmarks/forecast/panel.py``) and writes each series' demo
output to ``OUT/rnnfuse/<name>/`` (``results.json``, ``forecasts.csv``, plots).  The settings
below are fixed for every series before any result was seen; the data fix the rest (period,
horizon, stretches: :mod:`panel`).  Then ``benchmarks/forecast/report.py OUT`` lines the rows
up with the peers' (``benchmarks/forecast/peers.py``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from panel import PANELS, PanelSeries

# The networks every series gets: the plain local + global network fused by concatenation,
# and the demo's hybrid (Zoph-Knight fusion correcting the classical base), 3 seeds each.
FUSIONS = "concat"
HYBRIDS = "zoph-knight"
SEEDS = 3


def demo_command(series: PanelSeries, data: Path, out: Path, jobs: int) -> list[str]:
    """The ``rnnfuse demo`` command line for one series."""
    rows = sum(1 for _ in data.open()) - 1
    stretch = series.stretch(rows)
    period = "1" if series.period == 1 else f"{series.period:g}"
    return [
        sys.executable,
        "-m",
        "rnnfuse",
        "demo",
        "--csv",
        str(data),
        "--column",
        "y",
        "--time-column",
        "ds",
        "--period",
        period,
        "--horizon",
        str(series.horizon),
        "--val-steps",
        str(stretch),
        "--test-steps",
        str(stretch),
        "--covariates",
        "none",
        "--fusions",
        FUSIONS,
        "--hybrids",
        HYBRIDS,
        "--seeds",
        str(SEEDS),
        "--jobs",
        str(jobs),
        "--out",
        str(out),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--series", default="", help="comma-separated names (default: the whole panel)"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--panel", choices=sorted(PANELS), default="benchmark")
    parser.add_argument(
        "--no-decoder-feedback",
        action="store_true",
        help="rnnfuse demo's --no-decoder-feedback (a variant of the settings, for an experiment)",
    )
    args = parser.parse_args()
    chosen = set(filter(None, args.series.split(",")))
    failed = []
    for series in PANELS[args.panel]:
        if chosen and series.name not in chosen:
            continue
        command = demo_command(
            series,
            args.out / "data" / f"{series.name}.csv",
            args.out / "rnnfuse" / series.name,
            args.jobs,
        ) + (["--no-decoder-feedback"] if args.no_decoder_feedback else [])
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        log = args.out / "rnnfuse" / f"{series.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(command[1:]) + "\n" + done.stdout + done.stderr)
        status = (
            "ok"
            if done.returncode == 0
            else f"failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}"
        )
        print(f"{series.name}: {status} in {time.perf_counter() - began:.0f} s", flush=True)
        if done.returncode != 0:
            failed.append(series.name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
