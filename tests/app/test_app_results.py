"""rnnfuse.app.results: the demo's results as types, their results.json form and their checks."""

from __future__ import annotations

import json
import pickle
import re
import statistics

import numpy as np
import pytest

from rnnfuse.app.demo import _aggregate
from rnnfuse.app.results import (
    KINDS,
    BaseChoice,
    BaselineRow,
    ClassicalFit,
    DemoResults,
    Errors,
    Metrics,
    NetworkRun,
    RefitRun,
    Refitted,
    Row,
    Selection,
    check_kind,
)
from rnnfuse.app.selection import Candidate


def _run(seed, val_mae, test_mae, weight=None, refitted=None):
    return NetworkRun(
        name="zk + DHR",
        seed=seed,
        decoder="LSTM 32 (direct)",
        params=1234,
        seconds=2.0 + seed,
        history=[{"epoch": 1, "train_loss": 0.5}],
        best_step=3,
        steps=4,
        val=Errors(val_mae, val_mae + 1, [val_mae] * 2),
        test=Errors(test_mae, test_mae + 1, [test_mae, 2 * test_mae]),
        test_forecast=[[float(seed), 1.0]],
        val_forecast=[[2.0 * seed, 3.0]],
        correction_weight=weight,
        refitted=refitted,
    )


def test_errors_are_those_of_metrics_errors_and_round_trip():
    prediction, target = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    errors = Errors.of(prediction, target)
    assert errors.mae == pytest.approx(np.mean([0, 1, 2, 4]))
    assert errors.rmse == pytest.approx(np.sqrt(np.mean([0, 1, 4, 16])))
    assert errors.mae_by_step == pytest.approx([1.0, 2.5])
    assert list(errors.to_json()) == ["mae", "rmse", "mae_by_step"]
    assert Errors.from_json(json.loads(json.dumps(errors.to_json()))) == errors


def test_a_selection_row_round_trips_through_its_json_form():
    row = Row(
        "ens", "ensemble", Metrics(1.0, 2.0, 0.5, 9.0), Metrics(1.5, 2.5, 0.7, 8.0), ("a", "b")
    )
    data = json.loads(json.dumps(row.to_json()))
    assert data == {
        "kind": "ensemble",
        "val": {"mae": 1.0, "rmse": 2.0, "mase": 0.5, "smape": 9.0},
        "test": {"mae": 1.5, "rmse": 2.5, "mase": 0.7, "smape": 8.0},
        "parts": ["a", "b"],
    }
    assert Row.from_json("ens", data) == row
    single = Row("DHR", "classical", row.val, row.test)
    assert "parts" not in single.to_json() and Row.from_json("DHR", single.to_json()) == single


