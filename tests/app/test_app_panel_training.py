"""One global model for a panel of series: `rnnfuse train --id-column`, per-series scaling, predict."""

from __future__ import annotations

import csv
import json
import math
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch

from rnnfuse.app.checkpoint import CheckpointError, load_latest, load_model_file, save_model_file
from rnnfuse.app.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig
from rnnfuse.app.data import DataError, load_csv
from rnnfuse.app.panel import load_named_panel
from rnnfuse.app.panel_windows import prepare_panel, scalings_from_metadata
from rnnfuse.app.predict import load_saved, predict_next
from rnnfuse.app.training import StopSignal, Trainer
from rnnfuse.app.windows import prepare
from rnnfuse.cli import main

pytestmark = pytest.mark.slow  # trains global models on panels

# three series: b is a's shape 1000 times larger, c small and below zero; lengths differ
SERIES = {"a": (10.0, 1.0, 60), "b": (10_000.0, 1000.0, 70), "c": (-5.0, 0.1, 64)}
PERIOD, HORIZON, LOCAL, BLOCK, MIN_BLOCKS, VAL, TEST = 4, 2, 8, 2, 2, 6, 6
WINDOW_FLAGS = [
    "--period",
    str(PERIOD),
    "--horizon",
    str(HORIZON),
    "--local-steps",
    str(LOCAL),
    "--global-blocks",
    "4",
    "--block",
    str(BLOCK),
    "--min-global-blocks",
    str(MIN_BLOCKS),
    "--val-steps",
    str(VAL),
    "--test-steps",
    str(TEST),
]
TINY = ["--local-sizes", "4", "--global-sizes", "4", "--no-progress"]


