"""rnnfuse.app.results: the demo's results as types, their results.json form and their checks."""

from __future__ import annotations

import json
import pickle
import re

import numpy as np
import pytest

from rnnfuse.app.results import (
    KINDS,
    BaseChoice,
    BaselineRow,
    ClassicalFit,
    Errors,
    Metrics,
    NetworkRun,
    RefitRun,
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


def test_baseline_rows_keep_the_results_json_order_per_kind():
    errors = Errors(1.0, 2.0, [1.0])
    naive = BaselineRow("naive", 0.0, None, errors, errors, val_forecast=[[1.0]])
    assert list(naive.to_json()) == ["val", "test", "kind", "seconds", "error"]
    fitted = BaselineRow("classical", 2.5, None, errors, errors, {"K": 2}, [[1.0]], [[2.0]])
    assert list(fitted.to_json()) == ["kind", "seconds", "error", "details", "val", "test"]
    failed = BaselineRow("classical", 0.1, "boom", details={})
    assert failed.to_json() == {"kind": "classical", "seconds": 0.1, "error": "boom", "details": {}}
    assert not failed.fitted and fitted.fitted


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
