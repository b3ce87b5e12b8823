"""rnnfuse.app: the row selected on validation, the ensemble, the scores, forecasts.csv."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from rnnfuse.app.config import DataConfig
from rnnfuse.app.data import load_embedded
from rnnfuse.app.metrics import truth
from rnnfuse.app.report import selection_verdict, write_forecasts_csv
from rnnfuse.app.results import Metrics, Row, Selection
from rnnfuse.app.selection import (
    Candidate,
    ensemble,
    margin_noise,
    mase_scale,
    rank,
    scores,
    select,
)
from rnnfuse.app.windows import prepare

RNG = np.random.default_rng(0)
VAL, TEST = RNG.normal(size=(6, 3)), RNG.normal(size=(5, 3))


def _cand(name: str, kind: str, val_error: float, test_error: float) -> Candidate:
    return Candidate(name, kind, VAL + val_error, TEST + test_error)


def test_scores_follow_their_definitions():
    y = np.array([[1.0, -2.0], [0.0, 4.0]])
    f = np.array([[2.0, -2.0], [0.0, 1.0]])
    got = scores(f, y, scale=2.0)
    assert got.mae == pytest.approx(1.0) and got.rmse == pytest.approx(np.sqrt(10 / 4))
    assert got.mase == pytest.approx(0.5)
    expected_smape = np.mean([200 * 1 / 3, 0.0, 0.0, 200 * 3 / 5])  # both zero: 0
    assert got.smape == pytest.approx(expected_smape)
    with pytest.raises(ValueError, match="shape"):
        scores(f[:1], y, 1.0)


def test_mase_scale_is_the_in_sample_seasonal_naive_mae():
    y = np.array([1.0, 3.0, 2.0, 5.0, np.nan, 4.0, 9.0])
    assert mase_scale(y, 4, 2) == pytest.approx(np.mean([1.0, 2.0]))  # |2-1|, |5-3|
    assert mase_scale(y, 7, 1) == pytest.approx(np.mean([2, 1, 3, 5]))  # NaN differences left out
    assert np.isnan(mase_scale(np.ones(5), 5, 1))  # a flat series: no scale


def test_selection_reads_validation_only():
    good_val = _cand("network", "network", 0.1, 0.9)
    good_test = _cand("classical", "classical", 0.5, 0.0)
    assert select([good_test, good_val], VAL).name == "network"


def test_ties_go_to_the_simpler_kind_then_the_name():
    rows = [_cand("z", "hybrid", 0.3, 0), _cand("b", "naive", 0.3, 0), _cand("a", "naive", 0.3, 0)]
    assert [c.name for c in rank(rows, VAL)] == ["a", "b", "z"]
    broken = Candidate("nan", "classical", VAL * np.nan, TEST)
    assert rank([broken, rows[0]], VAL)[-1].name == "nan"


def _noise_reference(first: np.ndarray, second: np.ndarray, y: np.ndarray) -> float:
    """A plain loop: every H-th window's MAE difference, its standard error."""
    horizon = y.shape[1]
    diffs = []
    for origin in range(0, y.shape[0], horizon):
        diffs.append(
            np.mean(np.abs(second[origin] - y[origin])) - np.mean(np.abs(first[origin] - y[origin]))
        )
    return float(np.std(diffs, ddof=1) / np.sqrt(len(diffs))) if len(diffs) > 1 else 0.0


def test_margin_noise_uses_non_overlapping_windows():
    rng = np.random.default_rng(3)
    y = rng.normal(size=(11, 3))
    a, b = y + rng.normal(size=y.shape), y + rng.normal(size=y.shape)
    got = margin_noise(Candidate("a", "network", a, y), Candidate("b", "ensemble", b, y), y)
    assert got == pytest.approx(_noise_reference(a, b, y))  # windows 0, 3, 6, 9
    one = slice(0, 2)  # with a horizon of 3, one window only: no noise estimate
    assert (
        margin_noise(
            Candidate("a", "network", a[one], y[one]),
            Candidate("b", "ensemble", b[one], y[one]),
            y[one],
        )
        == 0.0
    )


