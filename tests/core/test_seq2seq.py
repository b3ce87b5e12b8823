"""rnnfuse.seq2seq: the decoder starts from the fused state; teacher forcing vs rollout; attention."""

from __future__ import annotations

import pytest
import torch

from rnnfuse import (
    LSTMState,
    MultiEncoder,
    StackedRNN,
    StateBridge,
    ZophKnightFusion,
    concat_states,
    zeros_like_state,
)
from rnnfuse.seq2seq import LuongAttention, Seq2Seq, concat_over_time


def _inputs(batch: int = 3) -> dict[str, torch.Tensor]:
    return {"local": torch.randn(batch, 5, 6), "global": torch.randn(batch, 9, 6)}


def _tf1_model(cell: str = "gru", attention: bool = False) -> Seq2Seq:
    """The TF1 post's set-up: two [20, 20] encoders, concatenated into 40-unit states."""
    enc = MultiEncoder(
        {"local": StackedRNN(6, [20, 20], cell), "global": StackedRNN(6, [20, 20], cell)},
        fusion="concat",
    )
    return Seq2Seq(
        enc, StackedRNN(1 + 2, [40, 40], cell), output_size=1, attention=attention, attention_size=8
    )


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_decoder_initial_state_is_the_fused_state(cell):
    torch.manual_seed(1)
    model = _tf1_model(cell)
    x = _inputs()
    sources = model.encode(x)
    _, local_state = model.encoders.encoders["local"](x["local"])
    _, global_state = model.encoders.encoders["global"](x["global"])
    expected = concat_states([local_state, global_state])
    for got, want in zip(sources.state, expected):
        got_parts = list(got) if isinstance(got, LSTMState) else [got]
        want_parts = list(want) if isinstance(want, LSTMState) else [want]
        assert got_parts[0].shape[-1] == 40
        for g, w in zip(got_parts, want_parts):
            torch.testing.assert_close(g, w, rtol=0, atol=0)
    # the decoder run by hand from that state gives the model's first step
    dec_in = torch.randn(3, 1, 3)
    out, _ = model.decoder(dec_in, initial_state=expected)
    torch.testing.assert_close(model.decode(sources, dec_in)[0], model.head(out))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_first_decoded_step_depends_on_each_encoder_and_on_the_state(cell):
    torch.manual_seed(2)
    model = _tf1_model(cell)
    x = _inputs()
    start, cov = torch.zeros(3, 1), torch.randn(3, 4, 2)
    first = model.generate(x, start=start, steps=4, covariates=cov)[:, 0]
    for name in ("local", "global"):
        changed = dict(x, **{name: x[name] + 0.5})
        other = model.generate(changed, start=start, steps=4, covariates=cov)[:, 0]
        assert (other - first).abs().min() > 1e-6, (
            f"changing the {name} input left the first step unchanged"
        )
    sources = model.encode(x)
    dec_in = torch.cat([start, cov[:, 0]], dim=-1).unsqueeze(1)
    from_fused = model.decode(sources, dec_in)[0][:, 0]
    from_zero = model.decode(sources._replace(state=zeros_like_state(sources.state)), dec_in)[0][
        :, 0
    ]
    torch.testing.assert_close(from_fused, first)
    assert (from_zero - from_fused).abs().min() > 1e-6


def test_teacher_forcing_on_the_rollout_reproduces_the_rollout():
    torch.manual_seed(3)
    model = _tf1_model("lstm", attention=True)
    x, start, cov = _inputs(4), torch.randn(4, 1), torch.randn(4, 6, 2)
    rolled = model.generate(x, start=start, steps=6, covariates=cov)
    forced = model(x, rolled, start=start, covariates=cov)
    torch.testing.assert_close(forced, rolled, rtol=1e-5, atol=1e-6)
    # and the true previous value really is what step t reads
    other = rolled.clone()
    other[:, 2] += 1.0
    changed = model(x, other, start=start, covariates=cov)
    torch.testing.assert_close(changed[:, :3], forced[:, :3], rtol=1e-5, atol=1e-6)
    assert (changed[:, 3] - forced[:, 3]).abs().min() > 1e-7


