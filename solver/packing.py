"""A continuous-batching replica's steps when prompts arrive at a rate: the scheduler packs the waiting prompts into
the token budget the running decodes leave (``batched_iteration_s``, its fixed point ``batched_fixed_point``), and
the throughput of a replica whose every slot is held (``full_replica_rate``), which the wait for a slot drains at."""
from __future__ import annotations

import numpy as np

from .engines import EngineProfile
from .prefill import packed_prefill
from .queueing import compound_poisson_pmf, erlang_phases, renewal_count_sf, rest_alone_excess
from .roofline import IterationWork, gemm_parts, time_s
from .shape import Shape


def branches(w: IterationWork, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An iteration's calibrated (compute, memory, rest) parts: ``time_s`` is max(compute, memory) + rest, each
    GEMM branch with the unhidden share of the other (``roofline.gemm_parts``)."""
    rest = theta[..., 2] * w.kv_s + theta[..., 3] * w.comm_s + w.host_s + theta[..., 4] * w.steps \
        + theta[..., 5] * w.layer_steps
    return (*gemm_parts(theta[..., 0] * w.compute_s, theta[..., 1] * w.weight_s), rest)


FULL_RATE_STEPS = 30  # damped steps of full_replica_rate: converged to ~1e-7 on part 6's replicas (2e-6 after 20)


def full_replica_rate(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: np.ndarray) -> np.ndarray:
    """Requests/s a replica completes while every slot is held (requests queue for one): X = slots / H, H = own
    prefill + (L_out - 1) mean steps. Each step decodes the slots not prefilling (slots - X x prefill, Little's law)
    and packs the prompts admitted at X, the departures' rate (``batched_iteration_s``, ``packed_prefill``), by a
    damped fixed point. A step spends at most the token budget and a request L_in + L_out - 1 tokens of it, so X is
    at most budget / (t (L_in + L_out - 1)); where that binds (long prompts over many slots: prompt-saturated),
    admitted prompts wait for the budget in their slots and only X t (L_out - 1) slots decode. (3,072/192 tokens
    over 128 slots: +4.5-4.7 % against the replay's saturated rate on H100, L40S and A100 without that bound, 0.0 %
    with it.) Independent of the arrival rate, so a capacity search computes it once. (Part 8 of
    benchmarks/simulate.py: -0.3 % median against the simulator's saturated throughput, p90 |error| 1.0 %; the
    model's own saturated rate, where its slots held reach the cap, +0.6 % and 1.5 %, because there the count still
    fluctuates below the cap and steps see fewer decodes.)"""
    cap = np.asarray(max_seqs, float) * np.ones(np.shape(shape.input_tokens))
    ones = np.ones_like(cap)
    l_out = shape.output_tokens.astype(float)
    budget, chunk = float(engine.token_budget), float(engine.chunk_tokens)
    step = time_s(shape.work(cap, 0.0, 0.0, runs=ones), theta)
    l_in = shape.input_tokens.astype(float)
    rate, own = cap / np.maximum(l_out * step, 1e-300), np.zeros_like(cap)
    saturated = np.zeros(cap.shape, bool)
    for _ in range(FULL_RATE_STEPS):
        # prompt-saturated (every step spends the whole token budget): admitted prompts wait for it in their slots,
        # so only X t (L_out - 1) slots decode (Little's law), not all but the X x prefill ones
        decodes = np.maximum(np.where(saturated, rate * step * (l_out - 1.0), cap - rate * own), 1.0)
        step = batched_iteration_s(shape, theta, rate, budget, step, decodes)
        own = packed_prefill(shape, theta, decodes, budget, chunk, rate, step, 1.0).mean_s
        by_slots = cap / np.maximum(own + (l_out - 1.0) * step, 1e-300)
        # a request spends L_in + L_out - 1 tokens of the budget, and a step spends at most the budget
        by_budget = budget / np.maximum(step * (l_in + l_out - 1.0), 1e-300)
        saturated = by_budget < by_slots
        rate = 0.5 * (rate + np.minimum(by_slots, by_budget))
    return np.asarray(rate, float)


def batched_iteration_s(shape: Shape, theta: np.ndarray, rate: np.ndarray, budget: float, t: np.ndarray,
                        decodes: np.ndarray | None = None, arrival_scv: np.ndarray | float = 1.0) -> np.ndarray:
    """Mean iteration time when a Poisson number of prompts (mean rate*t) arrives per iteration and the scheduler
    packs the waiting ones into the token budget the decodes leave (``room``). Behind a round-robin router
    (``arrival_scv`` 1 / k) the count is an Erlang-k stream's: two prompts rarely land in one step.

    The roofline is convex in the prompt tokens (a memory-bound decode-only step, compute-bound steps with
    prompts), so one chunk per iteration in a share of iterations (``mean_iteration_s``) underestimates it where
    several short prompts land in one step. Prompt tokens beyond the room wait for the next iterations, which are
    then full instead of prompt-free (work is conserved); a prompt longer than the room is full steps and a short
    last one.
    """
    l_in, l_out = shape.input_tokens.astype(float), shape.output_tokens.astype(float)
    n = rate * t * l_out if decodes is None else decodes
    room = np.maximum(budget - n, 1.0)
    ones = np.ones_like(rate)
    c0, m0, r0 = branches(shape.work(n, 0.0, 0.0, runs=ones), theta)
    c1, m1, r1 = branches(shape.work(n, room, room * shape.pairs_per_token, runs=ones), theta)

    # time of a step with x prompt tokens: m(x) + r(x) + (c(x) - m(x))^+, every part affine in x
    gap0, gap_slope = c0 - m0, (c1 - m1 - c0 + m0) / room
    lin0, lin_slope = m0 + r0, (m1 + r1 - m0 - r0) / room
    # a mix of prompt lengths as lumps of the size-biased length E[L^2]/E[L] arriving at the rate that keeps the
    # tokens per step: the compound Poisson's mean and variance are matched (one size: L_in and rate*t)
    lump = np.maximum(2.0 * shape.pairs_per_token, 1.0)
    mu = rate * t * l_in / lump
    fits = np.floor(room / lump)  # whole prompts that fit beside the decodes
    # the loop runs over rows where packing matters: short prompts whose tokens per step stay below the room
    rows = np.flatnonzero((fits >= 1.0) & (mu * lump < room))
    mean_x = np.minimum(mu * lump, room)  # prompt tokens per step (work conserved)
    # prompt-saturated rows: every step is full; long prompts (one chunk fills the room): a share of steps is
    share = mean_x / room
    excess = (1.0 - share) * np.maximum(gap0, 0.0) + share * np.maximum(gap0 + gap_slope * room, 0.0)
    # a prompt longer than the room is whole full steps and a last step of the rest, which runs alone unless the
    # next prompt fills it (about the share of full steps): alone it costs (c - m)^+ at the rest's tokens, not the
    # rest's share of a full step's (the gap is negative at no prompt tokens, so that share overstates it)
    rest = np.where(fits < 1.0, lump - np.floor(lump / room) * room, 0.0)
    pro_rata = rest / room * np.maximum(gap0 + gap_slope * room, 0.0) + (1.0 - rest / room) * np.maximum(gap0, 0.0)
    alone = np.clip(1.0 - share, 0.0, 1.0) * np.where(rest > 0, mu, 0.0)
    excess = excess + alone * (np.maximum(gap0 + gap_slope * rest, 0.0) - pro_rata)
    if shape.prompt_mix is not None and mean_x.size == 1 and mean_x[0] < room[0]:  # one pool's mix: its tokens exactly
        tokens, pmf = compound_poisson_pmf(float(rate[0] * t[0]), *shape.prompt_mix, top=float(room[0]),
                                           phases=float(np.ravel(erlang_phases(arrival_scv))[0]))
        below, tokens_below = float(pmf.sum()), float(pmf @ tokens)
        full, spill = max(1.0 - below, 0.0), float(np.clip((mean_x[0] - tokens_below) / room[0] - max(1.0 - below, 0.0),
                                                             0.0, pmf[0]))
        g0, gs = float(gap0[0]), float(gap_slope[0])
        full_gap = max(g0 + gs * float(room[0]), 0.0)
        excess[0] = pmf @ np.maximum(g0 + gs * tokens, 0.0) + (full + spill) * full_gap - spill * max(g0, 0.0)
        excess[0] += rest_alone_excess(shape.prompt_mix, float(rate[0]), float(t[0]), float(room[0]), g0, gs,
                                        float(lin0[0] + lin_slope[0] * room[0]) + full_gap, arrival_scv)
        rows = rows[:0]
    if rows.size:
        m, f, li, rm, g0, gs = mu[rows], fits[rows], lump[rows], room[rows], gap0[rows], gap_slope[rows]
        top = float(np.max(m))
        k_hi = int(min(float(np.max(f)), np.ceil(top + 10.0 * np.sqrt(top) + 10.0)))
        phases = (erlang_phases(arrival_scv) * np.ones_like(rate))[rows]
        renewal = bool(np.any(np.rint(phases) > 1))
        pmf = np.exp(-m)
        sf_at = np.ones_like(m)  # P(N >= k), P(N >= k + 1)
        sf_above = renewal_count_sf(1, m, phases) if renewal else sf_at
        total, below, tokens_below = np.zeros_like(m), np.zeros_like(m), np.zeros_like(m)
        for k in range(k_hi + 1):
            if renewal:  # an Erlang-k stream's count: P(N = k) from its survival function
                pmf = np.maximum(sf_at - sf_above, 0.0)
                sf_at, sf_above = sf_above, renewal_count_sf(k + 2, m, phases)
            p = np.where(k <= f, pmf, 0.0)
            total += p * np.maximum(g0 + gs * (k * li), 0.0)
            below += p
            tokens_below += p * (k * li)
            if not renewal:
                pmf = pmf * m / (k + 1.0)
            if k >= top and float(np.max(pmf)) < 1e-13:  # the rest of every row's tail is below rounding
                break
        full = np.clip(1.0 - below, 0.0, 1.0)
        # prompt tokens beyond the room wait for later steps, which are then full instead of prompt-free
        spill = np.clip((m * li - tokens_below) / rm - full, 0.0, np.exp(-m))
        full_gap = np.maximum(g0 + gs * rm, 0.0)
        excess[rows] = total + (full + spill) * full_gap - spill * np.maximum(g0, 0.0)
    return lin0 + lin_slope * mean_x + excess


def batched_fixed_point(shape: Shape, theta: np.ndarray, rate: np.ndarray, budget: float, start: np.ndarray,
                         steps: int = 4, tol: float = 1e-7, arrival_scv: np.ndarray | float = 1.0) -> np.ndarray:
    """Fixed point t = batched_iteration_s(t), by secant steps from ``start`` (the chunk-share fixed point, which
    lies below it where several short prompts share a step: the batched mean is a spread of the same prompt tokens;
    above it where a long prompt's rest runs alone in a short step); inf where the map has no fixed point (its
    slope reaches 1 above the start)."""
    out = start.copy()
    rows = np.flatnonzero(np.isfinite(start) & (start > 0))
    if rows.size == 0:
        return out

    def g(idx: np.ndarray, t: np.ndarray) -> np.ndarray:
        scv = np.broadcast_to(np.asarray(arrival_scv, float), rate.shape)[idx]
        return batched_iteration_s(shape.take(idx), theta[idx] if np.ndim(theta) == 2 else theta, rate[idx], budget, t,
                                   arrival_scv=scv)

    t_prev = start[rows]
    g_prev = g(rows, t_prev)
    t = g_prev.copy()
    live = np.abs(t - t_prev) > tol * t_prev  # rows still moving; the others are at their fixed point
    for _ in range(steps):
        if not live.any():
            break
        idx = np.flatnonzero(live)
        gt = g(rows[idx], t[idx])
        dt = t[idx] - t_prev[idx]
        slope = np.where(np.abs(dt) > 1e-12 * t[idx], (gt - g_prev[idx]) / np.where(dt == 0, 1.0, dt), 0.0)
        secant = t[idx] + (gt - t[idx]) / np.maximum(1.0 - slope, 1e-3)
        dead = ((slope >= 1.0) & (gt > t[idx] * (1.0 + tol))) | ~(secant < 1e3)
        t_next = np.where(dead, np.inf, np.maximum(secant, 0.0))
        t_prev[idx], g_prev[idx] = t[idx], gt
        t[idx] = t_next
        live[idx] = ~dead & (np.abs(t_next - t_prev[idx]) > tol * t_prev[idx])
    out[rows] = t
    return out
