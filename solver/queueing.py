"""Queueing formulas of the continuous-batching model (pure numpy): Erlang C, the dispersion of the slots held
when the load feeds back on the holding time, the residual of the running iteration, waits that are zero or
exponential, and the compound-Poisson prompt tokens of a step."""
from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv

SCALAR_ROWS = 4  # rows of one server count up to which the recursion runs on Python floats


def erlang_c(servers: np.ndarray, load: np.ndarray) -> np.ndarray:
    """Probability that an arrival waits in M/M/c with ``servers`` slots and offered ``load`` (Erlang C)."""
    load = np.asarray(load, float)
    servers = np.broadcast_to(np.asarray(servers, int), np.shape(load))
    flat_c, flat_a = servers.ravel(), load.ravel()
    b = np.ones(flat_a.size)
    if flat_a.size:
        # Erlang B by its recursion, every row only as far as its own server count goes: rows sorted by servers,
        # step k updates the suffix of rows with at least k (one slice per step however many counts there are)
        order = np.argsort(flat_c, kind="stable")
        a, bc = flat_a[order], np.ones(flat_a.size)
        first = np.searchsorted(flat_c[order], np.arange(1, int(flat_c.max(initial=0)) + 1), side="left")
        for k, start in enumerate(first, start=1):
            x, y = a[start:], bc[start:]
            bc[start:] = x * y / (k + x * y)
        b[order] = bc
    rho = load / servers
    blocked = b.reshape(load.shape)
    return np.where(rho < 1.0, blocked / np.maximum(1.0 - rho * (1.0 - blocked), 1e-12), 1.0)


