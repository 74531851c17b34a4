"""The wait for the token budget per size of the prompt found ahead (``solver.budget_wait``)."""
from __future__ import annotations

import numpy as np
import pytest

from solver.budget_wait import budget_wait
from solver.calibration import PRIORS
from solver.catalog import find_gpu, find_model
from solver.engines import find_engine
from solver.roofline import Hardware
from solver.shape import Shape, mix_shape

ENGINE = find_engine("vllm")
MODEL, HW = find_model("llama-3.1-8b"), Hardware.from_specs([find_gpu("A100-80GB")], "fp16")
THETA = PRIORS.theta_rows(ENGINE, ["A100-80GB"], "fp16")


def _wait(shape: Shape, rate: float, scv: float = 0.0):
    one = np.ones(1)
    return budget_wait(shape, THETA, rate * one, 0.03 * one, 60.0 * one, 0.02 * one, ENGINE.token_budget,
                       ENGINE.chunk_tokens, 1.0, scv)


def test_one_size_is_a_one_term_mixture_and_equal_lengths_merge():
    single = Shape(MODEL, HW, "fp16", "fp16", np.ones(1), np.array([1024.0]), np.array([256.0]), np.zeros(1))
    one = _wait(single, 6.0)
    assert len(one.alternatives) == 1 and len(one.iterations) == 2
    # two demands with the same prompt length are one size of the mix: the same wait as the single size
    mix, scv = mix_shape(MODEL, HW, "fp16", "fp16", 1, 0.0, np.array([2.0, 4.0]), np.array([1024.0, 1024.0]),
                         np.array([256.0, 256.0]))
    merged = _wait(mix, 6.0, scv)
    assert len(merged.alternatives) == 1
    assert merged.mean_s[0] == pytest.approx(one.mean_s[0], rel=1e-9)


def test_behind_a_long_prompt_an_arrival_waits_longer_than_behind_the_mean_one():
    """512- and 4,096-token prompts: the wait for a long prompt ahead is its full-budget steps, so the mixture's mean
    wait exceeds that of a prompt of the mix's mean length (which shares the budget with others)."""
    lin, shares = np.array([512.0, 4096.0]), np.array([0.8, 0.2])
    mix, scv = mix_shape(MODEL, HW, "fp16", "fp16", 1, 0.0, shares, lin, np.array([256.0, 256.0]))
    mixed = _wait(mix, 6.0, scv)
    assert len(mixed.alternatives) == 2 and len(mixed.iterations) == 3
    (p_short, w_short), (p_long, w_long) = mixed.alternatives
    assert w_long[0] > 2.0 * w_short[0]
    mean_length = Shape(MODEL, HW, "fp16", "fp16", np.ones(1), np.array([float(shares @ lin)]), np.array([256.0]),
                        np.zeros(1))
    assert mixed.mean_s[0] > _wait(mean_length, 6.0).mean_s[0]
    # the iteration an arrival lands in: a long prompt's full-budget step is longer than a short prompt's
    assert mixed.iterations[1][1][0] > mixed.iterations[0][1][0] > mixed.iterations[2][1][0]
