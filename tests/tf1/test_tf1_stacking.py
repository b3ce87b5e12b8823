"""tf1.as_stack of programs with DropoutWrapper and ResidualWrapper: the stack keeps the
wrappers' dropout when a StackedRNN computes the same thing, and refuses (saying why) otherwise.

Eval mode: the stack and the facade program give the same numbers.  Training mode: the masks
differ (each draws its own), so their distributions are compared: one input sequence repeated
in B rows gives B independent draws of the whole computation; the per-output mean, standard
deviation and the correlations between outputs (variational masks, shared by all steps,
correlate the steps) must agree, and a stack with the wrong probability or kind must not.
"""

from __future__ import annotations

import pytest
import torch

from rnnfuse import tf1

B = 4000


def _dropout_program(variational: bool = False) -> tf1.MultiRNNCell:
    """Output dropout 0.8 after layer 0, input 0.875 and output 0.7 around layer 1: between
    layers 0 and 1 the masks compose to keep 0.8 * 0.875 = 0.7, the same as between 1 and 2."""

    def drop(cell, **keep):
        return tf1.DropoutWrapper(cell, variational_recurrent=variational, **keep)

    return tf1.MultiRNNCell(
        [
            drop(tf1.GRUCell(4), output_keep_prob=0.8),
            drop(tf1.LSTMCell(4), input_keep_prob=0.875, output_keep_prob=0.7),
            tf1.GRUCell(3),
        ]
    )


def _built(cell, x):
    tf1.dynamic_rnn(cell, x)
    return cell


def _statistics(outputs: torch.Tensor):
    flat = outputs.reshape(outputs.shape[0], -1)
    return flat.mean(0), flat.std(0), torch.corrcoef(flat.T)


def _differences(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """(largest |mean difference| in standard errors, largest relative std difference,
    largest correlation difference) between two sets of B draws."""
    (ma, sa, ca), (mb, sb, cb) = _statistics(a), _statistics(b)
    z = float(((ma - mb).abs() / torch.sqrt((sa**2 + sb**2) / a.shape[0])).max())
    return z, float(((sa - sb).abs() / sa).max()), float((ca - cb).abs().max())


@pytest.mark.parametrize("variational", [False, True])
def test_dropout_wrappers_become_the_stacks_dropout(variational):
    torch.manual_seed(0)
    one = torch.randn(1, 6, 3)
    cell = _built(_dropout_program(variational), one)
    stack = tf1.as_stack(cell)
    assert stack.dropout == pytest.approx(0.3) and stack.variational_dropout is variational
    cell.eval(), stack.eval()
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 2, 4])
    with torch.no_grad():
        assert torch.equal(
            stack(x, lengths)[0], tf1.dynamic_rnn(cell, x, sequence_length=lengths)[0]
        )
    cell.train(), stack.train()
    draws = one.expand(B, -1, -1).contiguous()
    with torch.no_grad():
        program, converted = tf1.dynamic_rnn(cell, draws)[0], stack(draws)[0]
    z, std, corr = _differences(program, converted)
    assert z < 5 and std < 0.1 and corr < 0.2, (z, std, corr)
    # the same check tells a wrong probability or a wrong kind of dropout apart
    for attribute, value in (("dropout", 0.2), ("variational_dropout", not variational)):
        wrong = tf1.as_stack(cell)
        setattr(wrong, attribute, value)
        with torch.no_grad():
            _, std, corr = _differences(program, wrong.train()(draws)[0])
        assert std > 0.2 or corr > 0.4, (attribute, std, corr)