def elastic_erlang_c(servers: np.ndarray, load: np.ndarray, elasticity: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Erlang C when a slot's holding time grows with the slots held: H(k) = H (1 + eps (k - a) / a) at k busy
    slots, a the mean load, so state k offers a_k = a + eps (k - a) (the departure rate per slot falls as slots
    fill; eps = 0 is Erlang C). Returns (P(wait), a_c): an arrival waits when all ``servers`` are busy, and the
    queue then drains at c / H(c) - lam, i.e. a mean wait of H a_c / (a (c - a_c)).
    The birth-death chain's variance is a / (1 - eps) (linear-noise approximation): ``feedback_dispersion``."""
    load = np.asarray(load, float)
    servers = np.broadcast_to(np.asarray(servers, int), np.shape(load))
    eps = np.broadcast_to(np.clip(np.asarray(elasticity, float), 0.0, 0.95), np.shape(load))
    flat_c, flat_a, flat_e = servers.ravel(), load.ravel(), eps.ravel()
    b = np.zeros(flat_a.size)
    # rows whose slots sit more than 10 standard deviations of the chain above its load never wait (< 1e-20)
    near = np.flatnonzero(~((flat_c - flat_a) > 10.0 * np.sqrt(flat_a / (1.0 - flat_e) + 1.0)))
    if 0 < near.size <= SCALAR_ROWS and np.all(np.isfinite(flat_a[near]) & (flat_a[near] >= 0)):
        # a pool's own check (promise.py) has one row and thousands of slots (c / c_a^2): the same IEEE
        # operations on Python floats, bit for bit, without numpy's per-step cost (~20x faster)
        b[near] = [_erlang_b(float(flat_a[j]), int(flat_c[j]), float(flat_e[j])) for j in near]
    elif near.size:  # Erlang B's recursion with the state's own load, rows sorted by servers (as erlang_c)
        order = near[np.argsort(flat_c[near], kind="stable")]
        a, e, bc = flat_a[order], flat_e[order], np.ones(order.size)
        first = np.searchsorted(flat_c[order], np.arange(1, int(flat_c[order].max(initial=0)) + 1), side="left")
        for k, start in enumerate(first, start=1):
            x = np.maximum(a[start:] + e[start:] * (k - a[start:]), 0.0) * bc[start:]
            bc[start:] = x / (k + x)
        b[order] = bc
    a_c = np.maximum(load + eps * (servers - load), 0.0)
    rho = a_c / servers
    blocked = b.reshape(load.shape)
    return np.where(rho < 1.0, blocked / np.maximum(1.0 - rho * (1.0 - blocked), 1e-12), 1.0), a_c


def _erlang_b(load: float, servers: int, eps: float) -> float:
    """Blocking of one row, by the same recursion as ``elastic_erlang_c``'s arrays."""
    bc = 1.0
    for k in range(1, servers + 1):
        x = max(load + eps * (k - load), 0.0) * bc
        bc = x / (k + x)
    return bc


DECODE_FEEDBACK = 0.7  # fitted to the simulator's dispersion of slots held (see feedback_dispersion)


def feedback_dispersion(prompt_share: np.ndarray, decode_elasticity: np.ndarray) -> np.ndarray:
    """Variance over mean of the slots held (1 for Poisson) when the load feeds back on the holding time.

    A request holds its slot for L_out decode steps plus the prompt work of the requests that arrive meanwhile,
    and those are about the slots held when it leaves, so the departure rate per slot falls as slots fill: with
    holding time H(N) at N slots held, the linear-noise approximation of that birth-death process gives the
    variance N / (1 - eps), eps = d ln H / d ln N. One more request lengthens H by the share of time spent on
    prompts (``prompt_share``, 1 - t_decode / t) and by the decode step's elasticity in the running decodes, which
    a request sees averaged over its stay (weight DECODE_FEEDBACK, fitted to the simulator: dispersions 1.2-7.8).
    """
    phi = np.clip(np.asarray(prompt_share, float), 0.0, 1.0)
    eps = np.minimum(phi + (1.0 - phi) * DECODE_FEEDBACK * np.clip(decode_elasticity, 0.0, 1.0), 0.9)
    return np.asarray(1.0 / (1.0 - eps), float)


def holding_overlap(holding_s: np.ndarray, weights: np.ndarray) -> float:
    """E[min(H1, H2)] / E[H] for two independent holding times drawn from ``holding_s`` with ``weights``: 1 when
    every request holds its slot as long; in an infinite-server queue fed by arrivals of scv c_a^2 the count's
    variance over its mean is 1 + (c_a^2 - 1) times this (Whitt), so a mix of sizes keeps more of the Poisson
    spread behind a round-robin router."""
    h = np.asarray(holding_s, float)
    w = np.asarray(weights, float) / max(float(np.sum(weights)), 1e-300)
    mean = float(w @ h)
    return float(w @ np.minimum.outer(h, h) @ w) / mean if mean > 0 else 1.0


def _long_share(share: np.ndarray, t_mix: np.ndarray, t_dec: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(long iteration, short iteration, time share of the long ones) when a share ``share`` of iterations lasts
    ``t_mix`` and the rest ``t_dec``."""
    long, short = np.maximum(t_mix, t_dec), np.minimum(t_mix, t_dec)
    frac = np.where(t_mix >= t_dec, share, 1.0 - share)
    return long, short, frac * long / np.maximum(frac * long + (1.0 - frac) * short, 1e-300)


def residual_s(busy: np.ndarray, share: np.ndarray, t_mix: np.ndarray, t_dec: np.ndarray, q: float | None
              ) -> np.ndarray:
    """Rest of the iteration an arrival lands in (length-biased: long prompt-carrying iterations catch more
    arrivals). A share ``share`` of iterations lasts ``t_mix``, the rest ``t_dec``; the engine is busy with
    probability ``busy``. Returns the mean, or the ``q`` quantile of the piecewise-linear tail
    P(R > x) = busy * (s (1 - x / t_mix)^+ + (1 - s) (1 - x / t_dec)^+), s the time share of long iterations."""
    long, short, s = _long_share(share, t_mix, t_dec)
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


def compound_poisson_pmf(mean_count: float, lengths: np.ndarray, weights: np.ndarray, top: float,
                         cells: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of the tokens a Poisson number (mean ``mean_count``) of prompts brings, each of a length drawn
    from ``lengths`` with probabilities ``weights``, up to ``top`` tokens (Panjer's recursion on a grid of at most
    ``cells`` cells; lengths rounded up to a cell). Returns (tokens at each grid point, probability of each)."""
    unit = max(float(top) / cells, 1.0)
    size = np.maximum(np.ceil(np.asarray(lengths, float) / unit), 1.0).astype(int)
    w = np.asarray(weights, float) / max(float(np.sum(weights)), 1e-300)
    grid = int(np.floor(float(top) / unit))
    pmf = np.zeros(grid + 1)
    pmf[0] = np.exp(-mean_count)
    keep = size <= grid
    size, jump = size[keep], mean_count * w[keep] * size[keep]  # Panjer for Poisson: p(x) = sum_j (lam f_j j / x) p(x-j)
    for x in range(1, grid + 1):
        fit = size <= x
        pmf[x] = float(jump[fit] @ pmf[x - size[fit]]) / x
    return np.arange(grid + 1) * unit, pmf


def residual_moments(busy: np.ndarray, share: np.ndarray, t_mix: np.ndarray, t_dec: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(R > 0), E[R], E[R^2]) of ``residual_s``'s rest of the running iteration: uniform over a long or a short
    iteration, length-biased, when the engine is busy."""
    long, short, s = _long_share(share, t_mix, t_dec)
    mean = busy * (s * long + (1.0 - s) * short) / 2.0
    second = busy * (s * long ** 2 + (1.0 - s) * short ** 2) / 3.0
    return np.asarray(busy, float), np.asarray(mean, float), np.asarray(second, float)


def exponential_moments(p_wait: np.ndarray, mean_wait_given_wait: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(W > 0), E[W], E[W^2]) of a wait that is 0 with probability 1 - p_wait and exponential otherwise."""
    p = np.clip(np.asarray(p_wait, float), 0.0, 1.0)
    m = np.asarray(mean_wait_given_wait, float)
    return p, p * m, 2.0 * p * m * m


def sum_quantile(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], q: float) -> np.ndarray:
    """``q`` quantile of a sum of independent waits, each given as (P(W_i > 0), E[W_i], E[W_i^2]).

    The sum is 0 when every part is, and otherwise a gamma law with the sum's conditional mean and variance (exact
    for one exponential part; a sum of the parts' own quantiles would overstate the tail: they rarely peak together).
    """
    p_zero = np.ones_like(parts[0][0])
    mean = np.zeros_like(p_zero)
    second = np.zeros_like(p_zero)
    for p, m, m2 in parts:
        second = second + m2 + 2.0 * mean * m  # E[(S + W)^2] for independent S, W
        mean = mean + m
        p_zero = p_zero * (1.0 - p)
    p_pos = np.maximum(1.0 - p_zero, 1e-300)
    mean_pos = mean / p_pos
    var_pos = np.maximum(second / p_pos - mean_pos ** 2, 1e-300 + 1e-12 * mean_pos ** 2)
    shape, scale = mean_pos ** 2 / var_pos, var_pos / np.maximum(mean_pos, 1e-300)
    q_pos = np.clip((q - p_zero) / p_pos, 0.0, 1.0 - 1e-12)
    out = scale * gammaincinv(np.maximum(shape, 1e-6), q_pos)
    return np.where((q > p_zero) & (mean > 0), out, 0.0)