@pytest.mark.parametrize("attention", [False, True])
def test_without_feedback_the_decoder_reads_the_covariates_alone(attention):
    torch.manual_seed(5)
    enc = MultiEncoder(
        {"local": StackedRNN(6, [20, 20], "lstm"), "global": StackedRNN(6, [20, 20], "lstm")}
    )
    model = Seq2Seq(
        enc,
        StackedRNN(2, [40, 40], "lstm"),
        1,
        attention=attention,
        attention_size=8,
        feedback=False,
    )
    assert model.covariate_size == 2 and not model.feedback
    x, start, cov = _inputs(4), torch.randn(4, 1), torch.randn(4, 7, 2)
    rolled = model.generate(x, start=start, steps=6, covariates=cov)
    # the decoder run by hand over the first 6 covariates, from the fused state
    by_hand = model.decode(model.encode(x), cov[:, :6])[0]
    torch.testing.assert_close(rolled, by_hand, rtol=0, atol=0)
    # training computes what forecasting does: neither the targets nor start enter
    forced = model(x, torch.randn(4, 6, 1), start=torch.randn(4, 1), covariates=cov)
    torch.testing.assert_close(forced, rolled, rtol=0, atol=0)
    # and a later covariate reaches that step only
    other = cov.clone()
    other[:, 3] += 1.0
    changed = model.generate(x, start=start, steps=6, covariates=other)
    torch.testing.assert_close(changed[:, :3], rolled[:, :3], rtol=0, atol=0)
    assert (changed[:, 3] - rolled[:, 3]).abs().min() > 1e-7


def test_without_feedback_bad_arguments_name_the_argument():
    enc = MultiEncoder({"local": StackedRNN(6, [8]), "global": StackedRNN(6, [8])})
    with pytest.raises(TypeError, match="feedback: expected a bool, got int"):
        Seq2Seq(enc, StackedRNN(2, [16]), 1, feedback=1)
    model = Seq2Seq(enc, StackedRNN(2, [16]), 1, feedback=False)
    with pytest.raises(
        ValueError,
        match=r"covariates: expected shape \[3, 4, 2\] \(decoder input_size 2, no feedback\)",
    ):
        model.generate(_inputs(), start=torch.zeros(3, 1), steps=4)


def test_bridge_maps_the_fused_state_to_the_decoder_sizes():
    torch.manual_seed(4)
    enc = MultiEncoder(
        {"local": StackedRNN(6, [20, 20]), "global": StackedRNN(6, [20, 20])}, fusion="concat"
    )
    bridge = StateBridge([LSTMState(40, 40)] * 2, [LSTMState(16, 16)] * 2)
    model = Seq2Seq(enc, StackedRNN(1, [16, 16]), output_size=1, bridge=bridge)
    x = _inputs()
    sources = model.encode(x)
    torch.testing.assert_close(sources.state[1].h, bridge(enc(x).state)[1].h)
    assert model.generate(x, start=torch.zeros(3, 1), steps=2).shape == (3, 2, 1)


def test_learned_fusion_module_feeds_the_decoder():
    torch.manual_seed(5)
    fusion = ZophKnightFusion(2, [LSTMState(20, 20)])
    enc = MultiEncoder({"local": StackedRNN(6, [20]), "global": StackedRNN(6, [20])}, fusion=fusion)
    model = Seq2Seq(enc, StackedRNN(1, [20]), output_size=1)
    x = _inputs()
    states = [enc.encoders[n](x[n])[1] for n in ("local", "global")]
    torch.testing.assert_close(model.encode(x).state[0].h, fusion(states)[0].h)


def test_mismatched_decoder_sizes_are_refused_with_the_fix():
    enc = MultiEncoder(
        {"local": StackedRNN(6, [20, 20]), "global": StackedRNN(6, [20, 20])}, fusion="concat"
    )
    with pytest.raises(
        ValueError, match=r"initial state must have sizes.*StateBridge"
    ):  # at construction
        Seq2Seq(enc, StackedRNN(1, [20, 20]), output_size=1)