@pytest.mark.parametrize("kind", ["deep", "Network", "", None, 3])
def test_kinds_are_checked_with_a_clear_error(kind):
    expected = f"Row 'x': kind: expected one of {list(KINDS)}, got {kind!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        Row("x", kind, Metrics(1, 1, 1, 1), Metrics(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"Candidate 'x': kind: expected one of \["):
        Candidate("x", kind, np.zeros((1, 1)), np.zeros((1, 1)))
    with pytest.raises(ValueError, match="BaselineRow: kind: expected 'naive' or 'classical'"):
        BaselineRow(kind, 0.0)
    assert [check_kind(k, "here") for k in KINDS] == list(KINDS)


def test_the_selected_row_must_be_one_of_the_rows():
    row = Row("a", "naive", Metrics(1, 1, 1, 1), Metrics(1, 1, 1, 1))
    with pytest.raises(
        ValueError, match=r"Selection: selected: expected one of the rows \['a'\], got 'b'"
    ):
        Selection({"a": row}, "b", None, [], {})


def test_a_model_row_is_the_seeds_summed_up_in_the_results_json_order():
    """Two refitted hybrid seeds → the means, spread and per-seed values, keys in the order
    results.json has them (the forecasts left out)."""
    runs = [
        _run(1, 0.3, 0.6, 0.5, Refitted(Errors(0.9, 1.9, [0.9]), 1.0, 40)),
        _run(0, 0.1, 0.2, 0.0, Refitted(Errors(0.7, 1.7, [0.7]), 3.0, 40)),
    ]
    row = _aggregate(runs)
    assert (row.kind, row.label, row.refit) == ("hybrid", "zk + DHR (refit)", True)
    assert row.test_forecast == [[0.0, 1.0]] and row.val_forecast_mean == [[1.0, 3.0]]
    expected = {
        "name": "zk + DHR",
        "decoder": "LSTM 32 (direct)",
        "params": 1234,
        "seconds": statistics.fmean([2.0 + 3.0, 3.0 + 1.0]),
        "seeds": [0, 1],
        "val": {"mae": pytest.approx(0.2), "rmse": pytest.approx(1.2)},
        "test": {
            "mae": pytest.approx(0.4),
            "rmse": pytest.approx(1.4),
            "mae_std": pytest.approx(0.2),
            "mae_per_seed": [0.2, 0.6],
            "mae_by_step": [pytest.approx(0.4), pytest.approx(0.8)],
        },
        "history": [{"epoch": 1, "train_loss": 0.5}],
        "refit": True,
        "correction_weights": [0.0, 0.5],
        "test_without_refit": {
            "mae": pytest.approx(0.8),
            "mae_std": pytest.approx(0.1),
            "mae_per_seed": [0.7, 0.9],
            "rmse": pytest.approx(1.8),
        },
        "refit_seconds": 2.0,
        "refit_windows": 40,
    }
    assert row.to_json() == expected and list(row.to_json()) == list(expected)
    plain = _aggregate([_run(0, 0.1, 0.2)])
    assert (plain.kind, plain.label, plain.refit) == ("network", "zk + DHR", False)
    assert list(plain.to_json())[-2:] == ["history", "refit"]


def test_baseline_rows_keep_the_results_json_order_per_kind():
    errors = Errors(1.0, 2.0, [1.0])
    naive = BaselineRow("naive", 0.0, None, errors, errors, val_forecast=[[1.0]])
    assert list(naive.to_json()) == ["val", "test", "kind", "seconds", "error"]
    fitted = BaselineRow("classical", 2.5, None, errors, errors, {"K": 2}, [[1.0]], [[2.0]])
    assert list(fitted.to_json()) == ["kind", "seconds", "error", "details", "val", "test"]
    failed = BaselineRow("classical", 0.1, "boom", details={})
    assert failed.to_json() == {"kind": "classical", "seconds": 0.1, "error": "boom", "details": {}}
    assert not failed.fitted and fitted.fitted


def test_the_demo_results_json_has_its_keys_in_order_and_no_forecasts():
    errors = Errors(1.0, 2.0, [1.0])
    metrics = Metrics(1.0, 2.0, 0.5, 3.0)
    model = _aggregate([_run(0, 0.1, 0.2)])
    selection = Selection(
        {"DHR": Row("DHR", "classical", metrics, metrics)},
        "DHR",
        None,
        ["2001-01-01"],
        {"val": 1.0, "test": 1.1},
        [Candidate("DHR", "classical", np.zeros((1, 1)), np.zeros((1, 1)))],
    )
    results = DemoResults(
        data="data",
        budget="300 optimizer steps",
        seeds=[0],
        jobs=1,
        threads_per_job=1,
        models=[model],
        baselines={
            "DHR": BaselineRow("classical", 1.0, None, errors, errors, {}, [[1.0]], [[2.0]])
        },
        winner=model.name,
        runner_up=None,
        cpu_count=2,
        period=12.0,
        best_classical="DHR",
        covariates=[],
        stop_steps=0,
        hybrid_base=None,
        refit="hybrids",
        refit_windows=30,
        selection=selection,
        wall_seconds=5.0,
    )
    data = results.to_json()
    assert list(data) == [
        "data",
        "budget",
        "seeds",
        "jobs",
        "threads_per_job",
        "models",
        "baselines",
        "winner",
        "runner_up",
        "cpu_count",
        "period",
        "best_classical",
        "covariates",
        "stop_steps",
        "hybrid_base",
        "refit",
        "refit_windows",
        "rows",
        "selected",
        "ensemble",
        "test_origins",
        "mase_scale",
        "wall_seconds",
    ]
    text = json.dumps(data)
    assert "forecast" not in text and json.loads(text)["rows"]["DHR"]["kind"] == "classical"


def test_what_workers_return_survives_pickling():
    fit = ClassicalFit("DHR", {"val": np.ones((2, 3))}, {"K": 2}, None, 1.0)
    for value in (
        _run(0, 0.1, 0.2, 0.5),
        RefitRun("local", 0, 1.0, 30, 2, [[1.0]]),
        fit,
        BaseChoice("DHR", ("DHR",), {"DHR": 0.1}),
    ):
        back = pickle.loads(pickle.dumps(value))
        assert type(back) is type(value) and repr(back) == repr(value)
    assert BaseChoice("", (), {}).to_json() == {"val_mae": {}, "chosen": None}
