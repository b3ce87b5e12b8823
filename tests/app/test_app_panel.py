"""rnnfuse.app.panel: several series in one long-format CSV file (unique_id, ds, y)."""

from __future__ import annotations

import numpy as np
import pytest

from rnnfuse.app.data import DataError
from rnnfuse.app.panel import load_panel


def _write(tmp_path, text, name="panel.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_long_format_file_gives_one_series_per_id_in_order_of_appearance(tmp_path):
    rows = ["unique_id,ds,y"]
    rows += [f"H2,1990-{3 * q + 1:02d}-01,{q}" for q in range(4)]
    rows += [
        f"H1,1991-{3 * q + 1:02d}-01,{10 + q}" for q in range(4) if q != 2
    ]  # a missing quarter
    rows += ["", "H2,1991-01-01,4"]  # an empty line; a series' rows need not be contiguous
    panel = load_panel(_write(tmp_path, "\n".join(rows) + "\n"))
    assert [s.source.rsplit("=", 1)[1] for s in panel] == ["H2]", "H1]"]
    h2, h1 = panel
    assert (
        h2.values.tolist() == [0, 1, 2, 3, 4]
        and h2.labels[-1] == "1991-01-01"
        and h2.step == "3 months"
    )
    assert h1.inserted == 1 and h1.labels[2] == "1991-07-01" and np.isclose(h1.values[2], 12.0)
    assert h1.source.endswith("panel.csv [unique_id=H1]")


def test_other_column_names_and_covariates(tmp_path):
    text = "store,when,sales,price\n" + "".join(
        f"{s},{t},{t * 2},{t + 0.5}\n" for s in ("a", "b") for t in range(1, 9)
    )
    panel = load_panel(_write(tmp_path, text), "sales", "when", "store", covariates=["price"])
    assert (
        len(panel) == 2
        and panel[1].covariates is not None
        and panel[1].covariates[:, 0].tolist() == [t + 0.5 for t in range(1, 9)]
    )


def test_panel_errors_name_the_file_the_series_and_the_line(tmp_path):
    path = _write(
        tmp_path, "unique_id,ds,y\na,2000-01-01,1\na,2000-01-02,2\nb,2000-01-01,1\nb,1999-12-31,2\n"
    )
    with pytest.raises(
        DataError,
        match=rf"{path}, line 5, column 'ds': times must increase.*\(series unique_id=b\)",
    ):
        load_panel(path)
    path = _write(
        tmp_path,
        "unique_id,ds,y\na,2000-01-01,1\na,2000-02-01,2\na,2000-03-01,3\n"
        "b,2000-01-01,1\nb,2000-01-02,2\nb,2000-01-03,3\n",
        "mixed.csv",
    )
    with pytest.raises(
        DataError,
        match=rf"{path}: the series differ in frequency: unique_id 'b' has times of \(date, 1 day\), "
        r"unique_id 'a' of \(date, 1 month\); expected one frequency",
    ):
        load_panel(path)
    path = _write(tmp_path, "id,ds,y\na,2000-01-01,1\n", "noid.csv")
    with pytest.raises(
        DataError,
        match=rf"{path}, line 1: no column 'unique_id' \(--id-column\); the header has \['id', 'ds', 'y'\]",
    ):
        load_panel(path)
    path = _write(tmp_path, "unique_id,ds,y\na,2000-01-01,1\n,2000-01-02,2\n", "blank.csv")
    with pytest.raises(
        DataError,
        match=rf"{path}, line 3, column 'unique_id': expected the name of the row's series, got an empty cell",
    ):
        load_panel(path)
    path = _write(tmp_path, "unique_id,ds,y\na,2000-01-01,NA\nb,2000-01-01,1\n", "empty.csv")
    with pytest.raises(
        DataError, match=rf"{path}, column 'y': every value is missing \(series unique_id=a\)"
    ):
        load_panel(path)
