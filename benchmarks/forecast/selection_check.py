"""Two selection rules on the same candidates: the row with the lowest validation MAE, and
:func:`rnnfuse.app.selection.select` (the ensemble unless a single row beats it by more than
the noise), read back from each series' ``forecasts.csv`` (every row's validation and test
forecasts).

    python benchmarks/forecast/selection_check.py OUT [--panel holdout]

prints, per series of the panel, each rule's choice and its test MAE relative to seasonal
naive's, and the geometric means over the panel (``benchmarks/results/selection-rule-holdout.md``
says what they decide).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from panel import PANELS

from rnnfuse.app.selection import Candidate, rank, select

Cells = dict[tuple[int, int], tuple[float, float]]


def read(path: Path) -> tuple[list[Candidate], np.ndarray, np.ndarray]:
    """The candidates of one ``forecasts.csv`` and the validation and test targets ``(N, H)``."""
    cells: dict[tuple[str, str, str], Cells] = defaultdict(dict)
    with path.open() as handle:
        for row in csv.DictReader(handle):
            key = (row["row"], row["kind"], row["split"])
            cells[key][(int(row["origin_row"]), int(row["step"]))] = (
                float(row["forecast"]),
                float(row["actual"]),
            )

    def grid(table: Cells, column: int) -> np.ndarray:
        origins = sorted({o for o, _ in table})
        steps = sorted({s for _, s in table})
        return np.array([[table[(o, s)][column] for s in steps] for o in origins])

    names = sorted({(name, kind) for name, kind, _ in cells})
    candidates = [
        Candidate(
            name, kind, grid(cells[(name, kind, "val")], 0), grid(cells[(name, kind, "test")], 0)
        )
        for name, kind in names
    ]
    first = names[0]
    return candidates, grid(cells[(*first, "val")], 1), grid(cells[(*first, "test")], 1)


def check(path: Path) -> dict[str, tuple[str, float]]:
    """``{"lowest validation MAE": (row, relative test MAE), "select": (...)}`` for one series."""
    candidates, val_target, test_target = read(path)
    naive = next(c for c in candidates if c.name == "seasonal naive")
    base = float(np.abs(naive.test - test_target).mean())
    chosen = {
        "lowest validation MAE": rank(candidates, val_target)[0],
        "select": select(candidates, val_target),
    }
    return {
        rule: (c.name, float(np.abs(c.test - test_target).mean()) / base)
        for rule, c in chosen.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--panel", choices=sorted(PANELS), default="benchmark")
    args = parser.parse_args()
    logs: dict[str, list[float]] = defaultdict(list)
    print("| series | rule | chosen row | test MAE / seasonal naive's |\n|---|---|---|---:|")
    for series in PANELS[args.panel]:
        path = args.out / "rnnfuse" / series.name / "forecasts.csv"
        if not path.exists():
            print(f"| {series.name} | - | missing: {path} | - |")
            continue
        for rule, (name, relative) in check(path).items():
            logs[rule].append(math.log(relative))
            print(f"| {series.name} | {rule} | {name} | {relative:.3f} |")
    for rule, values in logs.items():
        print(
            f"\ngeometric mean, {rule}: {math.exp(np.mean(values)):.3f} over {len(values)} series"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