def test_bad_decoder_arguments_name_the_argument():
    model = _tf1_model()
    x = _inputs()
    with pytest.raises(ValueError, match=r"covariates: expected shape \[3, 4, 2\]"):
        model.generate(x, start=torch.zeros(3, 1), steps=4, covariates=torch.zeros(3, 4, 3))
    with pytest.raises(ValueError, match=r"start: expected a tensor \(B, 1\)"):
        model.generate(x, start=torch.zeros(3), steps=4, covariates=torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match=r"steps: expected a positive int, got 0"):
        model.generate(x, start=torch.zeros(3, 1), steps=0, covariates=torch.zeros(3, 4, 2))
    with pytest.raises(TypeError, match="decoder: expected a StackedRNN"):
        Seq2Seq(model.encoders, torch.nn.GRU(3, 40), output_size=1)


def test_concat_over_time_masks_padding_of_each_source():
    a = torch.ones(2, 3, 4)
    b = 2 * torch.ones(2, 5, 4)
    memory, mask = concat_over_time([a, b], [None, torch.tensor([5, 2])])
    assert memory.shape == (2, 8, 4)
    assert mask.tolist() == [[True] * 8, [True] * 5 + [False] * 3]
    assert memory[1, 5:].abs().sum() == 0 and memory[1, 3:5].eq(2).all()
    with pytest.raises(ValueError, match=r"outputs\[1\]: expected batch 2 and features 4"):
        concat_over_time([a, torch.ones(2, 5, 3)])
    with pytest.raises(ValueError, match="lengths: expected one entry per output"):
        concat_over_time([a, b], [None])


def test_attention_ignores_padded_encoder_steps():
    torch.manual_seed(6)
    model = _tf1_model("lstm", attention=True)
    x = _inputs(2)
    lengths = {"local": None, "global": torch.tensor([9, 4])}
    kwargs = dict(
        start=torch.zeros(2, 1), steps=3, covariates=torch.randn(2, 3, 2), lengths=lengths
    )
    base = model.generate(x, **kwargs)
    noisy = dict(x, **{"global": x["global"].clone()})
    noisy["global"][1, 4:] = 100.0  # past sequence 1's length
    torch.testing.assert_close(model.generate(noisy, **kwargs), base, rtol=0, atol=0)
    noisy["global"][1, 3] = 5.0  # inside it
    assert (model.generate(noisy, **kwargs)[1] - base[1]).abs().max() > 1e-6


def test_luong_attention_weights_are_a_distribution_over_valid_steps():
    torch.manual_seed(7)
    att = LuongAttention(5, 4)
    memory = torch.randn(2, 6, 4)
    mask = torch.tensor([[True] * 6, [True, True, False, False, True, False]])
    out, weights = att(torch.randn(2, 3, 5), memory, mask)
    assert out.shape == (2, 3, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert weights[1][:, ~mask[1]].abs().sum() == 0


def test_attention_over_time_major_encoders_equals_batch_major():
    torch.manual_seed(0)

    def model(batch_first):
        enc = MultiEncoder(
            {
                "local": StackedRNN(3, [5], batch_first=batch_first),
                "global": StackedRNN(3, [5], batch_first=batch_first),
            }
        )
        return Seq2Seq(enc, StackedRNN(1, [10]), output_size=1, attention=True, attention_size=4)

    time_major, batch_major = model(False), model(True)
    batch_major.load_state_dict(time_major.state_dict())
    x = {"local": torch.randn(3, 6, 3), "global": torch.randn(3, 9, 3)}
    lengths = {"global": torch.tensor([9, 0, 4])}
    expected = batch_major.generate(x, start=torch.zeros(3, 1), steps=2, lengths=lengths)
    got = time_major.generate(
        {k: v.transpose(0, 1) for k, v in x.items()},
        start=torch.zeros(3, 1),
        steps=2,
        lengths=lengths,
    )
    torch.testing.assert_close(got, expected)
