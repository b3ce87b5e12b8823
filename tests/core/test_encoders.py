"""MultiEncoder: shared and per-encoder inputs, lengths, bidirectional merging, fusion."""

from __future__ import annotations

import pytest
import torch

from rnnfuse import (
    LSTMState,
    MultiEncoder,
    StackedRNN,
    ZophKnightFusion,
    concat_states,
    sum_states,
)
from rnnfuse.state import flatten_state, join_directions, structure_str

F = 3


def _same(a, b) -> bool:
    fa, fb = flatten_state(a), flatten_state(b)
    return structure_str(a) == structure_str(b) and all(torch.equal(x, y) for x, y in zip(fa, fb))


def _encoders():
    return {
        "local": StackedRNN(F, [4, 5], "lstm"),
        "global": StackedRNN(F, [6, 2], "lstm"),
    }


def test_shared_input_concat_equals_running_each_encoder():
    encoders = _encoders()
    multi = MultiEncoder(encoders, fusion="concat")
    x, lengths = torch.randn(3, 5, F), torch.tensor([5, 1, 3])
    result = multi(x, lengths)
    out_l, st_l = encoders["local"](x, lengths)
    out_g, st_g = encoders["global"](x, lengths)
    assert torch.equal(result.outputs, torch.cat([out_l, out_g], dim=-1))
    assert _same(result.state, concat_states([st_l, st_g]))
    assert [s.h.shape[-1] for s in result.state] == [10, 7]
    assert list(result.encoder_outputs) == ["local", "global"]
    assert _same(result.encoder_states["global"], st_g)
    assert not result.outputs[1, 1:].any()


def test_per_encoder_inputs_with_different_lengths_of_time_give_no_joined_outputs():
    encoders = {"words": StackedRNN(F, [4], "gru"), "chars": StackedRNN(2, [4], "gru")}
    multi = MultiEncoder(encoders, fusion="sum")
    words, chars = torch.randn(2, 5, F), torch.randn(2, 9, 2)
    lengths = {"words": [5, 2], "chars": torch.tensor([9, 4])}
    result = multi({"words": words, "chars": chars}, lengths)
    assert result.outputs is None
    assert result.encoder_outputs["chars"].shape == (2, 9, 4)
    expected = sum_states(
        [encoders["words"](words, [5, 2])[1], encoders["chars"](chars, [9, 4])[1]]
    )
    assert _same(result.state, expected)
    assert not result.encoder_outputs["chars"][1, 4:].any()


def test_lengths_mapping_gives_each_encoder_its_own_lengths():
    encoders = _encoders()
    multi = MultiEncoder(encoders)
    x = torch.randn(2, 6, F)
    result = multi(x, {"local": [6, 2], "global": [3, 6]})
    assert _same(result.encoder_states["local"], encoders["local"](x, [6, 2])[1])
    assert _same(result.encoder_states["global"], encoders["global"](x, [3, 6])[1])
    assert not result.outputs[1, 2:, :5].any() and result.outputs[1, 2:, 5:].any()


def test_bidirectional_encoder_state_is_merged_per_layer_before_fusion():
    bi = StackedRNN(F, [3, 3], "lstm", bidirectional=True)
    uni = StackedRNN(F, [6, 6], "lstm")
    multi = MultiEncoder({"bi": bi, "uni": uni}, fusion="sum")
    x = torch.randn(2, 4, F)
    result = multi(x, [4, 2])
    state = bi(x, [4, 2])[1]
    merged = join_directions(state)
    assert _same(result.encoder_states["bi"], merged)
    assert torch.equal(merged[1].c, torch.cat([state[1].fw.c, state[1].bw.c], dim=-1))
    assert _same(result.state, sum_states([merged, uni(x, [4, 2])[1]]))
    plain = uni(x)[1]
    assert _same(join_directions(plain), plain)


def test_module_fusion_receives_states_in_encoder_order():
    encoders = {"a": StackedRNN(F, [4, 4], "lstm"), "b": StackedRNN(F, [4, 4], "lstm")}
    fusion = ZophKnightFusion(2, [LSTMState(4, 4)] * 2)
    multi = MultiEncoder(encoders, fusion=fusion)
    x = torch.randn(3, 5, F)
    result = multi(x)
    expected = fusion([encoders["a"](x)[1], encoders["b"](x)[1]])
    assert _same(result.state, expected)
    assert any(p is fusion.combine[0].weight for p in multi.parameters()), (
        "the fusion module's weights train"
    )
    swapped = fusion([encoders["b"](x)[1], encoders["a"](x)[1]])
    assert not torch.allclose(result.state[0].h, swapped[0].h)


def test_a_single_encoder_passes_its_state_through():
    encoder = StackedRNN(F, [4], "gru", bidirectional=True)
    result = MultiEncoder({"only": encoder})(torch.randn(2, 3, F))
    assert result.state[0].shape == (2, 8)
    assert result.outputs.shape == (2, 3, 8)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda m, x: m({"a": x}),
            ValueError,
            r"inputs: no entry for encoder 'b'; expected keys \['a', 'b'\]",
        ),
        (
            lambda m, x: m({"a": x, "b": x, "c": x}),
            ValueError,
            r"inputs: unknown encoder names \['c'\]",
        ),
        (
            lambda m, x: m(x, {"a": [2, 2], "b": [2, 2], "bb": [1, 1]}),
            ValueError,
            r"lengths: unknown encoder names \['bb'\]",
        ),
    ],
)
def test_mappings_must_name_exactly_the_encoders(call, error, message):
    multi = MultiEncoder({"a": StackedRNN(F, [2], "gru"), "b": StackedRNN(F, [2], "gru")})
    with pytest.raises(error, match=message):
        call(multi, torch.randn(2, 2, F))


def test_an_encoder_missing_from_the_lengths_mapping_runs_full_length():
    encoders = {"a": StackedRNN(F, [2], "gru"), "b": StackedRNN(F, [2], "gru")}
    multi = MultiEncoder(encoders)
    x = torch.randn(2, 3, F)
    result = multi(x, {"a": [2, 1]})
    assert torch.equal(result.encoder_states["a"][0], encoders["a"](x, [2, 1])[1][0])
    assert torch.equal(result.encoder_states["b"][0], encoders["b"](x)[1][0])


def test_empty_lengths_mapping_means_full_lengths():
    multi = MultiEncoder({"a": StackedRNN(F, [2], "gru"), "b": StackedRNN(F, [2], "gru")})
    x = torch.randn(2, 3, F)
    assert _same(multi(x, {}).state, multi(x).state)


def test_constructor_refuses_bad_arguments():
    with pytest.raises(TypeError, match="encoders: expected a non-empty mapping"):
        MultiEncoder({})
    with pytest.raises(
        TypeError, match="encoders: expected a non-empty mapping name -> encoder, got list"
    ):
        MultiEncoder([StackedRNN(F, 2)])
    with pytest.raises(
        ValueError,
        match=r"fusion: expected one of \['concat', 'max', 'mean', 'sum'\] or a module, got 'avg'",
    ):
        MultiEncoder({"a": StackedRNN(F, 2)}, fusion="avg")
    with pytest.raises(TypeError, match="fusion: expected a name or an nn.Module, got function"):
        MultiEncoder({"a": StackedRNN(F, 2)}, fusion=concat_states)
