"""Fusion: structure-keeping properties (Hypothesis) and the learned modules' equations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from numpy_reference import sigmoid

from rnnfuse import (
    ChildSumFusion,
    GatedFusion,
    LSTMState,
    StateBridge,
    ZophKnightFusion,
    concat_outputs,
    concat_states,
    max_states,
    mean_states,
    sum_states,
)
from rnnfuse.state import flatten_state, state_kinds, state_sizes, structure_str

# ------------------------------------------------------------------ strategies

_size = st.integers(1, 4)


@st.composite
def _layer_sizes(draw, kinds):
    return [LSTMState(draw(_size), draw(_size)) if lstm else draw(_size) for lstm in kinds]


def _make_state(sizes, batch: int, gen: torch.Generator):
    def leaf(n: int) -> torch.Tensor:
        return torch.randn(batch, n, generator=gen, dtype=torch.float64)

    return tuple(
        LSTMState(leaf(s.c), leaf(s.h)) if isinstance(s, LSTMState) else leaf(s) for s in sizes
    )


@st.composite
def sources(draw, same_sizes: bool):
    """2 to 4 stack states of one structure (1 to 3 layers, LSTM or tensor layers)."""
    kinds = draw(st.lists(st.booleans(), min_size=1, max_size=3))
    batch = draw(st.integers(1, 3))
    count = draw(st.integers(2, 4))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    base = draw(_layer_sizes(kinds))
    sizes = [base if same_sizes else draw(_layer_sizes(kinds)) for _ in range(count)]
    return [_make_state(s, batch, gen) for s in sizes]


def _pairs(a, b):
    return zip(flatten_state(a), flatten_state(b))


# ------------------------------------------------------------------ parameter-free fusion


@given(states=sources(same_sizes=False))
def test_concat_keeps_structure_and_sizes_add_up(states):
    fused = concat_states(states)
    assert state_kinds(fused) == state_kinds(states[0]) and len(fused) == len(states[0])
    for k, layer in enumerate(fused):
        parts = ("c", "h") if isinstance(layer, LSTMState) else (None,)
        for part in parts:
            pieces = [getattr(s[k], part) if part else s[k] for s in states]
            got = getattr(layer, part) if part else layer
            assert got.shape[-1] == sum(p.shape[-1] for p in pieces)
            assert torch.equal(got, torch.cat(pieces, dim=-1))


@given(states=sources(same_sizes=True), data=st.data())
def test_sum_mean_max_keep_structure_and_commute_with_source_order(states, data):
    order = data.draw(st.permutations(range(len(states))))
    shuffled = [states[i] for i in order]
    n = len(states)
    for fuse, reduce in (
        (sum_states, lambda ts: sum(ts[1:], ts[0])),
        (mean_states, lambda ts: sum(ts[1:], ts[0]) / n),
        (max_states, lambda ts: torch.stack(ts).max(0).values),
    ):
        fused = fuse(states)
        assert structure_str(fused) == structure_str(states[0])
        assert isinstance(fused, tuple) and state_kinds(fused) == state_kinds(states[0])
        for a, b in _pairs(fused, fuse(shuffled)):
            assert torch.allclose(a, b, atol=1e-14, rtol=0)
        leaves = [flatten_state(s) for s in states]
        for j, got in enumerate(flatten_state(fused)):
            assert torch.allclose(got, reduce([leaf[j] for leaf in leaves]), atol=1e-14, rtol=0)


@given(
    batch=st.integers(1, 4),
    steps=st.integers(1, 5),
    sizes=st.lists(st.integers(1, 3), min_size=2, max_size=3),
    data=st.data(),
)
def test_concat_outputs_zeroes_steps_past_each_length(batch, steps, sizes, data):
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 999)))
    outs = [torch.randn(batch, steps, h, generator=gen) for h in sizes]
    per_source = data.draw(st.booleans())

    def draw_lengths() -> torch.Tensor:
        return torch.tensor(
            data.draw(st.lists(st.integers(0, steps), min_size=batch, max_size=batch))
        )

    lengths = [draw_lengths() for _ in sizes] if per_source else draw_lengths()
    joined = concat_outputs(outs, lengths)
    assert joined.shape == (batch, steps, sum(sizes))
    offsets = np.cumsum([0, *sizes])
    for j, out in enumerate(outs):
        lens = lengths[j] if per_source else lengths
        block = joined[..., offsets[j] : offsets[j + 1]]
        for b in range(batch):
            n = int(lens[b])
            assert torch.equal(block[b, :n], out[b, :n])
            assert not block[b, n:].any()
    assert torch.equal(concat_outputs(outs), torch.cat(outs, dim=-1))


# ------------------------------------------------------------------ learned modules


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _linear(module: torch.nn.Linear, x: np.ndarray) -> np.ndarray:
    out = x @ _np(module.weight).T
    return out + _np(module.bias) if module.bias is not None else out


def _sources(sizes, n: int, batch: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [_make_state(sizes, batch, gen) for _ in range(n)]


MIXED = [LSTMState(4, 3), 5]


@pytest.mark.parametrize("activation", [None, "tanh", "relu"])
def test_state_bridge_maps_each_concatenated_part_through_its_own_linear(activation):
    sources = _sources(MIXED, 2)
    bridge = StateBridge(
        [LSTMState(8, 6), 10], [LSTMState(2, 7), 4], activation=activation
    ).double()
    fused = bridge(sources)
    act = {None: lambda v: v, "tanh": np.tanh, "relu": lambda v: np.maximum(v, 0)}[activation]
    c_in = np.concatenate([_np(s[0].c) for s in sources], -1)
    h_in = np.concatenate([_np(s[0].h) for s in sources], -1)
    g_in = np.concatenate([_np(s[1]) for s in sources], -1)
    assert np.allclose(_np(fused[0].c), act(_linear(bridge.maps[0]["c"], c_in)), atol=1e-13)
    assert np.allclose(_np(fused[0].h), act(_linear(bridge.maps[0]["h"], h_in)), atol=1e-13)
    assert np.allclose(_np(fused[1]), act(_linear(bridge.maps[1]["h"], g_in)), atol=1e-13)
    assert state_sizes(fused) == (LSTMState(2, 7), 4)


def test_state_bridge_takes_one_state_alone_or_in_a_list():
    source = _sources(MIXED, 1)[0]
    bridge = StateBridge(MIXED, [LSTMState(2, 2), 2]).double()
    for a, b in _pairs(bridge(source), bridge([source])):
        assert torch.equal(a, b)


@pytest.mark.parametrize("n", [2, 3])
def test_zoph_knight_basic_equations(n):
    sources = _sources(MIXED, n)
    fusion = ZophKnightFusion(n, MIXED).double()
    fused = fusion(sources)
    h_cat = np.concatenate([_np(s[0].h) for s in sources], -1)
    assert np.allclose(_np(fused[0].h), np.tanh(_linear(fusion.combine[0], h_cat)), atol=1e-13)
    assert np.allclose(_np(fused[0].c), sum(_np(s[0].c) for s in sources), atol=1e-13)
    g_cat = np.concatenate([_np(s[1]) for s in sources], -1)
    assert np.allclose(_np(fused[1]), np.tanh(_linear(fusion.combine[1], g_cat)), atol=1e-13)
    assert state_sizes(fused) == tuple(MIXED)


@pytest.mark.parametrize("n", [2, 3])
def test_child_sum_equations(n):
    sizes = [LSTMState(4, 4), LSTMState(3, 3)]
    sources = _sources(sizes, n)
    fusion = ChildSumFusion(n, sizes).double()
    fused = fusion(sources)
    for k, layer in enumerate(fused):
        hs = [_np(s[k].h) for s in sources]
        cs = [_np(s[k].c) for s in sources]
        iou = sum(_linear(w, h) for w, h in zip(fusion.iou[k], hs))
        i, o, u = np.split(iou, 3, axis=-1)
        c = sigmoid(i) * np.tanh(u) + sum(
            sigmoid(_linear(f, h)) * ck for f, h, ck in zip(fusion.forget[k], hs, cs)
        )
        assert np.allclose(_np(layer.c), c, atol=1e-13)
        assert np.allclose(_np(layer.h), sigmoid(o) * np.tanh(c), atol=1e-13)


@pytest.mark.parametrize("n", [2, 3])
def test_gated_fusion_equations_and_convexity(n):
    sources = _sources(MIXED, n)
    fusion = GatedFusion(n, MIXED).double()
    fused = fusion(sources)

    def mix(linear, context, values):
        logits = _linear(linear, context).reshape(context.shape[0], n, -1)
        weights = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return (weights * np.stack(values, 1)).sum(1)

    ctx0 = np.concatenate([_np(s[0].h) for s in sources], -1)
    assert np.allclose(
        _np(fused[0].c), mix(fusion.gates[0]["c"], ctx0, [_np(s[0].c) for s in sources]), atol=1e-13
    )
    assert np.allclose(
        _np(fused[0].h), mix(fusion.gates[0]["h"], ctx0, [_np(s[0].h) for s in sources]), atol=1e-13
    )
    ctx1 = np.concatenate([_np(s[1]) for s in sources], -1)
    assert np.allclose(
        _np(fused[1]), mix(fusion.gates[1]["h"], ctx1, [_np(s[1]) for s in sources]), atol=1e-13
    )
    stacked = torch.stack([s[1] for s in sources])
    assert (fused[1] <= stacked.max(0).values + 1e-12).all() and (
        fused[1] >= stacked.min(0).values - 1e-12
    ).all()


FUSION_MODULES = {
    "bridge": lambda: StateBridge([LSTMState(4, 4), 4], [LSTMState(3, 3), 2], activation="tanh"),
    "zoph_knight": lambda: ZophKnightFusion(2, [LSTMState(2, 2), 2]),
    "child_sum": lambda: ChildSumFusion(2, [LSTMState(2, 2), LSTMState(2, 2)]),
    "gated": lambda: GatedFusion(2, [LSTMState(2, 2), 2]),
}
_MODULE_SIZES = {"bridge": [LSTMState(2, 2), 2], "child_sum": [LSTMState(2, 2), LSTMState(2, 2)]}


@pytest.mark.parametrize("name", sorted(FUSION_MODULES))
def test_fusion_modules_are_differentiable(name):
    module = FUSION_MODULES[name]().double()
    sizes = _MODULE_SIZES.get(name, [LSTMState(2, 2), 2])
    sources = _sources(sizes, 2, batch=2)
    leaves = [t.clone().requires_grad_(True) for s in sources for t in flatten_state(s)]
    per_source = len(leaves) // 2

    def fn(*tensors):
        states = []
        for j in range(2):
            it = iter(tensors[j * per_source : (j + 1) * per_source])
            states.append(
                tuple(
                    LSTMState(next(it), next(it)) if isinstance(s, LSTMState) else next(it)
                    for s in sizes
                )
            )
        return tuple(flatten_state(module(states)))

    assert torch.autograd.gradcheck(fn, tuple(leaves))
    sum(t.sum() for t in fn(*leaves)).backward()
    for pname, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_sum_and_mean_of_lstm_states_are_per_part():
    sources = _sources([LSTMState(2, 3)], 3)
    for fused, scale in ((sum_states(sources), 1.0), (mean_states(sources), 1 / 3)):
        assert isinstance(fused[0], LSTMState)
        assert torch.allclose(fused[0].c, scale * sum(s[0].c for s in sources), atol=1e-14)
        assert torch.allclose(fused[0].h, scale * sum(s[0].h for s in sources), atol=1e-14)


def test_max_states_is_exactly_independent_of_source_order():
    sources = _sources(MIXED, 3)
    results = [max_states(list(p)) for p in itertools.permutations(sources)]
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in _pairs(results[0], other))