def test_bidirectional_pair_and_residual_layers():
    """GNMT-like: a bidirectional layer whose directions drop their outputs alike, then a
    residual layer written DropoutWrapper(ResidualWrapper(cell)) (the dropout after the sum)."""
    torch.manual_seed(1)
    x, lengths = torch.randn(2, 5, 3), torch.tensor([5, 3])
    fw = tf1.DropoutWrapper(tf1.BasicLSTMCell(4), output_keep_prob=0.9)
    bw = tf1.DropoutWrapper(tf1.BasicLSTMCell(4), output_keep_prob=0.9)
    uni = tf1.MultiRNNCell(
        [
            tf1.BasicLSTMCell(8),
            tf1.DropoutWrapper(
                tf1.ResidualWrapper(tf1.BasicLSTMCell(8)), input_keep_prob=0.9, output_keep_prob=0.9
            ),
            tf1.ResidualWrapper(tf1.BasicLSTMCell(8)),
        ]
    )
    for c in (fw, bw, uni):
        c.eval()
    (out_fw, out_bw), _ = tf1.bidirectional_dynamic_rnn(fw, bw, x, sequence_length=lengths)
    want, _ = tf1.dynamic_rnn(uni, torch.cat([out_fw, out_bw], -1), sequence_length=lengths)
    stack = tf1.as_stack([(fw, bw), uni])
    assert stack.bidirectional == (True, False, False, False)
    assert stack.residual == (False, False, True, True)
    assert stack.dropout == pytest.approx(0.1) and not stack.variational_dropout
    with torch.no_grad():
        assert torch.allclose(stack.eval()(x, lengths)[0], want, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "layers, message",
    [
        (
            lambda: [
                tf1.DropoutWrapper(tf1.GRUCell(4), output_keep_prob=0.8, state_keep_prob=0.9),
                tf1.GRUCell(4),
            ],
            r"layer 0: DropoutWrapper\(state_keep_prob=0.9\) drops the recurrent state",
        ),
        (
            lambda: [tf1.DropoutWrapper(tf1.GRUCell(4), input_keep_prob=0.8), tf1.GRUCell(4)],
            r"layer 0: an input dropout drops the stack's input",
        ),
        (
            lambda: [tf1.GRUCell(4), tf1.DropoutWrapper(tf1.GRUCell(4), output_keep_prob=0.8)],
            r"layer 1: an output dropout on the top layer drops the stack's outputs",
        ),
        (
            lambda: [
                tf1.GRUCell(4),
                tf1.ResidualWrapper(tf1.DropoutWrapper(tf1.GRUCell(4), output_keep_prob=0.8)),
            ],
            r"layer 1: a DropoutWrapper inside a ResidualWrapper drops the cell's input or output but not the residual",
        ),
        (
            lambda: [
                tf1.DropoutWrapper(tf1.GRUCell(4), output_keep_prob=0.8),
                tf1.GRUCell(4),
                tf1.GRUCell(4),
            ],
            r"the dropout between layers differs \(0->1: keep 0.8, 1->2: none\)",
        ),
        (
            lambda: [
                tf1.DropoutWrapper(tf1.GRUCell(4), output_keep_prob=0.8),
                tf1.DropoutWrapper(tf1.GRUCell(4), input_keep_prob=0.8, variational_recurrent=True),
                tf1.GRUCell(4),
            ],
            r"between layers 0 and 1: variational and per-step dropouts together are not one dropout",
        ),
    ],
)
def test_dropout_without_a_stack_equivalent_is_refused(layers, message):
    torch.manual_seed(2)
    x = torch.randn(2, 5, 4)
    cell = _built(tf1.MultiRNNCell(layers()), x)
    with pytest.raises(
        ValueError, match=r"DropoutWrappers' dropout has no StackedRNN equivalent: " + message
    ):
        tf1.as_stack(cell)
    stack = tf1.as_stack(cell, ignore_dropout=True)  # the same numbers in eval mode, no dropout
    assert stack.dropout == 0.0
    cell.eval()
    with torch.no_grad():
        assert torch.equal(stack(x)[0], tf1.dynamic_rnn(cell, x)[0])


def test_bidirectional_input_dropout_is_refused():
    torch.manual_seed(3)
    x = torch.randn(2, 5, 3)
    fw, bw = tf1.BasicLSTMCell(4), tf1.BasicLSTMCell(4)
    tf1.bidirectional_dynamic_rnn(fw, bw, x)
    top = tf1.DropoutWrapper(tf1.GRUCell(4), input_keep_prob=0.8)
    tf1.dynamic_rnn(top, torch.randn(2, 5, 8))
    assert tf1.as_stack([(fw, bw), top]).dropout == pytest.approx(0.2)  # fw|bw dropped once: fine
    pair = (
        tf1.DropoutWrapper(fw, input_keep_prob=0.8),
        tf1.DropoutWrapper(bw, input_keep_prob=0.8),
    )
    with pytest.raises(
        ValueError,
        match=r"layer 1: the forward and backward cells of a bidirectional layer "
        r"drop its input each with their own masks",
    ):
        tf1.as_stack([_built(tf1.GRUCell(3), x), pair])
    with pytest.raises(ValueError, match=r"a ResidualWrapper in a bidirectional pair"):
        tf1.as_stack([(tf1.ResidualWrapper(fw), bw)])
