"""The demo's report: the table with its protocol and verdicts (``results.md`` and the
terminal), the figures, and the rows as others can check them: each row's kind and scores on
validation and test, the row selected on validation (:mod:`.selection`), the test origins,
and every forecast in a long CSV (``forecasts.csv``).

A network row's forecast here is the mean of its seeds' forecasts (the model one would
deploy from them); the table's network MAE is the mean of the seeds' MAEs, with their spread.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .metrics import seasonal_naive, seasonal_naive_drift, truth
from .results import DemoResults, ModelRow, Row, Selection
from .selection import Candidate, ensemble, mase_scale, scores, select
from .windows import Prepared

__all__ = [
    "candidates",
    "selection_summary",
    "write_forecasts_csv",
    "selection_verdict",
    "format_table",
    "write_outputs",
    "correction_unused",
]

_NAIVE = {"seasonal naive": seasonal_naive, "seasonal naive + drift": seasonal_naive_drift}


def candidates(prepared: Prepared, results: DemoResults, period: int) -> list[Candidate]:
    """Every row with validation and test forecasts: the naive rows, the classical rows that
    were fitted, the networks and hybrids (their seeds' mean forecast)."""
    rows = [
        Candidate(
            name,
            "naive",
            fn(prepared.series, prepared.val, period),
            fn(prepared.series, prepared.test, period),
        )
        for name, fn in _NAIVE.items()
    ]
    for name, b in results.baselines.items():
        if b.kind == "classical" and not b.error and b.val_forecast is not None:
            rows.append(
                Candidate(
                    name, "classical", np.asarray(b.val_forecast), np.asarray(b.test_forecast)
                )
            )
    for m in results.models:
        rows.append(
            Candidate(
                m.label,
                m.kind,
                np.asarray(m.val_forecast_mean),
                np.asarray(m.test_forecast_mean),
            )
        )
    return rows


def selection_summary(prepared: Prepared, results: DemoResults, period: int) -> Selection:
    """The :class:`~rnnfuse.app.results.Selection`: ``rows`` (each row's kind and ``val``/``test``
    scores: ``mae``, ``rmse``, ``mase``, ``smape``), ``selected`` (its name), ``ensemble`` (its
    members), ``test_origins`` (time labels), and ``candidates`` themselves with their forecasts
    (for :func:`write_forecasts_csv`; not written to results.json)."""
    rows = candidates(prepared, results, period)
    val_target = truth(prepared.series, prepared.val)
    test_target = truth(prepared.series, prepared.test)
    combined = ensemble(rows, val_target)
    if combined is not None:
        rows.append(combined)
    scale = {
        split: mase_scale(prepared.series.values, start, period)
        for split, start in (
            ("val", prepared.splits.val_start),
            ("test", prepared.splits.test_start),
        )
    }
    table = {
        c.name: Row(
            c.name,
            c.kind,
            scores(c.val, val_target, scale["val"]),
            scores(c.test, test_target, scale["test"]),
            c.parts,
        )
        for c in rows
    }
    labels = prepared.series.labels
    return Selection(
        rows=table,
        selected=select(rows, val_target).name,
        ensemble=None if combined is None else combined.parts,
        test_origins=[labels[int(t)] for t in prepared.test.origins.tolist()],
        mase_scale=scale,
        candidates=rows,
    )


def write_forecasts_csv(path: Path, prepared: Prepared, rows: list[Candidate]) -> None:
    """Every row's forecast at every validation and test origin and step, one line each:
    ``row, kind, split, origin, origin_row, step, time, forecast, actual`` (``origin``: the
    time label of the last value observed; ``origin_row``: its 0-based row in the series;
    ``time``: the label of the forecast step)."""
    labels = prepared.series.labels
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["row", "kind", "split", "origin", "origin_row", "step", "time", "forecast", "actual"]
        )
        for split in ("val", "test"):
            windows = getattr(prepared, split)
            actual = truth(prepared.series, windows)
            origins = windows.origins.tolist()
            for row in rows:
                forecast = getattr(row, split)
                for i, t in enumerate(origins):
                    for h in range(forecast.shape[1]):
                        writer.writerow(
                            [
                                row.name,
                                row.kind,
                                split,
                                labels[t],
                                t,
                                h + 1,
                                labels[t + h + 1],
                                repr(float(forecast[i, h])),
                                repr(float(actual[i, h])),
                            ]
                        )


