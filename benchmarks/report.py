"""Writing a results file (``benchmarks/results/<cpu-model>.md``) from the measurements of
``run.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import percent_of_peak

__all__ = ["write_report", "bar_table"]


def _verdict(value: float, bar: float | None, goal: float | None) -> str:
    if bar is None:
        return ""
    if goal is not None and value <= goal:
        return "meets the goal"
    return "meets the bar" if value <= bar else "**misses the bar**"


def bar_table(rows: list[dict], memory: list[dict]) -> list[str]:
    """The speed goals: each measured ratio against its bar (and goal)."""
    lines = [
        "| case | mode | measured ratio [quartiles] | best-of ratio | bar | goal | (median) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["bar"] is None:
            continue
        goal = "" if r["goal"] is None else f"≤ {r['goal']:.2f}"
        lines.append(
            f"| {r['title']} (vs {r['baseline']}) | {r['mode']} | {r['ratio']:.3f} "
            f"[{r['low']:.3f}, {r['high']:.3f}] | {_best(r)} | ≤ {r['bar']:.2f} | {goal} | "
            f"{_verdict(r['ratio'], r['bar'], r['goal'])} |"
        )
    for m in memory:
        if m["bar"] is not None:
            lines.append(
                f"| peak memory, {m['case']} (vs baseline) | fwd+bwd | {m['ratio']:.3f} | | ≤ "
                f"{m['bar']:.2f} | | {_verdict(m['ratio'], m['bar'], None)} |"
            )
    return lines


def _best(row: dict) -> str:
    best = row.get("best")
    return "" if best is None else f"{best:.3f}"


def _all_rows(rows: list[dict], peak: float) -> list[str]:
    lines = [
        "| case | candidate | baseline | mode | candidate ms | baseline ms | ratio [quartiles] | "
        "best-of ratio | candidate GFLOP/s (% of sgemm peak) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['candidate']} | {r['baseline']} | {r['mode']} | {r['a_ms']:.2f} "
            f"| {r['b_ms']:.2f} | {r['ratio']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | {_best(r)} "
            f"| {r['gflops']:.1f} ({percent_of_peak(r['gflops'], peak)}) |"
        )
    return lines


def _memory_rows(memory: list[dict]) -> list[str]:
    lines = ["| case | candidate MiB | baseline MiB | ratio |", "|---|---|---|---|"]
    for m in memory:
        lines.append(
            f"| {m['case']} | {m['candidate_mb']:.1f} | {m['baseline_mb']:.1f} | {m['ratio']:.3f} |"
        )
    return lines


def _external_rows(rows: list[dict], ext: list[dict]) -> list[str]:
    """Absolute times: this session's PyTorch ones beside the other frameworks'."""
    ours = {(r["case"], r["mode"]): r for r in rows}
    names = [e["framework"] + " " + e["version"] for e in ext]
    lines = [
        "| case | mode | rnnfuse ms | PyTorch baseline ms | "
        + " | ".join(f"{n} ms" for n in names)
        + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    keys = sorted(
        {(t["case"], t["mode"]) for e in ext for t in e["results"]}, key=lambda k: (k[0], k[1])
    )
    for case, mode in keys:
        mine = ours.get((case, mode))
        theirs = [
            next(
                (f"{t['ms']:.2f}" for t in e["results"] if (t["case"], t["mode"]) == (case, mode)),
                "",
            )
            for e in ext
        ]
        a = f"{mine['a_ms']:.2f}" if mine else ""
        b = f"{mine['b_ms']:.2f} ({mine['baseline']})" if mine else ""
        lines.append(f"| {case} | {mode} | {a} | {b} | " + " | ".join(theirs) + " |")
    return lines


METHOD = """\
## Method

* **Ratios** (candidate / baseline): both run in this process, alternately (a b, b a, ...),
  after warm-up runs; each pair gives one ratio, the table shows the median ratio and its
  quartiles, beside the median times.  A pair sees nearly the same machine load, so ratios
  stay meaningful on a shared CPU where absolute times do not.  The **best-of ratio**
  divides the candidate's fastest run by the baseline's: each side at its quietest moment,
  the estimate of a quiet machine (the verdict is the median's).
* **fwd** is inference (`eval()`, `torch.no_grad()`); **fwd+bwd** is a training step:
  the sum of the top layer's outputs, backpropagated to every parameter and to the input.
* **GFLOP/s** counts the matrix products the kernels do (`workloads.layer_flops`): per
  token and layer `2·G·H·(in + P)` forward (G gates: LSTM 4, GRU 3; P the layer's output
  size, H without a projection) plus `2·P·H` for a projection; the backward does two
  products the size of each forward one (input and weight gradients), so forward+backward
  is 3× the forward.  Tokens are those actually in the batch (for a ragged batch, the sum of
  the lengths).  The sgemm peak is the best rate of float32 products of several shapes
  (squares 256..2048 and the kernels' own shapes), each with `torch.mm` and with oneDNN's
  matmul, best of several runs, measured before and after the cases, with the same
  threads; a percentage is never printed above 100 % (a rate above the measured peak
  says the peak was under-measured on a busy machine).
* **Peak memory** (`memory.py`): a fresh process per measurement; after a warm-up run,
  `malloc_trim` and a reset of the resident-set high-water mark
  (`/proc/self/clear_refs`), the increase of `VmHWM` over the resident set during one
  forward+backward.  It counts what the kernels allocate outside PyTorch's allocator too.
* **TensorFlow / Keras** run in their own processes (`external.py`) with the same number
  of threads; their absolute times stand beside the PyTorch times of the same session (no
  cross-process ratios).  TF1: `MultiRNNCell` of `BasicLSTMCell` / `GRUCell` /
  `LSTMCell(use_peepholes=True)` under `dynamic_rnn` in graph mode; Keras 3: stacked
  `LSTM` / `GRU(reset_after=False)` layers (no peepholes, no ragged case).
"""


def write_report(
    path: Path, info: dict[str, Any], rows: list[dict], memory: list[dict], ext: list[dict]
) -> None:
    size = info["size"]
    mach = info["machine"]
    lines = [
        "# rnnfuse benchmark results",
        "",
        f"Written by `{info['command']}` on {info['started']}.",
        "",
        f"* CPU: {mach['cpu']}, {mach['cores']} cores (vector ISA seen by torch: "
        f"{mach.get('capability', '?')}); torch {mach['torch']} with {mach['threads']} threads "
        f"(oneDNN available: {mach['onednn']}); Python {mach['python']}; {mach['platform']}",
        f"* BPTT kernels: {info.get('extension', 'unknown')}",
        "* sgemm peak (best of several shapes, `torch.mm` and oneDNN): "
        f"{info['sgemm_gflops']:.1f} GFLOP/s",
        f"* load average (1, 5, 15 min) before: {info['load_before']}; after: {info['load_after']} "
        "(the machine is shared; see Method)",
        f"* batch {size.batch}, {size.steps} steps, {size.features} input features"
        + (f", hidden sizes divided by {size.shrink}" if size.shrink > 1 else "")
        + f"; {info['repeats']} timed pairs per comparison",
        "",
        "## The speed goals (ratios: lower is better)",
        "",
        *bar_table(rows, memory),
        "",
        "## All comparisons",
        "",
        *_all_rows(rows, info["sgemm_gflops"]),
        "",
    ]
    if memory:
        lines += ["## Peak memory, forward+backward", "", *_memory_rows(memory), ""]
    if ext:
        lines += [
            "## Other frameworks (absolute times, same session)",
            "",
            *_external_rows(rows, ext),
            "",
        ]
    lines.append(METHOD)
    path.write_text("\n".join(lines))
