"""The `rnnfuse demo`, `train` and `predict` commands, end to end on small real runs."""

from __future__ import annotations

import csv
import datetime as dt
import json
from importlib import resources

import pytest

from rnnfuse.cli import main

pytestmark = pytest.mark.slow  # the commands end to end on real runs

TINY = ["--local-sizes", "6", "--global-sizes", "6", "--no-progress"]


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    return err


def test_bad_csv_errors_name_file_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,level\n2000-01-01,1\n2000-01-08,x1\n")
    out = str(tmp_path / "run")
    err = _error(
        capsys,
        ["train", "--out", out, "--csv", str(bad), "--column", "level", "--time-column", "when"],
    )
    assert f"{bad}, line 3, column 'level': expected a number" in err and "got 'x1'" in err
    err = _error(capsys, ["train", "--out", out, "--csv", str(bad), "--column", "co2"])
    assert f"{bad}, line 1: no column 'co2' (--column)" in err
    short = tmp_path / "short.csv"
    short.write_text("level\n" + "\n".join("1.0" for _ in range(300)) + "\n")
    err = _error(capsys, ["train", "--out", out, "--csv", str(short), "--column", "level"])
    assert f"{short}, column 'level': too short for the windows: 300 rows" in err
    assert not (tmp_path / "run" / "latest.json").exists()


def test_flag_errors(tmp_path, capsys):
    err = _error(capsys, ["train", "--out", str(tmp_path), "--column", "x"])
    assert "--column/--time-column: only with --csv" in err
    err = _error(capsys, ["train", "--out", str(tmp_path), "--csv", "f.csv"])
    assert "--csv: needs --column" in err
    err = _error(capsys, ["train", "--out", str(tmp_path), "--resume", "--lr", "0.1"])
    assert "--lr: --resume continues the run saved in" in err
    err = _error(capsys, ["demo", "--out", str(tmp_path), "--fusions", "concat,fancy"])
    assert "--fusions: expected names from" in err and "fancy" in err