def selection_verdict(summary: Selection) -> str:
    """The selected row against every other row on the test stretch (naive rows included)."""
    rows = summary.rows
    chosen = summary.selected
    row = rows[chosen]
    mine = row.test.mae
    others = {name: r.test.mae for name, r in rows.items() if name != chosen}
    beaten = sorted(n for n, mae in others.items() if mine < mae)
    ahead = sorted((mae, n) for n, mae in others.items() if mae <= mine)
    best_name, best = min(((r.test.mae, n) for n, r in rows.items()))[::-1]
    members = (
        f" ({', '.join(summary.ensemble)})" if row.kind == "ensemble" and summary.ensemble else ""
    )
    text = (
        f"Selected on validation: **{chosen}**{members}, {_article(row.kind)} {row.kind} row "
        f"(val MAE {row.val.mae:.3f}; test MAE {mine:.3f}, MASE {row.test.mase:.3f}). On the "
        f"test stretch it beats {len(beaten)} of the other {len(others)} rows"
    )
    if ahead:
        listed = ", ".join(f"{n} ({mae:.3f})" for mae, n in ahead[:4])
        text += f"; ahead of it: {listed}{' ...' if len(ahead) > 4 else ''}"
    text += f". Best row on test, known only after the choice: {best_name} ({best:.3f})."
    return text


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def format_table(results: DemoResults, protocol: bool = True) -> str:
    """The demo's results as a Markdown table, with its protocol above (``protocol``: for
    results.md; the terminal gets the table alone) and the verdict below."""
    n = len(results.seeds)
    over = f"± sd over {n} seeds" if n > 1 else "1 seed: no spread"
    head = (
        "| model | decoder (init) | params | fit/train s | val MAE | test MAE "
        f"({over}) | test RMSE |"
    )
    lines = [
        *([_caption(results), ""] if protocol else []),
        head,
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, b in results.baselines.items():
        if b.error or b.val is None or b.test is None:
            failure = (b.error or "")[:80]
            lines.append(f"| {name} | - | - | {b.seconds:.1f} | failed | failed: {failure} | - |")
            continue
        seconds = f"{b.seconds:.1f}" if b.kind == "classical" else "-"
        lines.append(
            f"| {name} | - | - | {seconds} | {b.val.mae:.3f} | {b.test.mae:.3f} | "
            f"{b.test.rmse:.3f} |"
        )
    for m in results.models:
        t = m.test
        spread = f" ± {t.mae_std:.3f}" if n > 1 else ""
        lines.append(
            f"| {m.label} | {m.decoder} | {m.params:,} | {m.seconds:.1f} | {m.val.mae:.3f} | "
            f"{t.mae:.3f}{spread} | {t.rmse:.3f} |"
        )
    selection = results.selection
    if selection is not None:
        chosen = selection.rows[selection.selected]
        lines.append(
            f"| **selected on validation: {selection.selected}** | - | - | - | "
            f"{chosen.val.mae:.3f} | {chosen.test.mae:.3f} | {chosen.test.rmse:.3f} |"
        )
    lines += ["", _verdict(results)]
    if selection is not None:
        lines += ["", selection_verdict(selection)]
    return "\n".join(lines)


def _caption(results: DemoResults) -> str:
    return (
        "Test MAE and RMSE over all test windows and all steps (series units). Every forecast "
        "uses data up to its origin only. Classical baselines (statsmodels): parameters estimated "
        "once on the data before the first validation origin (val column) or the first test "
        "origin (test column), then one Kalman filter pass with those parameters fixed; DHR's K "
        f"chosen on validation; seasonal period {results.period:.4g} steps. "
        + _network_protocol(results)
        + _covariates_sentence(results)
        + " 'X + Y mean': the mean of the two classical forecasts at each origin."
        + _hybrid_sentence(results)
    )


def _hybrid_sentence(results: DemoResults) -> str:
    base = results.hybrid_base
    if not base:
        return ""
    refit = " and for the training windows of its refit" if _refitted_hybrid(results, base) else ""
    return (
        f" 'fusion + {base}': a hybrid, the network forecasts the error of the {base} forecast "
        "at each origin and gets that forecast as a decoder input; its encoders read the series, "
        "and its decoder that forecast, less DHR's fitted seasonal terms (classical parameters "
        "fitted before the validation stretch for the training and validation windows, before "
        f"the test stretch for the test windows{refit}; fitted once, shared by every seed); the "
        "share of its correction added to the classical forecast (0 to 1 by 0.1) is chosen on "
        "validation, so its val MAE is the chosen one's."
    )


def _refitted_hybrid(results: DemoResults, base: str) -> bool:
    """Whether a row on ``base`` (a hybrid) was refitted before the test stretch."""
    return any(m.refit and base in m.name for m in results.models)


def _covariates_sentence(results: DemoResults) -> str:
    """The caption's sentence on the covariates (none: nothing)."""
    names = results.covariates
    if not names:
        return ""
    return (
        f" Covariates ({', '.join(names)}; a row's value known at its time): every network's "
        "encoders read them up to the origin; DHR and SARIMA regress on each and on its running "
        "sum, both lagged by the horizon (so every regressor a forecast needs is known at its "
        "origin); ETS reads none."
    )


def _network_protocol(results: DemoResults) -> str:
    """The caption's sentences on how the networks were trained, refitted rows included."""
    refitted = [m.name for m in results.models if m.refit]
    stop = results.stop_steps or 0
    text = "Networks: trained on the training windows" + (
        f", stopped early and their best weights kept on the {stop} steps before validation (the "
        "early-stopping windows, not trained on), so that no network has seen validation"
        if stop
        else ", stopped early and their best weights kept on validation"
    )
    if not refitted:
        return (
            text
            + (" (no network refitted before the test stretch)" if results.refit else "")
            + "; means over seeds."
        )
    which = "every network" if len(refitted) == len(results.models) else ", ".join(refitted)
    fewer = sorted(
        {
            m.refit_windows
            for m in results.models
            if m.refit_windows is not None and m.refit_windows != results.refit_windows
        }
    )
    hybrids = (
        f"; a hybrid's: the {' or '.join(map(str, fewer))} of them where its "
        "classical forecast is defined"
        if fewer
        else ""
    )
    return (
        text
        + "; a hybrid's correction share is chosen on validation; means over seeds. Refit before "
        "test, as the classical parameters are re-estimated there, for rows marked (refit): "
        f"{which}. Once the settings are chosen on validation with the model trained on the "
        "training windows (whose errors the val column gives), a fresh model with the same seed "
        f"and settings is trained on all {results.refit_windows} windows whose targets lie "
        "before the test stretch (training, "
        f"{'early-stopping, ' if stop else ''}validation{hybrids}), and that model forecasts the "
        "test stretch (test columns; a hybrid's with the correction share chosen on validation). "
        "Its seconds include the refit's."
    )


def _verdict(results: DemoResults) -> str:
    """The winner over networks and classical baselines, and whether leads exceed the seed
    spread."""
    by_name = {m.name: m for m in results.models}
    best = by_name[results.winner]
    n = len(results.seeds)
    name = results.best_classical
    classical = _test_mae(results, name)
    overall = best.name if classical is None or best.test.mae < classical else name
    if results.selection is not None and results.selection.rows:  # every row, naive included
        rows = results.selection.rows
        overall = min(rows, key=lambda r: rows[r].test.mae)
    text = f"Best row on the held-out test stretch: **{overall}**."
    idle = [m.name for m in results.models if correction_unused(m)]
    if idle:
        text += (
            f" ({', '.join(idle)}: validation chose a correction share of 0 for every seed, so its "
            "forecast is its classical base's.)"
        )
    if name is None or classical is None:
        text += " No classical baseline was fitted (or none could be)."
    else:
        gap = classical - best.test.mae
        text += (
            f" Best network: {best.name} (mean test MAE {best.test.mae:.3f}); best classical "
            f"baseline: {name} ({classical:.3f}); the network is "
            f"{'ahead' if gap > 0 else 'behind'} by {abs(gap):.3f}"
        )
        if n > 1:
            spread = best.test.mae_std
            text += (
                f", {'more' if abs(gap) > spread else 'less'} than its spread between "
                f"seeds ({spread:.3f})."
            )
        else:
            text += "; with 1 seed there is no spread between seeds to compare it with."
    if results.runner_up:
        second = by_name[results.runner_up]
        gap = second.test.mae - best.test.mae
        if n > 1:
            spread = max(best.test.mae_std, second.test.mae_std)
            margin = "larger" if gap > spread else "smaller"
            text += (
                f" Among the networks, {best.name}'s lead over {second.name} ({gap:.3f}) is "
                f"{margin} than the spread between seeds ({spread:.3f})."
            )
        else:
            text += (
                f" Among the networks, {best.name} leads {second.name} by {gap:.3f} (1 seed: no "
                f"spread to compare with)."
            )
    seeds = results.seeds
    return text + f" Training: {results.budget} per run; seeds {seeds[0]}..{seeds[-1]}."


def _test_mae(results: DemoResults, name: str | None) -> float | None:
    """The test MAE of the baseline row ``name`` (``None``: no such row or no errors)."""
    row = None if name is None else results.baselines[name]
    return None if row is None or row.test is None else row.test.mae


def correction_unused(model: ModelRow) -> bool:
    """A hybrid whose every seed kept none of its network's correction."""
    weights = model.correction_weights or []
    return bool(weights) and all(w == 0 for w in weights)


def write_outputs(out: Path, prepared: Prepared, results: DemoResults, table: str) -> None:
    """results.md (the data, then ``table``), forecasts.csv (when the selection was made) and
    the figures: forecasts against the best classical row's, training curves, error by step."""
    from .plots import plot_error_by_step, plot_forecasts, plot_training_curves

    (out / "results.md").write_text(results.data + "\n\n" + table + "\n")
    if results.selection is not None:
        write_forecasts_csv(out / "forecasts.csv", prepared, list(results.selection.candidates))
    best = results.best_classical
    if best is not None:
        reference, label = np.asarray(results.baselines[best].test_forecast), best
    else:
        period = int(round(results.period))
        reference, label = (
            seasonal_naive_drift(prepared.series, prepared.test, period),
            "seasonal naive + drift",
        )
    plot_forecasts(out / "forecasts.png", prepared, results.models, reference, label)
    shown = {  # the rows with errors: (validation, test)
        k: (v.val, v.test)
        for k, v in results.baselines.items()
        if not v.error and v.val is not None and v.test is not None
    }
    val_baselines = {k: val.mae for k, (val, _) in shown.items()}
    units = prepared.series.units or None
    plot_training_curves(out / "training_curves.png", results.models, val_baselines, units)
    order = sorted(shown, key=lambda k: k != best)  # the best classical one first: drawn boldest
    step_baselines = {
        (f"{k} (best classical)" if k == best else k): shown[k][1].mae_by_step for k in order
    }
    plot_error_by_step(out / "error_by_step.png", results.models, step_baselines, units)
