"""The demo's rows as others can check them: each row's kind and scores on validation and
test, the row selected on validation (:mod:`.selection`), the test origins, and every
forecast in a long CSV (``forecasts.csv``).

A network row's forecast here is the mean of its seeds' forecasts (the model one would
deploy from them); the table's network MAE is the mean of the seeds' MAEs, with their spread.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import seasonal_naive, seasonal_naive_drift, truth
from .selection import Candidate, ensemble, mase_scale, rank, scores
from .windows import Prepared

__all__ = ["candidates", "selection_summary", "write_forecasts_csv", "selection_verdict"]

_NAIVE = {"seasonal naive": seasonal_naive, "seasonal naive + drift": seasonal_naive_drift}


def _kind(model: dict[str, Any]) -> str:
    return "hybrid" if model.get("correction_weights") is not None else "network"


def candidates(prepared: Prepared, results: dict[str, Any], period: int) -> list[Candidate]:
    """Every row with validation and test forecasts: the naive rows, the classical rows that
    were fitted, the networks and hybrids (their seeds' mean forecast)."""
    rows = [Candidate(name, "naive", fn(prepared.series, prepared.val, period), fn(prepared.series, prepared.test, period))
            for name, fn in _NAIVE.items()]
    for name, b in results["baselines"].items():
        if b["kind"] == "classical" and not b.get("error") and b.get("val_forecast") is not None:
            rows.append(Candidate(name, "classical", np.asarray(b["val_forecast"]), np.asarray(b["test_forecast"])))
    for m in results["models"]:
        name = f"{m['name']} (refit)" if m.get("refit") else m["name"]
        rows.append(Candidate(name, _kind(m), np.asarray(m["val_forecast_mean"]), np.asarray(m["test_forecast_mean"])))
    return rows


def selection_summary(prepared: Prepared, results: dict[str, Any], period: int) -> dict[str, Any]:
    """``rows`` (each row's kind and ``val``/``test`` scores: ``mae``, ``rmse``, ``mase``,
    ``smape``), ``selected`` (its name), ``ensemble`` (its members), ``test_origins`` (time
    labels), and ``forecasts``: the candidates themselves (for :func:`write_forecasts_csv`;
    not written to results.json)."""
    rows = candidates(prepared, results, period)
    val_target = truth(prepared.series, prepared.val)
    test_target = truth(prepared.series, prepared.test)
    combined = ensemble(rows, val_target)
    if combined is not None:
        rows.append(combined)
    scale = {split: mase_scale(prepared.series.values, start, period)
             for split, start in (("val", prepared.splits.val_start), ("test", prepared.splits.test_start))}
    table = {
        c.name: {"kind": c.kind, "val": scores(c.val, val_target, scale["val"]), "test": scores(c.test, test_target, scale["test"])}
        | ({"parts": list(c.parts)} if c.parts else {})
        for c in rows
    }
    labels = prepared.series.labels
    return {
        "rows": table, "selected": rank(rows, val_target)[0].name,
        "ensemble": None if combined is None else list(combined.parts),
        "test_origins": [labels[int(t)] for t in prepared.test.origins.tolist()],
        "mase_scale": scale, "forecasts": rows,
    }


def write_forecasts_csv(path: Path, prepared: Prepared, rows: list[Candidate]) -> None:
    """Every row's forecast at every validation and test origin and step, one line each:
    ``row, kind, split, origin, origin_row, step, time, forecast, actual`` (``origin``: the
    time label of the last value observed; ``origin_row``: its 0-based row in the series;
    ``time``: the label of the forecast step)."""
    labels = prepared.series.labels
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["row", "kind", "split", "origin", "origin_row", "step", "time", "forecast", "actual"])
        for split in ("val", "test"):
            windows = getattr(prepared, split)
            actual = truth(prepared.series, windows)
            origins = windows.origins.tolist()
            for row in rows:
                forecast = getattr(row, split)
                for i, t in enumerate(origins):
                    for h in range(forecast.shape[1]):
                        writer.writerow([row.name, row.kind, split, labels[t], t, h + 1, labels[t + h + 1],
                                         repr(float(forecast[i, h])), repr(float(actual[i, h]))])


def selection_verdict(summary: dict[str, Any]) -> str:
    """The selected row against every other row on the test stretch (naive rows included)."""
    rows = summary["rows"]
    chosen = summary["selected"]
    mine = rows[chosen]["test"]["mae"]
    others = {name: r["test"]["mae"] for name, r in rows.items() if name != chosen}
    beaten = sorted(n for n, mae in others.items() if mine < mae)
    ahead = sorted((mae, n) for n, mae in others.items() if mae <= mine)
    best_name, best = min(((r["test"]["mae"], n) for n, r in rows.items()))[::-1]
    members = f" ({', '.join(summary['ensemble'])})" if rows[chosen]["kind"] == "ensemble" and summary["ensemble"] else ""
    text = (
        f"Selected on validation: **{chosen}**{members}, {_article(rows[chosen]['kind'])} {rows[chosen]['kind']} row (val MAE "
        f"{rows[chosen]['val']['mae']:.3f}; test MAE {mine:.3f}, MASE {rows[chosen]['test']['mase']:.3f}). On the test "
        f"stretch it beats {len(beaten)} of the other {len(others)} rows"
    )
    if ahead:
        listed = ", ".join(f"{n} ({mae:.3f})" for mae, n in ahead[:4])
        text += f"; ahead of it: {listed}{' ...' if len(ahead) > 4 else ''}"
    text += f". Best row on test, known only after the choice: {best_name} ({best:.3f})."
    return text


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