def _user_csv(tmp_path):
    """The embedded series rewritten as a user file: other names, ISO dates, 'NA' gaps."""
    raw = resources.files("rnnfuse") / "data" / "co2.csv"
    rows = list(csv.DictReader(raw.read_text().splitlines()))
    path = tmp_path / "mine.csv"
    lines = ["week,ppm"]
    for r in rows:
        day = dt.datetime.strptime(r["date"], "%Y%m%d").strftime("%Y-%m-%d")
        lines.append(f"{day},{r['co2'] or 'NA'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_on_a_user_csv_then_predict(tmp_path, capsys):
    data = _user_csv(tmp_path)
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(run),
            "--csv",
            str(data),
            "--column",
            "ppm",
            "--time-column",
            "week",
            "--epochs",
            "2",
            "--horizon",
            "8",
            *TINY,
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "59 missing values filled by linear interpolation" in printed and "epoch 2/2" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["model"]["test"]["mae"] > 0 and len(metrics["model"]["test"]["mae_by_step"]) == 8
    target = tmp_path / "forecast.csv"
    assert (
        main(["predict", "--model", str(run), "--csv", str(data), "--output", str(target)]) == 0
    )  # --column from the model
    printed = capsys.readouterr().out
    assert "after its last row (2001-12-29)" in printed
    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert [r["time"] for r in rows[:2]] == ["2002-01-05", "2002-01-12"] and len(rows) == 8
    values = [float(r["ppm"]) for r in rows]
    assert all(360 < v < 385 for v in values)  # near the last observed level (371.5 ppm)
    short = tmp_path / "short.csv"
    short.write_text("ppm\n" + "\n".join(["370"] * 20) + "\n")
    err = _error(capsys, ["predict", "--model", str(run), "--csv", str(short), "--column", "ppm"])
    assert f"{short}, column 'ppm': too short to forecast from: 20 rows" in err


def test_demo_writes_table_and_figures_and_does_not_depend_on_jobs(tmp_path, capsys):
    argv = [
        "demo",
        "--fusions",
        "local,sum",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--baselines",
        "none",
    ]  # classical: test_app_baselines
    assert main([*argv, "--out", str(tmp_path / "a"), "--jobs", "1"]) == 0
    printed = capsys.readouterr().out
    for name in (
        "forecasts.png",
        "training_curves.png",
        "error_by_step.png",
        "results.md",
        "results.json",
    ):
        assert (tmp_path / "a" / name).stat().st_size > 1000 or name.endswith(("md", "json"))
    assert "| seasonal naive | - |" in printed and "| seasonal naive + drift | - |" in printed
    assert "| local | LSTM 32,32 (direct)" in printed and "| sum | LSTM 32,32 (direct)" in printed
    assert "Best row on the held-out test stretch: **" in printed
    assert "| **selected on validation: " in printed and "Selected on validation: **" in printed
    assert main([*argv, "--out", str(tmp_path / "b"), "--jobs", "2"]) == 0
    capsys.readouterr()
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    for m1, m2 in zip(first["models"], second["models"]):
        assert m1["test"] == m2["test"] and m1["val"] == m2["val"]
    assert first["selected"] == second["selected"] and first["selected"] in first["rows"]
    kinds = {name: row["kind"] for name, row in first["rows"].items()}
    assert kinds["seasonal naive"] == "naive" and kinds["local"] == kinds["sum"] == "network"
    assert all(
        set(row["test"]) == {"mae", "rmse", "mase", "smape"} for row in first["rows"].values()
    )
    lines = (tmp_path / "a" / "forecasts.csv").read_text().splitlines()
    assert lines[0] == "row,kind,split,origin,origin_row,step,time,forecast,actual"
    tested = {line.split(",")[3] for line in lines[1:] if ",test," in line}
    assert tested == set(first["test_origins"])
    assert (tmp_path / "a" / "runs" / "sum-seed0" / "best.safetensors").exists()


@pytest.mark.parametrize(
    "argv", [["--help"], ["train", "--help"], ["predict", "--help"], ["demo", "--help"]]
)
def test_help_lists_the_commands(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage: rnnfuse" in capsys.readouterr().out


def test_paths_of_the_wrong_kind_give_one_line_errors(tmp_path, capsys):
    from rnnfuse import StackedRNN, save

    a_file = tmp_path / "a.csv"
    a_file.write_text("x\n1\n")
    for extra in ([], ["--resume"]):
        err = _error(capsys, ["train", "--out", str(a_file), *extra])
        assert (
            f"--out: {a_file} is a file; expected a run directory" in err and "Traceback" not in err
        )
    err = _error(capsys, ["train", "--out", str(tmp_path / "run"), "--config", str(tmp_path)])
    assert f"{tmp_path}: cannot read the config file" in err
    stack_file = tmp_path / "stack.safetensors"
    save(StackedRNN(3, [4]), stack_file)  # an rnnfuse.save file, not a trained forecaster
    err = _error(capsys, ["predict", "--model", str(stack_file)])
    assert f"{stack_file}: not a model file written by `rnnfuse train`" in err


def test_predict_output_that_cannot_be_written_is_a_one_line_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    err = _error(capsys, ["predict", "--model", str(run), "--output", str(tmp_path)])
    assert f"--output: cannot write {tmp_path}" in err
    err = _error(
        capsys, ["predict", "--model", str(run), "--output", str(tmp_path / "no" / "f.csv")]
    )
    assert "--output: cannot write" in err


def test_damaged_run_files_give_one_line_errors(tmp_path, capsys):
    import torch

    from rnnfuse.app.checkpoint import load_model_file, save_model_file

    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", *TINY]) == 0
    capsys.readouterr()
    latest = run / "latest.json"
    good = latest.read_text()
    for text, problem in (
        ("[1]", "expected a JSON object, got list"),
        ('{"format": "rnnfuse-train/1"}', 'expected "checkpoint" to name a checkpoint directory'),
    ):
        latest.write_text(text)
        err = _error(
            capsys, ["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]
        )
        assert f"rnnfuse train: error: {latest}: {problem}" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    latest.write_text(good)

    tensors, meta = load_model_file(run / "best.safetensors")
    edited = tmp_path / "edited.safetensors"
    for key in ("config", "scale"):
        save_model_file(edited, tensors, {k: v for k, v in meta.items() if k != key})
        err = _error(capsys, ["predict", "--model", str(edited)])
        assert (
            f"{edited}: the metadata lacks ['{key}']" in err and len(err.strip().splitlines()) == 1
        )
    save_model_file(edited, tensors, {**meta, "scale": "big"})
    assert "expected a positive number as the metadata's scale, got 'big'" in _error(
        capsys, ["predict", "--model", str(edited)]
    )
    wrong = dict(tensors)
    wrong["head.weight"] = torch.zeros(2, *tensors["head.weight"].shape[1:])
    wrong.pop("head.bias")
    wrong["extra"] = torch.zeros(1)
    save_model_file(edited, wrong, meta)
    err = _error(capsys, ["predict", "--model", str(edited)])
    assert (
        f"{str(edited)!r} does not match its configuration" in err
        and len(err.strip().splitlines()) == 1
    )
    assert "missing: ['head.bias']" in err and "unexpected: ['extra']" in err
    assert f"head.weight: expected {list(tensors['head.weight'].shape)}, got [2, " in err


def _quarterly_csv(tmp_path, quarters=120, absent=50):
    """Quarter-end dates (1960-03-31, 1960-06-30, ...) with one quarter left out."""
    ends = ("03-31", "06-30", "09-30", "12-31")
    rows = [
        f"{1960 + i // 4}-{ends[i % 4]},{10 + 0.1 * i + (i % 4) + 0.3 * ((i * 7) % 5):.3f}"
        for i in range(quarters)
    ]
    path = tmp_path / "quarterly.csv"
    path.write_text("ds,y\n" + "\n".join(r for i, r in enumerate(rows) if i != absent) + "\n")
    return path


@pytest.mark.slow
def test_demo_on_quarterly_dates_with_a_horizon_past_the_period_then_predict(tmp_path, capsys):
    data = _quarterly_csv(tmp_path)
    out = tmp_path / "demo"
    argv = [
        "demo",
        "--csv",
        str(data),
        "--column",
        "y",
        "--time-column",
        "ds",
        "--horizon",
        "6",
        "--covariates",
        "none",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--fusions",
        "concat",
        "--jobs",
        "1",
        "--baselines",
        "none",
        "--hybrids",
        "none",
    ]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert (
        "1 of them absent time steps (step 3 months)" in printed
        and "seasonal period 4 steps" in printed
    )
    results = json.loads((out / "results.json").read_text())
    assert len(results["models"][0]["test"]["mae_by_step"]) == 6
    target = tmp_path / "forecast.csv"
    assert (
        main(
            [
                "predict",
                "--model",
                str(out / "runs" / "concat-seed0"),
                "--csv",
                str(data),
                "--output",
                str(target),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(target.read_text().splitlines()))
    assert [r["time"] for r in rows] == [
        "1990-03-31",
        "1990-06-30",
        "1990-09-30",
        "1990-12-31",
        "1991-03-31",
        "1991-06-30",
    ]


def test_demo_and_predict_without_decoder_feedback(tmp_path, capsys):
    data = _quarterly_csv(tmp_path)
    out = tmp_path / "demo"
    argv = ["demo", "--csv", str(data), "--column", "y", "--time-column", "ds", "--horizon", "6"]
    argv += ["--covariates", "none", "--epochs", "1", "--seeds", "1", "--fusions", "concat"]
    argv += ["--jobs", "1", "--baselines", "none", "--hybrids", "none", "--no-decoder-feedback"]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    results = json.loads((out / "results.json").read_text())
    assert results["models"][0]["decoder"] == "LSTM 64,64 (direct, no feedback)"
    run = out / "runs" / "concat-seed0"
    assert json.loads((run / "config.json").read_text())["model"]["decoder_feedback"] is False
    target = tmp_path / "forecast.csv"
    assert main(["predict", "--model", str(run), "--csv", str(data), "--output", str(target)]) == 0
    assert len(list(csv.DictReader(target.read_text().splitlines()))) == 6


def test_demo_without_dates_asks_for_the_period(tmp_path, capsys):
    data = tmp_path / "yearly.csv"
    data.write_text("year,y\n" + "\n".join(f"{1900 + i},{0.3 * i}" for i in range(100)) + "\n")
    err = _error(
        capsys,
        [
            "demo",
            "--out",
            str(tmp_path / "o"),
            "--csv",
            str(data),
            "--column",
            "y",
            "--time-column",
            "year",
        ],
    )
    assert f"rnnfuse demo: error: --period: {data} has numbers in its time column 'year'" in err
    assert "--period 1 (none, e.g. yearly rows)" in err and len(err.strip().splitlines()) == 1
    err = _error(
        capsys,
        [
            "demo",
            "--out",
            str(tmp_path / "o"),
            "--csv",
            str(data),
            "--column",
            "y",
            "--period",
            "1.5",
        ],
    )
    assert (
        "--period: expected a finite number of steps >= 2" in err
        and "1 or none for a non-seasonal series" in err
    )
    err = _error(
        capsys,
        [
            "demo",
            "--out",
            str(tmp_path / "o"),
            "--csv",
            str(data),
            "--column",
            "y",
            "--period",
            "none",
            "--horizon",
            "40",
        ],
    )
    assert (
        "too short for the windows: 100 rows, need at least" in err
        and "--horizon 40" in err
        and "--local-steps 80" in err
    )
