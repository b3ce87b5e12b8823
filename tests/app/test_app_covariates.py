"""Covariates: other columns the encoders read beside the series (loading, the embedded Nino 1+2
anomaly, windows without look-ahead, the model's inputs, train -> predict, flags)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from rnnfuse.app.config import ConfigError, DataConfig, RunConfig
from rnnfuse.app.data import DataError, load_csv, load_embedded
from rnnfuse.app.model import ENCODER_FEATURES, build_model
from rnnfuse.app.windows import fit_covariates, make_windows, prepare
from rnnfuse.cli import main

pytestmark = pytest.mark.slow  # trains forecasters, train -> predict

SMALL = DataConfig(
    local_steps=4,
    global_blocks=3,
    block=2,
    min_global_blocks=2,
    horizon=3,
    period=4,
    val_steps=6,
    test_steps=6,
    covariates=("x", "z"),
)
TINY = ["--local-sizes", "6", "--global-sizes", "6", "--no-progress"]


def _write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _table(n, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(
        np.round(a, 6)
        for a in (np.cumsum(rng.normal(size=n)), rng.normal(size=n), rng.normal(size=n))
    )


def _csv(tmp_path, n=40, seed=0):
    y, x, z = _table(n, seed)
    lines = [
        "t,y,x,z",
        *(f"{i},{a:.6f},{b:.6f},{c:.6f}" for i, (a, b, c) in enumerate(zip(y, x, z))),
    ]
    return _write(tmp_path, "\n".join(lines) + "\n"), y, x, z


def test_covariate_columns_are_read_gridded_and_filled_forward(tmp_path):
    path = _write(tmp_path, "t,v,x,w\n1,1,10,7\n2,2,,7\n3,3,30,7\n5,5,NA,7\n6,6,60,7\n")
    series = load_csv(path, "v", "t", ["x", "w"])
    assert series.covariate_names == ("x", "w")
    assert series.values.tolist() == [1, 2, 3, 4, 5, 6]  # t=4 absent: a missing step, filled
    # a missing covariate cell (and the absent step) takes the last value known before it
    np.testing.assert_array_equal(series.covariates[:, 0], [10, 10, 30, 30, 30, 60])
    np.testing.assert_array_equal(series.covariates[:, 1], [7, 7, 7, 7, 7, 7])
    assert "covariates x, w" in series.describe()
    first = load_csv(_write(tmp_path, "v,x\n1,\n2,\n3,5\n", "lead.csv"), "v", None, ["x"])
    np.testing.assert_array_equal(
        first.covariates[:, 0], [5, 5, 5]
    )  # before any value: the first one
    plain = load_csv(path, "v", "t")
    assert plain.covariates is None and plain.covariate_names == ()


def test_bad_covariate_columns_name_the_file_line_and_column(tmp_path):
    path = _write(tmp_path, "t,v,x\n1,1,2\n2,2,abc\n")
    with pytest.raises(DataError, match=rf"{path}, line 1: no column 'q' \(--covariates\)"):
        load_csv(path, "v", "t", ["q"])
    with pytest.raises(DataError, match=rf"{path}, line 3, column 'x': expected a number"):
        load_csv(path, "v", "t", ["x"])
    empty = _write(tmp_path, "v,x\n1,\n2,NA\n", "empty.csv")
    with pytest.raises(DataError, match=r"column 'x' \(--covariates\): no value"):
        load_csv(empty, "v", None, ["x"])
    short = _write(tmp_path, "v,x\n1,2\n3\n", "short.csv")
    with pytest.raises(DataError, match=r"line 3: expected at least 2 fields"):
        load_csv(short, "v", None, ["x"])
    with pytest.raises(
        DataError, match=r"the embedded series has the covariates \['nino12'\], got 'soi'"
    ):
        load_embedded(["soi"])


def test_the_embedded_nino12_is_the_lagged_anomaly_of_the_statsmodels_table():
    pd = pytest.importorskip("pandas")
    elnino = pytest.importorskip("statsmodels.datasets.elnino")
    table = elnino.load_pandas().data
    months = table.set_index("YEAR").stack()
    climatology = table[(table.YEAR >= 1950) & (table.YEAR <= 1979)].drop(columns="YEAR").mean()
    series = load_embedded(["nino12"])
    assert series.covariate_names == ("nino12",) and series.covariates.shape == (len(series), 1)
    for i in (
        0,
        500,
        2075,
        2076,
        2283,
    ):  # the first week, one inside, the last before test, the first of test, the last
        week = pd.Timestamp(series.labels[i])
        seen = week.to_period("M") - 2  # the month two before the week's month
        name = seen.strftime("%b").upper()
        expected = months[(float(seen.year), name)] - climatology[name]
        assert series.covariates[i, 0] == pytest.approx(expected, abs=1e-12), series.labels[i]
    # the 1997-98 El Nino: the covariate is large in early 1998 (Nov-Dec 1997 anomalies > 3 degrees C)
    jan98 = [i for i, label in enumerate(series.labels) if label.startswith("199801")]
    assert series.covariates[jan98, 0].min() > 3
    assert load_embedded().covariates is None


def test_windows_read_the_standardised_covariates_up_to_the_origin_only(tmp_path):
    path, y, x, z = _csv(tmp_path)
    series = load_csv(path, "y", "t", ["x", "z"])
    prepared = prepare(series, SMALL)
    norm = prepared.covariate_norm
    rows = np.column_stack([x, z])[: prepared.splits.train.max() + 1]
    np.testing.assert_allclose(norm.mean, rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(norm.std, rows.std(axis=0), rtol=1e-6)
    w = prepared.test
    t = int(w.origins[0])
    standard = (np.column_stack([x, z]) - rows.mean(axis=0)) / rows.std(axis=0)
    assert w.local.shape[-1] == ENCODER_FEATURES + 2 and w.global_.shape[-1] == ENCODER_FEATURES + 2
    np.testing.assert_allclose(
        w.local[0, :, 3:].numpy(), standard[t - 3 : t + 1], rtol=1e-5, atol=1e-6
    )
    count = int(w.global_len[0])
    last_block = standard[t - 1 : t + 1].mean(axis=0)  # blocks of 2 steps ending at the origin
    np.testing.assert_allclose(
        w.global_[0, count - 1, 3:].numpy(), last_block, rtol=1e-5, atol=1e-6
    )
    # no look-ahead: changing every covariate after the origin leaves its windows unchanged
    later = replace(
        series, covariates=np.where(np.arange(len(series))[:, None] > t, 99.0, series.covariates)
    )
    again = make_windows(later, w.origins[:1].numpy(), SMALL, prepared.scale, covariate_norm=norm)
    assert np.array_equal(again.local.numpy(), w.local[:1].numpy()) and np.array_equal(
        again.global_.numpy(), w.global_[:1].numpy()
    )
    # ... while changing one at the origin changes them
    at = replace(
        series, covariates=np.where(np.arange(len(series))[:, None] == t, 99.0, series.covariates)
    )
    assert not np.array_equal(
        make_windows(
            at, w.origins[:1].numpy(), SMALL, prepared.scale, covariate_norm=norm
        ).local.numpy(),
        w.local[:1].numpy(),
    )


def test_covariate_norm_uses_training_rows_and_mismatches_are_errors(tmp_path):
    path, _, x, _ = _csv(tmp_path)
    series = load_csv(path, "y", "t", ["x", "z"])
    norm = fit_covariates(series, np.array([5, 9]))
    assert norm.mean[0] == pytest.approx(x[:10].mean())
    constant = replace(series, covariates=np.ones_like(series.covariates))
    assert fit_covariates(constant, np.array([9])).std == (
        1.0,
        1.0,
    )  # a constant column is not divided by zero
    with pytest.raises(DataError, match=r"expected the covariates \['x', 'z'\], got \[\]"):
        make_windows(load_csv(path, "y", "t"), np.array([10]), SMALL, 1.0, covariate_norm=norm)
    with pytest.raises(ValueError, match="covariate_norm: expected one mean and std per covariate"):
        make_windows(series, np.array([10]), SMALL, 1.0)


def test_the_encoders_take_one_input_per_covariate():
    model = build_model(RunConfig().model, 1, 2)
    for encoder in model.encoders.encoders.values():
        assert encoder.input_size == ENCODER_FEATURES + 2
    assert model.decoder.input_size == 1 + 2 + 1


def test_covariates_config_flags_and_errors():
    from rnnfuse.app.config import parse_names

    assert parse_names("nino12, soi") == ("nino12", "soi") and parse_names(
        "none"
    ) == () == parse_names("")
    with pytest.raises(Exception, match="comma-separated column names"):
        parse_names("a,,b")
    config = RunConfig(data=DataConfig(covariates=("nino12",)))
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for bad, message in (
        (("a", "a"), "distinct"),
        (("co2",), "the series' own column"),
        (("date",), "time column"),
        (("",), "column names"),
        ("nino12", "list of at most"),
    ):
        with pytest.raises(ConfigError, match=message):
            RunConfig.from_dict({"data": {"covariates": bad}}) if isinstance(
                bad, str
            ) else RunConfig.from_dict({"data": {"covariates": list(bad)}})


def _leading_csv(tmp_path, n=520, period=52):
    """A seasonal series whose growth follows a covariate 3 steps earlier (known at its row)."""
    rng = np.random.default_rng(3)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = 0.9 * x[i - 1] + rng.normal()
    growth = 0.4 * np.r_[np.zeros(3), x[:-3]]
    y = (
        100
        + np.cumsum(growth)
        + 2 * np.sin(2 * np.pi * np.arange(n) / period)
        + rng.normal(scale=0.2, size=n)
    )
    path = tmp_path / "lead.csv"
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["step", "level", "driver"])
        out.writerows([i, f"{a:.5f}", f"{b:.5f}"] for i, (a, b) in enumerate(zip(y, x)))
    return path


def test_train_with_a_covariate_then_predict(tmp_path, capsys):
    data = _leading_csv(tmp_path)
    run = tmp_path / "run"
    flags = [
        "--csv",
        str(data),
        "--column",
        "level",
        "--time-column",
        "step",
        "--period",
        "52",
        "--val-steps",
        "60",
        "--test-steps",
        "60",
        "--horizon",
        "6",
        "--epochs",
        "1",
        *TINY,
    ]
    assert main(["train", "--out", str(run), *flags, "--covariates", "driver"]) == 0, (
        capsys.readouterr().err
    )
    assert "covariates driver" in capsys.readouterr().out
    meta = json.loads((run / "config.json").read_text())
    assert meta["data"]["covariates"] == ["driver"]
    target = tmp_path / "forecast.csv"
    assert main(["predict", "--model", str(run), "--csv", str(data), "--output", str(target)]) == 0
    capsys.readouterr()
    assert len(list(csv.DictReader(target.read_text().splitlines()))) == 6
    # a file without the covariate: a one-line error naming it
    plain = tmp_path / "plain.csv"
    plain.write_text(
        "\n".join(line.rsplit(",", 1)[0] for line in data.read_text().splitlines()) + "\n"
    )
    code = main(["predict", "--model", str(run), "--csv", str(plain)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and "no column 'driver' (--covariates)" in err
        and len(err.strip().splitlines()) == 1
    )
    # the covariate changes the forecast: it is read
    moved = tmp_path / "moved.csv"
    lines = data.read_text().splitlines()
    head, last = lines[:-1], lines[-1].rsplit(",", 1)
    moved.write_text("\n".join([*head, f"{last[0]},{float(last[1]) + 5:.5f}"]) + "\n")
    assert (
        main(
            [
                "predict",
                "--model",
                str(run),
                "--csv",
                str(moved),
                "--output",
                str(tmp_path / "moved_forecast.csv"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    before = [float(r["level"]) for r in csv.DictReader(target.read_text().splitlines())]
    after = [
        float(r["level"])
        for r in csv.DictReader((tmp_path / "moved_forecast.csv").read_text().splitlines())
    ]
    assert before != after


def test_the_demo_reads_the_embedded_covariate_unless_told_otherwise(tmp_path):
    from rnnfuse.app.demo_data import demo_data

    assert demo_data({}, None)[0].covariates == ("nino12",)
    assert demo_data({"covariates": ()}, None)[0].covariates == ()
    path, *_ = _csv(tmp_path, n=400)
    given = {"csv": str(path), "column": "y", "time_column": "t"}
    assert demo_data(given, 52.0)[0].covariates == ()
    assert demo_data({**given, "covariates": ("x",)}, 52.0)[0].covariates == ("x",)


@pytest.mark.parametrize(
    "norm",
    [
        None,
        {"mean": [0.0], "std": [0.0]},
        {"mean": [0.0, 1.0], "std": [1.0, 1.0]},
        {"mean": ["a"], "std": [1.0]},
        [1, 2],
    ],
)
def test_a_model_file_with_a_bad_covariate_standardisation_is_refused(tmp_path, capsys, norm):
    from rnnfuse.app.checkpoint import load_model_file, save_model_file
    from rnnfuse.app.training import Trainer

    data = _leading_csv(tmp_path, n=300)
    config = RunConfig(
        data=DataConfig(
            csv=str(data),
            column="level",
            time_column="step",
            period=52,
            val_steps=40,
            test_steps=40,
            horizon=6,
            covariates=("driver",),
        )
    )
    trainer = Trainer(config, None, log=lambda _m: None, show_progress=False)
    meta = trainer.model_metadata()
    assert meta["covariates"] == {
        "mean": list(trainer.data.covariate_norm.mean),
        "std": list(trainer.data.covariate_norm.std),
    }
    good = tmp_path / "good.safetensors"
    save_model_file(good, trainer.model.state_dict(), meta)
    tensors, meta = load_model_file(good)
    if norm is None:
        del meta["covariates"]
    else:
        meta["covariates"] = norm
    bad = tmp_path / "bad.safetensors"
    save_model_file(bad, tensors, meta)
    assert main(["predict", "--model", str(good), "--csv", str(data)]) == 0
    capsys.readouterr()
    code = main(["predict", "--model", str(bad), "--csv", str(data)])
    err = capsys.readouterr().err
    assert (
        code == 2
        and "expected the metadata's covariates as" in err
        and len(err.strip().splitlines()) == 1
    )


def test_demo_with_a_covariate_end_to_end(tmp_path, capsys):
    """`rnnfuse demo --covariates` on a series whose growth follows a covariate: the networks read it
    (their encoders take one more input), DHR and SARIMA regress on it and beat themselves without it."""
    data = _leading_csv(tmp_path, n=240, period=12)
    flags = [
        "demo",
        "--csv",
        str(data),
        "--column",
        "level",
        "--time-column",
        "step",
        "--period",
        "12",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--fusions",
        "local",
        "--jobs",
        "1",
        "--baselines",
        "dhr,ets,sarima",
        "--refit",
        "none",
    ]
    results = {}
    for name, extra in (("with", ["--covariates", "driver"]), ("without", [])):
        assert main([*flags, *extra, "--out", str(tmp_path / name)]) == 0
        results[name] = (
            capsys.readouterr().out,
            json.loads((tmp_path / name / "results.json").read_text()),
        )
    printed, got = results["with"]
    assert got["covariates"] == ["driver"] and results["without"][1]["covariates"] == []
    protocol = (
        tmp_path / "with" / "results.md"
    ).read_text()  # the protocol goes to results.md, not the terminal
    assert (
        "Covariates (driver; a row's value known at its time)" in protocol
        and "covariates driver" in printed
    )
    assert "Covariates (" not in printed
    assert (
        "| DHR (trend + K=" in printed
        and "+ covariate regressors, ARIMA(1,1,1) errors) |" in printed
    )
    assert "| SARIMA(0,1,1)(0,1,1)12 + covariate regressors |" in printed
    plain = results["without"][1]["baselines"]
    for label in ("DHR", "SARIMA"):
        with_it = next(b for n, b in got["baselines"].items() if n.startswith(label))
        without = next(b for n, b in plain.items() if n.startswith(label))
        assert with_it["test"]["mae"] < without["test"]["mae"], label
    assert "Covariates" not in results["without"][0]
