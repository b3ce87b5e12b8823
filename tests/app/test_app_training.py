"""rnnfuse.app: a real training run beats the seasonal baselines; config and model building."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnfuse import LSTMState
from rnnfuse.app.config import ConfigError, DataConfig, ModelConfig, OptimConfig, RunConfig
from rnnfuse.app.data import load_embedded
from rnnfuse.app.metrics import errors, seasonal_naive, seasonal_naive_drift, truth
from rnnfuse.app.model import build_model
from rnnfuse.app.training import Trainer
from rnnfuse.app.windows import prepare

pytestmark = pytest.mark.slow  # trains forecasters


def test_training_on_co2_beats_the_seasonal_baselines(tmp_path):
    config = RunConfig(model=ModelConfig(fusion="sum"), optim=OptimConfig(epochs=5))
    trainer = Trainer(config, tmp_path / "run", log=lambda _: None, show_progress=False)
    trainer.start()
    untrained = trainer.evaluate("val")["mae"]
    result = trainer.run()
    assert result.status == "finished" and result.progress.epoch == 5
    data = trainer.data
    target = truth(data.series, data.val)
    naive = errors(seasonal_naive(data.series, data.val, 52), target)["mae"]
    drift = errors(seasonal_naive_drift(data.series, data.val, 52), target)["mae"]
    trained = trainer.evaluate("val")["mae"]
    assert trained < 0.5 * untrained
    assert trained < naive  # the value 52 weeks earlier
    assert trained < drift  # ... plus last year's growth (the stronger baseline)
    history = [h["val_mae"] for h in result.progress.history]
    assert history[-1] < history[0] and result.progress.best_metric == min(history)
    assert (tmp_path / "run" / "best.safetensors").exists()


def test_seasonal_baselines_follow_their_definition():
    data = prepare(load_embedded(), DataConfig())
    y, t = data.series.values, int(data.val.origins[0])
    naive = seasonal_naive(data.series, data.val, 52)
    drift = seasonal_naive_drift(data.series, data.val, 52)
    assert naive[0, 0] == y[t + 1 - 52] and naive[0, 12] == y[t + 13 - 52]
    growth = y[t - 51 : t + 1].mean() - y[t - 103 : t - 51].mean()
    assert drift[0, 5] == pytest.approx(y[t + 6 - 52] + growth)


@pytest.mark.parametrize(
    "fusion, decoder, bridged",
    [
        ("local", (32, 32), False),
        ("global", (32, 32), False),
        ("concat", (64, 64), False),
        ("sum", (32, 32), False),
        ("mean", (32, 32), False),
        ("max", (32, 32), False),
        ("bridge", (32, 32), True),
        ("zoph-knight", (32, 32), False),
        ("child-sum", (32, 32), False),
        ("gated", (32, 32), False),
    ],
)
def test_every_fusion_builds_a_decoder_of_the_fused_sizes(fusion, decoder, bridged):
    model = build_model(ModelConfig(fusion=fusion))
    assert model.decoder.hidden_sizes == decoder
    assert (model.bridge is not None) == bridged
    assert model.encoders.names == {"local": ["local"], "global": ["global"]}.get(
        fusion, ["local", "global"]
    )


def test_model_config_errors_say_what_to_change():
    with pytest.raises(
        ConfigError, match=r"'sum' combines states element-wise and needs equal sizes"
    ):
        build_model(ModelConfig(fusion="sum", global_sizes=(16, 16)))
    with pytest.raises(ConfigError, match="'child-sum' gates LSTM cell states"):
        build_model(ModelConfig(fusion="child-sum", local_cell="gru", global_cell="gru"))
    with pytest.raises(ConfigError, match="same number of layers and cell kinds"):
        build_model(ModelConfig(fusion="concat", global_sizes=(32,)))
    gru = build_model(
        ModelConfig(fusion="concat", local_cell="gru", global_cell="gru", decoder_sizes=(24, 24))
    )
    assert gru.decoder.layers[0].kind == "gru" and gru.bridge.output_sizes == [24, 24]
    mixed = build_model(ModelConfig(fusion="concat", local_sizes=(16, 8), global_sizes=(32, 8)))
    assert mixed.decoder.state_sizes == (LSTMState(48, 48), LSTMState(16, 16))


def test_config_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"fusoin": "sum"}}))
    with pytest.raises(ConfigError, match=rf"{path}: model: unknown key 'fusoin'"):
        RunConfig.from_file(path)
    path.write_text('{"optim": {"lr": 0.1,}}')
    with pytest.raises(ConfigError, match=rf"{path}, line 1, column 22: invalid JSON"):
        RunConfig.from_file(path)
    path.write_text(json.dumps({"optim": {"lr": -1}}))
    with pytest.raises(ConfigError, match=r"optim.lr: expected a positive number, got -1"):
        RunConfig.from_file(path)


def test_config_round_trips_through_json():
    config = RunConfig(
        model=ModelConfig(fusion="gated", decoder_sizes=(8, 8)),
        optim=OptimConfig(grad_clip=None),
        seed=3,
    )
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert np.isclose(again.optim.lr, 3e-3)
