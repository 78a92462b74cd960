"""An unrolled RNN ArbNet (tied steps = global modulus hash) equals torch.nn.RNN, outputs and gradients."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hashlab.maps.rnn import RNNGeometry, rnn_map
from trainers.torch_backend.equivalence import check_rnn_equivalence, rnn_arbnet_forward

rnn_geometries = st.builds(RNNGeometry, st.integers(1, 7), st.integers(1, 9), st.integers(1, 8), st.booleans())


@settings(max_examples=40)
@given(rnn_geometries)
def test_rnn_arbnet_matches_torch_rnn_in_float64_and_float32(g):
    for dtype in (torch.float64, torch.float32):
        rep = check_rnn_equivalence(g, rnn_map(g), dtype=dtype, seed=2)
        assert rep.passed, rep.to_dict()
    assert {"output", "h_n", "grad_weights", "grad_input"} <= set(rep.errors)
    assert ("grad_bias_ih" in rep.errors) == g.bias


def test_long_sequence_float64_error_stays_tiny():
    rep = check_rnn_equivalence(
        RNNGeometry(28, 64, 28), rnn_map(RNNGeometry(28, 64, 28)), dtype=torch.float64, batch_size=4
    )
    assert rep.passed and rep.max_abs_error < 1e-12, rep.to_dict()


def test_an_untied_step_fails_the_check():
    g = RNNGeometry(3, 4, 5)
    imap = rnn_map(g)
    idx = np.array(imap.layers[2].indices)
    idx[1, 4], idx[2, 0] = idx[2, 0], idx[1, 4]  # step 2 swaps two weights: no longer torch.nn.RNN
    layers = list(imap.layers)
    layers[2] = dataclasses.replace(layers[2], indices=idx)
    rep = check_rnn_equivalence(g, dataclasses.replace(imap, layers=tuple(layers)))
    assert not rep.passed and rep.errors["output"] > 1e-3


def test_forward_rejects_a_sequence_of_the_wrong_length():
    g = RNNGeometry(2, 3, 4)
    with pytest.raises(ValueError, match="x has 5 time steps but the map unrolls 4"):
        rnn_arbnet_forward(torch.zeros(1, 5, 2), torch.zeros(g.table_size), rnn_map(g), g)
    with pytest.raises(ValueError, match="input_size >= 1"):
        check_rnn_equivalence(RNNGeometry(0, 3, 2), rnn_map(RNNGeometry(0, 3, 2)))