def _values(seed: int = 0) -> dict[str, np.ndarray]:
    """Each series: a season of 4 steps, a slow trend and noise, at its own level and amplitude."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (level, amp, n) in SERIES.items():
        t = np.arange(n)
        out[name] = level + amp * (
            np.sin(2 * np.pi * t / PERIOD) + 0.02 * t + 0.3 * rng.standard_normal(n)
        )
    return out


def _write_panel(path, values: dict[str, np.ndarray], covariate: bool = False) -> None:
    """A long-format file (unique_id, ds, y[, price]); the rows of the series interleaved."""
    rows = ["unique_id,ds,y" + (",price" if covariate else "")]
    longest = max(len(v) for v in values.values())
    for t in range(longest):
        for k, (name, v) in enumerate(values.items()):
            if t < len(v):
                extra = (
                    f",{100 * k + t % 3}" if covariate else ""
                )  # each series' covariate at its own level
                rows.append(f"{name},{t},{float(v[t])!r}{extra}")
    path.write_text("\n".join(rows) + "\n")


def _data(path, **changes) -> DataConfig:
    return replace(
        DataConfig(
            csv=str(path),
            column="y",
            time_column="ds",
            id_column="unique_id",
            period=PERIOD,
            horizon=HORIZON,
            local_steps=LOCAL,
            global_blocks=4,
            block=BLOCK,
            min_global_blocks=MIN_BLOCKS,
            val_steps=VAL,
            test_steps=TEST,
        ),
        **changes,
    )


@pytest.fixture
def panel_csv(tmp_path):
    path = tmp_path / "long.csv"
    _write_panel(path, _values())
    return path


def _train_origins(n: int) -> np.ndarray:
    """The training origins, from the rule itself: history before the first, every target before validation."""
    first = max(LOCAL, BLOCK * MIN_BLOCKS, 2 * PERIOD) - 1
    val_start = n - TEST - VAL
    return np.array([t for t in range(first, n - HORIZON) if t + HORIZON < val_start])


def test_each_series_is_scaled_by_its_own_training_windows(panel_csv):
    values = _values()
    panel = prepare_panel(load_named_panel(panel_csv), _data(panel_csv))
    assert panel.ids == ("a", "b", "c")
    begin = 0
    for name, part in zip(panel.ids, panel.parts):
        y, origins = values[name], _train_origins(len(values[name]))
        deltas = np.array([y[t + h] - y[t] for t in origins for h in range(1, HORIZON + 1)])
        assert part.scale == pytest.approx(deltas.std(), rel=1e-12)
        mine = slice(begin, begin + len(origins))
        begin += len(origins)
        assert panel.train.origins[mine].tolist() == origins.tolist()
        assert torch.all(panel.train.scale[mine] == part.scale)
        local = panel.train.local[mine, :, 0].double().numpy()  # (y[i] - y[t]) / that series' scale
        expected = (
            y[origins[:, None] + np.arange(1 - LOCAL, 1)] - y[origins][:, None]
        ) / deltas.std()
        np.testing.assert_allclose(local, expected, rtol=1e-5, atol=1e-6)
        targets = panel.train.targets[mine, :, 0].double().numpy()
        assert targets.std() == pytest.approx(1.0, rel=1e-5)  # the 1000x larger series' too
    assert begin == len(panel.train)
    loss_share = [
        float((panel.train.targets[panel.train.scale == p.scale] ** 2).mean()) for p in panel.parts
    ]
    assert max(loss_share) < 3 * min(loss_share), (
        loss_share
    )  # b, 1000 times larger, does not dominate the loss


def test_each_series_covariates_are_standardised_on_their_own_training_rows(tmp_path):
    path = tmp_path / "cov.csv"
    values = _values()
    _write_panel(path, values, covariate=True)
    panel = prepare_panel(
        load_named_panel(path, covariates=["price"]), _data(path, covariates=("price",))
    )
    for k, (name, part) in enumerate(zip(panel.ids, panel.parts)):
        last = _train_origins(len(values[name]))[-1]
        rows = np.array([100 * k + t % 3 for t in range(last + 1)], dtype=float)
        assert part.covariate_norm is not None
        assert part.covariate_norm.mean == pytest.approx(
            (rows.mean(),)
        ) and part.covariate_norm.std == pytest.approx((rows.std(),))


def test_the_joined_windows_are_the_union_of_each_series_windows(panel_csv):
    config = _data(panel_csv, stop_steps=HORIZON + 1)
    named = load_named_panel(panel_csv)
    panel = prepare_panel(named, config)
    alone = [prepare(series, config) for series in named.values()]
    for split in ("train", "stop", "val", "test"):
        joined = getattr(panel, split)
        for field in (
            "origins",
            "local",
            "global_",
            "global_len",
            "targets",
            "covariates",
            "anchor",
        ):
            assert torch.equal(
                getattr(joined, field),
                torch.cat([getattr(getattr(p, split), field) for p in alone]),
            ), (split, field)
        assert joined.scales().tolist() == [
            p.scale for p in alone for _ in range(len(getattr(p, split)))
        ]
        some = torch.randn(
            len(joined), HORIZON, 1, dtype=torch.float64
        )  # to_ppm undoes each series' own scale
        parts = torch.split(some, [len(getattr(p, split)) for p in alone])
        assert torch.equal(
            joined.to_ppm(some),
            torch.cat([getattr(p, split).to_ppm(x) for p, x in zip(alone, parts)]),
        )
        picked = torch.tensor([len(joined) - 1, 0])
        assert joined.subset(picked).scales().tolist() == [alone[-1].scale, alone[0].scale]


def test_a_one_series_long_csv_gives_the_windows_and_numbers_of_the_plain_csv(tmp_path):
    y = _values()["a"]
    plain, long = tmp_path / "plain.csv", tmp_path / "long.csv"
    plain.write_text("ds,y\n" + "".join(f"{t},{float(v)!r}\n" for t, v in enumerate(y)))
    _write_panel(long, {"a": y})
    one = prepare(load_csv(plain, "y", "ds"), _data(plain, id_column=None))
    panel = prepare_panel(load_named_panel(long), _data(long))
    assert panel.parts[0].scale == one.scale
    for split in ("train", "val", "test"):
        for field in (
            "origins",
            "local",
            "global_",
            "global_len",
            "targets",
            "covariates",
            "anchor",
        ):
            assert torch.equal(
                getattr(getattr(panel, split), field), getattr(getattr(one, split), field)
            )
    model, optim = (
        ModelConfig(local_sizes=(4,), global_sizes=(4,)),
        OptimConfig(epochs=2, batch_size=8),
    )
    quiet = lambda _msg: None
    runs = [
        Trainer(RunConfig(data=d, model=model, optim=optim), None, log=quiet, show_progress=False)
        for d in (_data(plain, id_column=None), _data(long))
    ]
    for trainer in runs:
        trainer.start()
        trainer.run()
    assert runs[0].evaluate("test")["mae"] == runs[1].evaluate("test")["mae"]
    assert runs[1].evaluate("test")["scaled_mae"] == pytest.approx(
        runs[0].evaluate("test")["mae"] / one.scale, rel=1e-12
    )


def _seasonal_naive_mae(y: np.ndarray, start: int, end: int) -> float:
    """MAE of y[t+h-P] for every window whose targets lie in [start, end), from the rule itself."""
    errs = [
        abs(y[t + h] - y[t + h - PERIOD])
        for t in range(start - 1, end - HORIZON)
        for h in range(1, HORIZON + 1)
    ]
    return float(np.mean(errs))


def test_a_panel_trains_through_the_cli_reports_each_series_and_predicts(
    tmp_path, panel_csv, capsys
):
    run = tmp_path / "run"
    code = main(
        [
            "train",
            "--out",
            str(run),
            "--csv",
            str(panel_csv),
            "--id-column",
            "unique_id",
            "--column",
            "y",
            "--time-column",
            "ds",
            *WINDOW_FLAGS,
            "--epochs",
            "2",
            *TINY,
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (
        "a panel of 3 series by 'unique_id', 60 to 70 rows" in printed and "scaled MAE" in printed
    )
    assert "geometric mean over 3 series of test MAE / seasonal naive's" in printed
    metrics = json.loads((run / "metrics.json").read_text())
    values = _values()
    rows = {r["id"]: r for r in metrics["series"]}
    assert list(rows) == ["a", "b", "c"]
    for name, row in rows.items():
        n = len(values[name])
        assert row["seasonal_naive"]["test"]["mae"] == pytest.approx(
            _seasonal_naive_mae(values[name], n - TEST, n)
        )
        assert row["seasonal_naive"]["val"]["mae"] == pytest.approx(
            _seasonal_naive_mae(values[name], n - TEST - VAL, n - TEST)
        )
        assert row["relative_mae"]["test"] == pytest.approx(
            row["model"]["test"]["mae"] / row["seasonal_naive"]["test"]["mae"]
        )
        assert row["model"]["test"]["scaled_mae"] == pytest.approx(
            row["model"]["test"]["mae"] / row["scale"]
        )
    ratios = [rows[k]["relative_mae"]["test"] for k in rows]
    assert metrics["geometric_mean_relative_mae"]["test"] == pytest.approx(
        math.prod(ratios) ** (1 / 3)
    )
    assert (
        rows["b"]["seasonal_naive"]["test"]["mae"]
        > 100 * rows["a"]["seasonal_naive"]["test"]["mae"]
    )  # raw units differ
    history = load_latest(run).state["progress"]["history"]  # early stopping on the scaled MAE
    assert metrics["best_val_scaled_mae"] == min(h["val_scaled_mae"] for h in history)

    target = tmp_path / "forecast.csv"
    assert (
        main(["predict", "--model", str(run), "--csv", str(panel_csv), "--output", str(target)])
        == 0
    )  # names from the model
    printed = capsys.readouterr().out
    assert "unique_id 'b': forecast of 'y'" in printed and "after its last row (69)" in printed
    out = list(csv.DictReader(target.read_text().splitlines()))
    assert [(r["unique_id"], r["step"], r["time"]) for r in out] == [
        (name, str(k), str(len(values[name]) - 1 + k)) for name in ("a", "b", "c") for k in (1, 2)
    ]
    saved, panel = load_saved(run), load_named_panel(panel_csv)
    # each series forecast on its own level, in its own units
    for name, (_, amp, _) in SERIES.items():
        forecasts = [float(r["y"]) for r in out if r["unique_id"] == name]
        assert all(abs(f - values[name][-1]) < 5 * amp for f in forecasts), (name, forecasts)
        # the one-series path; the file has 6 decimals
        alone = predict_next(saved.model, saved.config, saved.scalings[name].scale, panel[name])
        assert forecasts == pytest.approx(alone.values.tolist(), rel=1e-6, abs=1e-6)


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err  # one line
    return err


def test_panel_errors_are_one_line_and_name_the_flag(tmp_path, panel_csv, capsys):
    out = str(tmp_path / "run")
    base = [
        "train",
        "--out",
        out,
        "--csv",
        str(panel_csv),
        "--column",
        "y",
        "--time-column",
        "ds",
        *WINDOW_FLAGS,
        *TINY,
    ]
    err = _error(capsys, [*base, "--id-column", "series"])
    assert (
        f"{panel_csv}, line 1: no column 'series' (--id-column); the header has ['unique_id', 'ds', 'y']"
        in err
    )
    err = _error(
        capsys,
        [
            "train",
            "--out",
            out,
            "--csv",
            str(panel_csv),
            "--column",
            "y",
            "--id-column",
            "unique_id",
        ],
    )
    assert "data.id_column (--id-column): a panel needs --time-column NAME" in err
    err = _error(capsys, ["train", "--out", out, "--id-column", "unique_id"])
    assert "data.id_column (--id-column): a panel needs --csv FILE" in err
    err = _error(capsys, [*base, "--id-column", "ds"])
    assert (
        "data.id_column (--id-column): 'ds' is the series', its time column or a covariate" in err
    )
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(
        "unique_id,ds,y\n"
        + "".join(f"a,2000-{m:02d}-01,{m}\n" for m in range(1, 13))
        + "".join(f"b,2000-01-{d:02d},{d}\n" for d in range(1, 13))
    )
    err = _error(
        capsys,
        [
            "train",
            "--out",
            out,
            "--csv",
            str(mixed),
            "--column",
            "y",
            "--time-column",
            "ds",
            "--id-column",
            "unique_id",
        ],
    )
    assert f"{mixed}: the series differ in frequency: unique_id 'b'" in err
    short = tmp_path / "short.csv"
    values = _values()
    values["c"] = values["c"][:20]
    _write_panel(short, values)
    err = _error(capsys, [*base[:4], str(short), *base[5:], "--id-column", "unique_id"])
    assert (
        f"{short} [unique_id=c], column 'y': too short for the windows: 20 rows, need at least 22"
        in err
    )
    assert "--val-steps 6 + --test-steps 6" in err and "leave unique_id 'c' out of the file" in err
    assert not (tmp_path / "run" / "latest.json").exists()


def test_predict_refuses_an_unknown_series_and_a_panel_flag_for_a_one_series_model(
    tmp_path, panel_csv, capsys
):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--csv",
                str(panel_csv),
                "--id-column",
                "unique_id",
                "--column",
                "y",
                "--time-column",
                "ds",
                *WINDOW_FLAGS,
                "--epochs",
                "1",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    other = tmp_path / "other.csv"
    values = _values()
    _write_panel(other, {"a": values["a"], "d": values["b"]})
    err = _error(capsys, ["predict", "--model", str(run), "--csv", str(other)])
    assert (
        f"{other} [unique_id=d]: series unique_id 'd' was not in the panel the model was trained on (3 series: 'a', 'b', 'c')"
        in err
    )
    err = _error(capsys, ["predict", "--model", str(run)])
    assert "--csv: this model was trained on a panel of series" in err
    plain = tmp_path / "plain.csv"
    plain.write_text("ds,y\n" + "".join(f"{t},{float(v)!r}\n" for t, v in enumerate(values["a"])))
    one = tmp_path / "one"
    assert (
        main(
            [
                "train",
                "--out",
                str(one),
                "--csv",
                str(plain),
                "--column",
                "y",
                "--time-column",
                "ds",
                *WINDOW_FLAGS,
                "--epochs",
                "1",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    err = _error(
        capsys,
        ["predict", "--model", str(one), "--csv", str(panel_csv), "--id-column", "unique_id"],
    )
    assert "--id-column:" in err and "was trained on one series" in err


@pytest.mark.parametrize(
    "panel, reason",
    [
        ("not a dict", "got str"),
        ({"ids": ["a", "a"], "scales": [1.0, 2.0]}, "not distinct non-empty strings"),
        ({"ids": ["a", ""], "scales": [1.0, 2.0]}, "not distinct non-empty strings"),
        ({"ids": ["a", "b"], "scales": [1.0]}, "not lists of one length"),
        ({"ids": ["a"], "scales": [-1.0]}, "not a finite positive number"),
        ({"ids": ["a"], "scales": [True]}, "not a finite positive number"),
        ({"ids": [], "scales": []}, "not lists of one length in that range"),
    ],
)
def test_a_panel_models_metadata_is_checked(panel, reason):
    with pytest.raises(ValueError, match=reason):
        scalings_from_metadata(panel, 0, "model.safetensors")
    with pytest.raises(ValueError, match="covariates' standardisation"):
        scalings_from_metadata(
            {"ids": ["a"], "scales": [1.0], "covariates": {"mean": [[0.0]], "std": [[0.0]]}}, 1, "m"
        )
    assert scalings_from_metadata({"ids": ["a"], "scales": [2]}, 0, "m")["a"].scale == 2.0


def test_an_edited_panel_model_file_is_refused_in_one_line(tmp_path, panel_csv, capsys):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--out",
                str(run),
                "--csv",
                str(panel_csv),
                "--id-column",
                "unique_id",
                "--column",
                "y",
                "--time-column",
                "ds",
                *WINDOW_FLAGS,
                "--epochs",
                "1",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    saved = load_saved(run)
    assert list(saved.scalings) == ["a", "b", "c"]
    for (
        name,
        y,
    ) in (
        _values().items()
    ):  # each series' scale, fitted on its own training windows, saved with the model
        origins = _train_origins(len(y))
        deltas = [y[t + h] - y[t] for t in origins for h in range(1, HORIZON + 1)]
        assert saved.scalings[name].scale == pytest.approx(np.std(deltas), rel=1e-12)
    tensors, meta = load_model_file(run / "best.safetensors")
    edited = tmp_path / "edited.safetensors"
    save_model_file(
        edited, tensors, meta | {"panel": {"ids": ["a"] * 3, "scales": meta["panel"]["scales"]}}
    )
    with pytest.raises(CheckpointError, match="not distinct"):
        load_saved(edited)
    err = _error(capsys, ["predict", "--model", str(edited), "--csv", str(panel_csv)])
    assert str(edited) in err and "the ids are not distinct non-empty strings" in err


def test_a_panel_run_stopped_mid_epoch_resumes_to_the_same_weights(tmp_path, panel_csv):
    config = RunConfig(
        data=_data(panel_csv),
        model=ModelConfig(local_sizes=(4,), global_sizes=(4,)),
        optim=OptimConfig(epochs=2, batch_size=16),
        seed=3,
    )
    quiet = lambda _msg: None
    ref = Trainer(config, tmp_path / "ref", log=quiet, show_progress=False)
    ref.start()
    ref.run()
    per_epoch = -(-len(ref.prepared.train) // 16)
    stop_at = per_epoch + 3  # inside the second epoch
    run = Trainer(config, tmp_path / "run", log=quiet, show_progress=False)
    count = []

    def interrupt(optimizer, args, kwargs) -> None:
        count.append(1)
        if len(count) == stop_at:
            signal.raise_signal(signal.SIGINT)

    run.optimizer.register_step_post_hook(interrupt)
    run.start()
    with StopSignal() as stop:
        assert run.run(stop).status == "interrupted"
    again = Trainer(config, tmp_path / "run", log=quiet, show_progress=False)
    again.start(resume=True)
    assert again.progress.step == stop_at
    again.run()
    for name, value in ref.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], value), name
    assert [h["val_scaled_mae"] for h in again.progress.history] == [
        h["val_scaled_mae"] for h in ref.progress.history
    ]
    with pytest.raises(TypeError, match="Trainer.data: this run trains on a panel"):
        _ = again.data  # a one-series run's attribute


def test_a_panel_configuration_and_an_empty_panel_are_refused(panel_csv):
    config = RunConfig(data=_data(panel_csv))
    with pytest.raises(
        ConfigError, match=r"data.id_column \(--id-column\): a panel needs --csv FILE"
    ):
        replace(config, data=replace(config.data, csv=None)).updated({})
    with pytest.raises(
        ConfigError, match=r"data.id_column \(--id-column\): expected a column name or null, got 3"
    ):
        RunConfig.from_dict({"data": {"csv": "x.csv", "time_column": "ds", "id_column": 3}})
    with pytest.raises(
        DataError, match="no series in the panel; expected at least one id in column 'unique_id'"
    ):
        prepare_panel({}, config.data)
