"""rnnfuse.app.plots: the series' own name and units, its time axis, legends clear of the lines."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from rnnfuse.app.config import DataConfig
from rnnfuse.app.data import load_csv, load_embedded
from rnnfuse.app.plots import error_by_step_figure, forecasts_figure, training_curves_figure
from rnnfuse.app.results import MeanErrors, ModelRow, SeedErrors
from rnnfuse.app.windows import prepare

SMALL = DataConfig(
    local_steps=4,
    global_blocks=3,
    block=2,
    min_global_blocks=2,
    horizon=3,
    period=4,
    val_steps=9,
    test_steps=9,
)


def _runs(prepared, names=("concat", "sum", "zoph-knight", "local")):
    truth = prepared.series.values[
        prepared.test.origins.numpy()[:, None] + np.arange(1, prepared.test.targets.shape[1] + 1)
    ]
    h = truth.shape[1]
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_mae": 2.0 / e} for e in (1, 2, 3)]
    forecast = (truth + 0.1).tolist()
    return [
        ModelRow(
            name=n,
            decoder="LSTM 8 (direct)",
            params=100,
            seconds=1.0,
            seeds=[0],
            val=MeanErrors(0.1, 0.1),
            test=SeedErrors(0.1, 0.1, 0.0, [0.1], [0.1] * h),
            history=history,
            test_forecast=forecast,
            val_forecast_mean=forecast,
            test_forecast_mean=forecast,
        )
        for n in names
    ]


def _legend_is_clear_of_the_panels(fig):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.axison:
                assert not box.overlaps(ax.get_window_extent(renderer)), "the legend covers a panel"


def test_a_csv_series_is_named_by_its_column_and_file_with_whole_steps(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text(
        "t,sold\n" + "\n".join(f"{i},{10 + (i % 4) + 0.1 * i}" for i in range(1, 61)) + "\n"
    )
    prepared = prepare(load_csv(path, "sold", "t"), SMALL)
    runs = _runs(prepared)
    fig = forecasts_figure(prepared, runs, np.asarray(runs[0].test_forecast), "DHR")
    assert fig.get_suptitle() == "sold: 3-step forecasts on the held-out test stretch (sales.csv)"
    assert fig.get_supylabel() == "sold"  # no units known: none invented
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time" and all(float(t).is_integer() for t in ax.get_xticks())
    _legend_is_clear_of_the_panels(fig)
    for figure in (
        training_curves_figure(runs, {"DHR": 0.5}),
        error_by_step_figure(runs, {"DHR": [0.5] * 3}),
    ):
        labels = " ".join(ax.get_ylabel() for ax in figure.axes)
        assert "ppm" not in labels and "series units" in labels
        _legend_is_clear_of_the_panels(figure)


def test_the_embedded_series_keeps_ppm_and_dates():
    series = load_embedded()
    prepared = prepare(series, DataConfig())
    runs = _runs(prepared, names=("concat",))
    fig = forecasts_figure(prepared, runs, np.asarray(runs[0].test_forecast))
    assert fig.get_supylabel() == "co2 (ppm)" and "(co2.csv)" in fig.get_suptitle()
    assert np.issubdtype(np.asarray(fig.axes[0].lines[0].get_xdata()).dtype, np.datetime64)
    _legend_is_clear_of_the_panels(fig)
    assert (
        "test MAE (ppm)" in error_by_step_figure(runs, {}, units=series.units).axes[0].get_ylabel()
    )