def test_the_ensemble_is_deployed_unless_beaten_beyond_the_noise():
    y = np.zeros((8, 1))
    steady = Candidate("steady", "network", np.full((8, 1), 0.2), y)
    noisy = Candidate("noisy", "classical", np.array([[-0.2], [0.9]] * 4), y)
    combined = ensemble([steady, noisy], y)
    assert combined is not None
    # steady leads the ensemble (0.2 against 0.275) but the windows disagree a lot:
    lead = np.abs(combined.val).mean() - 0.2
    noise = margin_noise(steady, combined, y)
    assert 0 < lead <= noise
    assert select([steady, noisy, combined], y) is combined
    assert rank([steady, noisy, combined], y)[0] is steady  # the old rule's choice
    # a lead beyond the noise deploys the single row
    sharp = Candidate("sharp", "network", np.zeros((8, 1)), y)
    combined = ensemble([sharp, noisy], y)
    assert combined is not None and select([sharp, noisy, combined], y) is sharp
    # without an ensemble among the candidates, the lowest validation MAE
    assert select([steady, noisy], y) is steady


def test_the_ensemble_is_the_mean_of_the_best_three_on_validation():
    rows = [_cand(str(k), "classical", 0.1 * (k + 1), 0.2 * k) for k in range(5)]
    combined = ensemble(rows[::-1], VAL)
    assert (
        combined is not None and combined.parts == ("0", "1", "2") and combined.kind == "ensemble"
    )
    np.testing.assert_allclose(combined.val, VAL + 0.2)
    np.testing.assert_allclose(combined.test, TEST + 0.2)
    assert ensemble(rows[:1], VAL) is None


def test_the_verdict_compares_the_selected_row_with_every_row_naive_included():
    def row(name, kind, val_mae, test_mae, mase):
        return Row(name, kind, Metrics(val_mae, 0.0, 0.0, 0.0), Metrics(test_mae, 0.0, mase, 0.0))

    rows = [
        row("hybrid", "hybrid", 1.0, 2.0, 1.1),
        row("seasonal naive", "naive", 1.5, 1.8, 1.0),
        row("ETS", "classical", 1.2, 2.5, 1.3),
    ]
    summary = Selection({r.name: r for r in rows}, "hybrid", None, [], {})
    text = selection_verdict(summary)
    assert "**hybrid**, a hybrid row" in text and "beats 1 of the other 2 rows" in text
    assert (
        "ahead of it: seasonal naive (1.800)" in text
        and "Best row on test, known only after the choice: seasonal naive" in text
    )


def test_forecasts_csv_holds_every_row_origin_and_step(tmp_path):
    data = DataConfig(val_steps=60, test_steps=60)
    prepared = prepare(load_embedded(), data)
    val, test = truth(prepared.series, prepared.val), truth(prepared.series, prepared.test)
    rows = [
        Candidate("perfect", "network", val, test),
        Candidate("off", "naive", val + 1, test - 2),
    ]
    path = tmp_path / "forecasts.csv"
    write_forecasts_csv(path, prepared, rows)
    with path.open() as handle:
        lines = list(csv.DictReader(handle))
    assert len(lines) == 2 * (val.size + test.size)
    origins = prepared.test.origins.tolist()
    labels = prepared.series.labels
    off_test = [r for r in lines if r["row"] == "off" and r["split"] == "test"]
    assert [int(r["origin_row"]) for r in off_test[:: data.horizon]] == origins
    for r in off_test[:30]:
        t, h = int(r["origin_row"]), int(r["step"])
        assert r["origin"] == labels[t] and r["time"] == labels[t + h]
        assert float(r["actual"]) == prepared.series.values[t + h]
        assert float(r["forecast"]) == pytest.approx(prepared.series.values[t + h] - 2)
