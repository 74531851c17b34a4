"""Quantiles of a request's wait before its prompt runs (pure numpy): the rest of the iteration it lands in, plus
independent waits that are zero or (hypo)exponential, from the sum's exact tail."""
from __future__ import annotations

import numpy as np


def _landing(iterations: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(share of arrivals, length) of the iteration an arrival lands in: ``iterations`` gives each kind's share of
    the iterations and its length; an arrival lands in one by its share of the time (length-biased)."""
    total = sum((share * length for share, length in iterations), np.zeros(1))
    return [(share * length / np.maximum(total, 1e-300), np.asarray(length, float)) for share, length in iterations]


def residual_s(busy: np.ndarray, iterations: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Mean rest of the iteration an arrival lands in (length-biased: long prompt-carrying iterations catch more
    arrivals). ``iterations``: (share of iterations, length) of each kind; the engine is busy with probability
    ``busy``; ``total_wait_quantile`` has its quantiles (summed with the other waits)."""
    return np.asarray(busy * sum(w * length for w, length in _landing(iterations)) / 2.0, float)


def _hypoexponential_terms(waits: list[tuple[np.ndarray, ...]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """P(V > y) = sum_j c_j exp(-y / mu_j) for y > 0, V the sum of independent waits each 0 with probability 1 - p
    and otherwise exponential of mean m, or, given as (p, m, scv) with scv in [1/2, 1], the sum of two exponential
    phases of means a + b = m whose squared coefficient of variation is scv (over which parts are positive, each sum
    a hypoexponential law)."""
    # distinct means keep the partial fractions finite: a 1e-4 relative nudge between waits, and a wait's two phases
    # at least 2 % of m apart; neither moves a quantile visibly
    phases: list[tuple[int, np.ndarray]] = []  # (wait, phase mean)
    for i, wait in enumerate(waits):
        mean = np.maximum(np.asarray(wait[1], float), 1e-12) * (1.0 + 1e-4 * i)
        if len(wait) < 3:
            phases.append((i, mean))
            continue
        # a^2 + b^2 = scv m^2 with a + b = m: a = m (1 + sqrt(2 scv - 1)) / 2
        root = np.clip(np.sqrt(np.maximum(2.0 * np.asarray(wait[2], float) - 1.0, 0.0)), 0.02, 1.0 - 2e-6)
        phases += [(i, mean * (1.0 + root) / 2.0), (i, mean * (1.0 - root) / 2.0)]
    probs = [np.clip(np.asarray(wait[0], float), 0.0, 1.0) for wait in waits]
    coef = [np.zeros_like(mu) for _, mu in phases]
    for subset in range(1, 2 ** len(waits)):
        chosen = [a for a, (i, _) in enumerate(phases) if subset >> i & 1]
        weight = np.ones_like(phases[0][1])
        for i, p in enumerate(probs):
            weight = weight * (p if subset >> i & 1 else 1.0 - p)
        for a in chosen:
            part = weight
            for b in chosen:
                if b != a:
                    part = part * phases[a][1] / (phases[a][1] - phases[b][1])
            coef[a] = coef[a] + part
    return [(c, mu) for c, (_, mu) in zip(coef, phases)]


def _wait_tail(x: np.ndarray, segments: list[tuple[np.ndarray, np.ndarray]],
               terms: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """P(R + V > x), x > 0, for R uniform on [0, L] with weight w per (w, L) segment (L = 0: R = 0) and P(V > y) =
    sum_j c_j exp(-y / mu_j) from ``terms``."""
    decay = [(c, mu, np.exp(-x / mu)) for c, mu in terms]  # exp(-x / mu) of every term, once per x
    at_zero = sum((c * e for c, _, e in decay), np.zeros_like(x))
    tail = np.zeros_like(x)
    for weight, length in segments:
        a = np.minimum(x, length)
        spread = sum((c * mu * (np.exp(-(x - a) / mu) - e) for c, mu, e in decay), np.zeros_like(x))
        uniform = (np.maximum(length - x, 0.0) + spread) / np.maximum(length, 1e-300)
        tail = tail + weight * np.where(length > 0, uniform, at_zero)
    return tail


def total_wait_quantile(q: float, busy: np.ndarray, iterations: list[tuple[np.ndarray, np.ndarray]],
                        waits: list[tuple[np.ndarray, ...]], step: tuple[np.ndarray, np.ndarray] | None = None,
                        one_of: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """``q`` quantile of the rest of the running iteration (``residual_s``) plus independent waits given as
    (P(W > 0), E[W | W > 0]), each exponential when positive (or, given as (P, E, scv), two exponential phases of
    that squared coefficient of variation), plus at most one of the exponential waits ``one_of`` (P_j, E_j) (a
    mixture: the wait for whichever prompt size is ahead), plus a ``step`` (P, d) that is d with probability P and
    0 otherwise: from the sum's exact tail, found by bisection.

    A moment fit of the sum (a gamma law) overstates the tail where a bounded part (the rest of one iteration) meets a
    rare long one (a wait for slots or budget), and a sum of the parts' quantiles overstates it more: they rarely
    peak together.
    """
    busy = np.asarray(busy, float)
    zero = np.zeros_like(busy)
    segments = [(1.0 - busy, zero)] + [(busy * w, length) for w, length in _landing(iterations)]
    long = np.maximum.reduce([length for _, length in segments])
    terms = _hypoexponential_terms(waits)
    if one_of:  # the tail is linear in the law: P(none) x (the rest) + sum_j P_j x (the rest + E_j)
        none = 1.0 - sum(np.asarray(p, float) for p, _ in one_of)
        terms = [(none * c, mu) for c, mu in terms]
        certain = np.ones_like(busy)
        for p, mean in one_of:
            terms += [(np.asarray(p, float) * c, mu) for c, mu in _hypoexponential_terms([*waits, (certain, mean)])]
    p_step, d_step = (zero, zero) if step is None else (np.asarray(step[0], float), np.asarray(step[1], float))

    def tail(x: np.ndarray) -> np.ndarray:
        def before(y: np.ndarray) -> np.ndarray:  # P(R + V > y), 1 below 0
            return np.where(y < 0.0, 1.0, _wait_tail(np.maximum(y, 1e-300), segments, terms))
        return np.asarray((1.0 - p_step) * before(x) + p_step * before(x - d_step), float)

    beyond = 1.0 - q
    slowest = np.maximum.reduce([mu for _, mu in terms])
    weight = np.maximum(sum(np.abs(c) for c, _ in terms), beyond)
    lo, hi = zero, long + d_step + slowest * np.log(weight / beyond)
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        over = tail(mid) > beyond
        lo, hi = np.where(over, mid, lo), np.where(over, hi, mid)
    return np.where(tail(zero) > beyond, hi, 0.0)
