"""Queueing formulas of the continuous-batching model (pure numpy): Erlang C, the residual of the running
iteration, and waits that are zero or exponential."""
from __future__ import annotations

import numpy as np

SCALAR_ROWS = 4  # rows of one server count up to which the recursion runs on Python floats


def erlang_c(servers: np.ndarray, load: np.ndarray) -> np.ndarray:
    """Probability that an arrival waits in M/M/c with ``servers`` slots and offered ``load`` (Erlang C)."""
    servers = np.broadcast_to(np.asarray(servers, int), np.shape(load))
    b = np.ones_like(load, dtype=float)
    for c in np.unique(servers):  # Erlang B by its recursion, each server count only as far as it goes
        rows = np.flatnonzero(servers == c)
        a, bc = load[rows], np.ones(len(rows))
        if len(rows) <= SCALAR_ROWS and np.all(np.isfinite(a) & (a >= 0)):
            # a pool's own check (promise.py) has one row and thousands of slots (c / c_a^2): the same IEEE
            # operations on Python floats, bit for bit, without numpy's per-call cost (~20x faster)
            b[rows] = [_erlang_b(float(x), int(c)) for x in a]
            continue
        for k in range(1, int(c) + 1):
            bc = a * bc / (k + a * bc)
        b[rows] = bc
    rho = load / servers
    return np.where(rho < 1.0, b / np.maximum(1.0 - rho * (1.0 - b), 1e-12), 1.0)


def _erlang_b(load: float, servers: int) -> float:
    """Erlang B of one row, by the same recursion as ``erlang_c``'s arrays."""
    bc = 1.0
    for k in range(1, servers + 1):
        bc = load * bc / (k + load * bc)
    return bc


def residual_s(busy: np.ndarray, share: np.ndarray, t_mix: np.ndarray, t_dec: np.ndarray, q: float | None
              ) -> np.ndarray:
    """Rest of the iteration an arrival lands in (length-biased: long prompt-carrying iterations catch more
    arrivals). A share ``share`` of iterations lasts ``t_mix``, the rest ``t_dec``; the engine is busy with
    probability ``busy``. Returns the mean, or the ``q`` quantile of the piecewise-linear tail
    P(R > x) = busy * (s (1 - x / t_mix)^+ + (1 - s) (1 - x / t_dec)^+), s the time share of long iterations."""
    long, short = np.maximum(t_mix, t_dec), np.minimum(t_mix, t_dec)
    frac = np.where(t_mix >= t_dec, share, 1.0 - share)
    s = frac * long / np.maximum(frac * long + (1.0 - frac) * short, 1e-300)
    if q is None:
        return np.asarray(busy * (s * long + (1.0 - s) * short) / 2.0, float)
    tail = 1.0 - q
    beyond = long * (1.0 - tail / np.maximum(busy * s, 1e-300))  # the quantile if it lies past the short ones
    within = (1.0 - tail / np.maximum(busy, 1e-300)) / (s / long + (1.0 - s) / np.maximum(short, 1e-300))
    x = np.where(beyond >= short, beyond, within)
    return np.where(busy > tail, np.maximum(x, 0.0), 0.0)


def wait_quantile(p_wait: np.ndarray, mean_wait_given_wait: np.ndarray, q: float | None) -> np.ndarray:
    """Quantile (or mean) of a wait that is 0 with probability 1 - p_wait and exponential otherwise."""
    if q is None:
        return np.asarray(p_wait * mean_wait_given_wait, float)
    tail = 1.0 - q
    return np.where(p_wait > tail, mean_wait_given_wait * np.log(np.maximum(p_wait, 1e-300) / tail), 0.0)
