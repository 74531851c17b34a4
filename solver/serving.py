"""Latency of a replica in its serving mode: static batches (offline) or continuous batching (online).

Both modes are sums of engine iterations priced by ``roofline.time_s``, so they share one calibration.

**Static batches** (the paper's model; offline jobs, FlexGen-style engines): the whole batch of ``B`` prompts is
prefilled (in chunks of the engine's prefill size), then decoded together:
``TTFT = prefill(B * L_in)``, ``TPOT = iteration(B decodes at mean context L_in + L_out / 2)``.

**Continuous batching** (vLLM, SGLang, TensorRT-LLM, TGI): every iteration decodes all running sequences and
mixes in prompt chunks within a token budget. At request rate ``lam`` the steady state is a fixed point:

    t = iteration(n decodes, n * (L_in + L_out / 2) context, p prompt tokens),
    n = lam * t * L_out,  p = lam * t * L_in                      (Little's law per iteration)

With one prompt chunk in a share of iterations, ``t`` is affine in (n, p) on each GEMM branch, so that fixed point
is closed-form per branch pair. The scheduler really packs a Poisson number of waiting prompts into each step's
token budget (``batched_iteration_s``); the roofline is convex in a step's prompt tokens, so that mean lies above,
and the fixed point is polished from the closed-form root by secant steps. Then

* ``TPOT`` = the iteration time with the decodes at a quantile of their count as a request sees it (size-biased
  and capped, ``queueing.size_biased_count``; its variance over its mean is the dispersion of
  ``queueing.feedback_dispersion`` — the load feeds back on the holding time — widened by the prompt clusters),
  with the prompts it meets during its stay (rate x E[stay]: the stay is size-biased, the prompts in it are not);
  behind a round-robin router an Erlang-k number of prompts lands in a step;
* slots held = rate x (own prefill + (L_out - 1) x TPOT): Little's law on what a request experiences while it holds
  a slot (a request waiting for the token budget is not admitted yet);
* ``TTFT`` = admission wait (``queueing.slot_wait`` over ``max_num_seqs`` slots: Erlang C whose load grows
  with the slots busy; arrivals smoother than Poisson, as behind a round-robin router, act as c / c_a^2 slots at
  the same utilisation, prompt clusters widen the approach to the cap; given a wait, the M/G/c drain at the
  headroom of a replica whose every slot is held, ``full_replica_rate``) + wait for
  the token budget (M/D/m over the prompt work; an Erlang-k stream finds it busy and waits for it by
  ``queueing.renewal_wait_ratios``) + the rest of the running iteration + the request's own steps
  (``prefill.packed_prefill``: whole chunks of what the budget leaves beside the decodes, then the rest, with the
  next prompt packed into its first step, or into the last one of a long prompt, when it arrives in time); a
  percentile is the quantile of the waits' sum from its exact tail (``wait_tail.total_wait_quantile``); an idle
  replica's TTFT is its own prefill;
* capacity = the highest rate at which every SLO of the demand holds at its percentile and the slots held stay
  within ``PLANNING_UTILISATION`` of the cap, by bisection.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .budget_wait import budget_wait
from .engines import EngineProfile
from .prefill import packed_prefill
from .packing import batched_fixed_point, batched_iteration_s, branches, full_replica_rate
from .queueing import feedback_dispersion, mix_cluster_spread, mix_departure_scv, size_biased_count, slot_wait
from .roofline import time_s
from .shape import Shape
from .wait_tail import residual_s, total_wait_quantile

# One-sided normal quantiles, and how a named statistic maps to a probability.
QUANTILE = {"mean": None, "p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p99.9": 0.999}
Z = {None: 0.0, 0.5: 0.0, 0.9: 1.2816, 0.95: 1.6449, 0.99: 2.3263, 0.999: 3.0902}
MAX_UTILISATION = 0.98  # of the concurrency cap: beyond it the queue of a finite simulation never drains
# Capacity (what the planner may load a replica with) stops lower: above ~85 % of the slots a request-level replay
# queues far beyond the Erlang C wait (benchmarks/simulate.py), so no plan is sized into that regime
PLANNING_UTILISATION = 0.85
BISECTION_STEPS = 24  # 6e-8 of the bracket: far below any SLO or price resolution


@dataclass(frozen=True)
class OnlineState:
    """Steady state of one replica at a request rate (arrays per row; inf where unstable)."""

    rate_per_s: np.ndarray
    iteration_s: np.ndarray
    decode_seqs: np.ndarray  # mean running decodes
    decode_step_s: np.ndarray  # an iteration of the running decodes alone (no prompt tokens)
    own_prefill_s: np.ndarray  # mean of a request's own prefill steps, with the next prompt packed in (no waits)
    occupancy: np.ndarray  # mean slots held (prefill + decode), what max_num_seqs caps
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    stable: np.ndarray  # bool: the queue drains (iteration fixed point, slots below the cap, rate below a full one's)
    slot_wait_p: np.ndarray | None = None  # P(an arrival finds every slot held: it waits for one), where computed
    slot_wait_given_wait_s: np.ndarray | None = None  # the mean of that wait, given that one waits
    slot_wait_scv: np.ndarray | None = None  # the squared coefficient of variation of that wait's law


def _mixed_parts(shape: Shape, theta: np.ndarray, rate: np.ndarray, chunk: np.ndarray, t: np.ndarray | float,
                 decodes: np.ndarray | None = None) -> tuple[tuple[np.ndarray, ...], ...]:
    """Branch parts (compute, memory, rest) of an iteration with one prompt chunk and of one without, at mean
    iteration time ``t``, and the share of iterations that carry a chunk (prompt tokens arrive at rate*L_in)."""
    l_in, l_out = shape.input_tokens.astype(float), shape.output_tokens.astype(float)
    n = rate * t * l_out if decodes is None else decodes
    ones = np.ones_like(rate)

    def parts(prompt: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return branches(shape.work(n, prompt, np.asarray(prompt) * shape.pairs_per_token, runs=ones), theta)

    share = rate * t * l_in / chunk
    return parts(chunk * ones), parts(0.0), (share,)


def mean_iteration_s(shape: Shape, theta: np.ndarray, rate: np.ndarray, chunk: np.ndarray, t: np.ndarray,
                     decodes: np.ndarray | None = None) -> np.ndarray:
    """Mean iteration time when a share of iterations carries a prompt chunk and the rest only decodes (the
    roofline is convex, so averaging the prompt tokens over iterations would underestimate it)."""
    (c1, m1, r1), (c0, m0, r0), (share,) = _mixed_parts(shape, theta, rate, chunk, t, decodes)
    share = np.clip(share, 0.0, 1.0)
    return share * (np.maximum(c1, m1) + r1) + (1.0 - share) * (np.maximum(c0, m0) + r0)


def _iteration_fixed_point(shape: Shape, theta: np.ndarray, rate: np.ndarray, chunk: np.ndarray) -> np.ndarray:
    """Smallest t with t = mean iteration time at rate*t*L_out decodes and chunk share rate*t*L_in/chunk.

    Each part is affine in t (dense models), so for each of the four roofline branch pairs the fixed point
    solves gamma t^2 + (beta - 1) t + alpha = 0; the mean iteration is the max over branch pairs (the chunk share
    lies in [0, 1]), so the fixed point is the max of the pairs' smallest roots; inf where none exists.
    """
    lo, hi = _mixed_parts(shape, theta, rate, chunk, 0.0), _mixed_parts(shape, theta, rate, chunk, 1.0)
    k = hi[2][0]  # chunk share per second of mean iteration time
    best = np.zeros_like(rate, dtype=float)
    for i in (0, 1):  # branch of the iteration with a chunk
        for j in (0, 1):  # branch of the decode-only iteration
            a1, b1 = lo[0][i] + lo[0][2], hi[0][i] + hi[0][2] - lo[0][i] - lo[0][2]
            a0, b0 = lo[1][j] + lo[1][2], hi[1][j] + hi[1][2] - lo[1][j] - lo[1][2]
            alpha, beta, gamma = a0, b0 + k * (a1 - a0), k * (b1 - b0)
            disc = (1.0 - beta) ** 2 - 4.0 * alpha * gamma
            denom = (1.0 - beta) + np.sqrt(np.maximum(disc, 0.0))
            root = np.where((disc >= 0) & (denom > 0), 2.0 * alpha / np.maximum(denom, 1e-300), np.inf)
            best = np.maximum(best, root)
    # where every iteration carries prompt work (share > 1) the prompt tokens spread over all iterations
    dense = np.isfinite(best) & (k * best > 1.0)
    if dense.any():  # only those rows: this loop is the fixed point's costliest part
        rows = np.flatnonzero(dense)
        sub, th = shape.take(rows), theta[rows] if np.ndim(theta) == 2 else theta
        l_in, l_out, lam = sub.input_tokens.astype(float), sub.output_tokens.astype(float), rate[rows]
        if shape.model.is_moe:  # weight bytes are not affine in tokens: iterate to the fixed point
            t = best[rows]
            for _ in range(40):
                n, p = lam * t * l_out, lam * t * l_in
                t = time_s(sub.work(n, p, p * sub.pairs_per_token, runs=np.ones_like(lam)), th)
        else:  # affine in t on each GEMM branch: the fixed point is the larger of the two branch roots
            # (through two points with over a token of prompt per iteration, where the LM head's share is fixed)
            t_a = best[rows]
            (c0, m0, r0), (c1, m1, r1) = (_dense_parts(sub, th, lam, at) for at in (t_a, 2.0 * t_a))
            roots = []
            for g0, g1 in ((c0, c1), (m0, m1)):
                slope = (g1 + r1 - g0 - r0) / t_a
                roots.append(np.where(slope < 1.0, (g0 + r0 - slope * t_a) / np.maximum(1.0 - slope, 1e-300), np.inf))
            t = np.maximum(*roots)
        best[rows] = np.where(t < 1e3, t, np.inf)
    for _ in range(2):  # polish where the weight bytes are not affine in tokens (MoE expert touching)
        ok = np.isfinite(best) & ~dense
        best = np.where(ok, mean_iteration_s(shape, theta, rate, chunk, np.where(ok, best, 0.0)), best)
    return best


def _dense_parts(shape: Shape, theta: np.ndarray, rate: np.ndarray, t: np.ndarray | float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(compute, memory, rest) parts of an iteration of mean time ``t`` when every iteration carries prompt
    tokens: rate*t*L_out decodes and rate*t*L_in prompt tokens spread over all iterations."""
    l_in, l_out = shape.input_tokens.astype(float), shape.output_tokens.astype(float)
    n, p = rate * t * l_out, rate * t * l_in
    return branches(shape.work(n, p, p * shape.pairs_per_token, runs=np.ones_like(rate)), theta)


def online_state(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: np.ndarray,
                 rate: np.ndarray, percentiles: dict[str, str], prompt_scv: np.ndarray | float = 0.0,
                 metrics: tuple[str, ...] = ("ttft", "tpot", "e2e"), arrival_scv: np.ndarray | float = 1.0,
                 holding_overlap: float = 1.0, holding_scv: float = 0.0, full_rate: np.ndarray | None = None
                 ) -> OnlineState:
    """Steady-state latencies of a continuous-batching replica at ``rate`` requests/s.

    ``percentiles`` maps ``ttft``, ``tpot``, ``e2e`` to ``mean``/``p50``/``p90``/``p99``; ``prompt_scv`` is the
    squared coefficient of variation of prompt lengths (0 for one size; a pool serving a mix passes its own);
    ``arrival_scv`` that of the replica's inter-arrival times (1: Poisson; round-robin over k replicas of a
    Poisson stream gives each an Erlang-k stream, 1 / k): the slot wait scales as c / c_a'^2 slots, and fewer
    prompts share a step or are found in service (``queueing.renewal_wait_ratios``). ``holding_overlap`` is
    E[min(H1, H2)] / E[H] of the holding times (1 for one request size, ``queueing.holding_overlap`` for a mix):
    smoother arrivals narrow the slots held by (1 - c_a^2) times it (an infinite-server queue's variance), so
    c_a'^2 = 1 + (c_a^2 - 1) holding_overlap. ``holding_scv`` is the squared coefficient of variation of the
    holding times (0 for one size): the slot queue waits between M/D/c's and M/M/c's by it. ``full_rate`` is
    ``full_replica_rate`` of these rows where the caller has it (it does not depend on ``rate``).
    """
    rate = np.asarray(rate, float)
    l_in, l_out = shape.input_tokens.astype(float), shape.output_tokens.astype(float)
    budget = float(engine.token_budget)
    chunk = float(engine.chunk_tokens)
    prompt_chunk = np.minimum(l_in, budget) * np.ones_like(rate)
    t = batched_fixed_point(shape, theta, rate, budget, _iteration_fixed_point(shape, theta, rate, prompt_chunk),
                             arrival_scv=arrival_scv)
    finite = np.isfinite(t)
    t_ok = np.where(finite, t, 0.0)
    n = rate * t_ok * l_out
    cap = np.asarray(max_seqs, float)

    # the running count's variance over its mean: the load feeds back on the holding time (queueing.feedback_dispersion)
    ones = np.ones_like(rate)
    t_dec = time_s(shape.work(n, 0.0, 0.0, runs=ones), theta)
    t_up = time_s(shape.work(n * 1.05 + 0.05, 0.0, 0.0, runs=ones), theta)
    elasticity = (t_up / np.maximum(t_dec, 1e-300) - 1.0) * n / (0.05 * n + 0.05)
    prompt_share = 1.0 - t_dec / np.maximum(t_ok, 1e-300)
    dispersion = feedback_dispersion(prompt_share, elasticity)
    # smoother arrivals (c_a^2, behind a round-robin router) narrow it, less so for a mix of holding times
    smooth = np.maximum(1.0 + (np.asarray(arrival_scv, float) - 1.0) * holding_overlap, 1e-2) * ones
    count_var = smooth * dispersion  # the running count's variance over its mean, prompt clusters aside
    # each prompt stalls every running decode at once, so arrivals pile up in clusters (queueing.slot_wait), wider
    # where prompt lengths vary (queueing.mix_cluster_spread)
    cluster = np.clip(t_ok / np.maximum(t_dec, 1e-300), 1.0, 10.0)
    mix_spread = mix_cluster_spread(prompt_share, prompt_scv, smooth)
    seen = size_biased_count(n, count_var * cluster * mix_spread, cap)

    # TPOT: a request decodes beside the others running, whose count fluctuates around n with variance
    # count_var * cluster * n, at most the cap (a request sees it size-biased: ``queueing.size_biased_count``), and a
    # Poisson number of its L_out - 1 steps carry another prompt's chunk (mean: the chunk share f of steps)
    share = np.clip(rate * t_ok * l_in / prompt_chunk, 0.0, 1.0)
    steps = np.maximum(l_out - 1.0, 1.0)

    def tpot_at(q: float | None, stay: np.ndarray | None = None, turnover: np.ndarray | None = None) -> np.ndarray:
        n_q = np.minimum(seen + Z[q] * np.sqrt(np.maximum(count_var * n, 0.0)), cap)
        (c1, m1, r1), (c0, m0, r0), _ = _mixed_parts(shape, theta, rate, prompt_chunk, t_ok, n_q)
        t_with, t_without = np.maximum(c1, m1) + r1, np.maximum(c0, m0) + r0
        # several short prompts packed in one step: the batched mean exceeds the chunk-share mean at every quantile
        spread = np.maximum(batched_iteration_s(shape, theta, rate, budget, t_ok, n_q, arrival_scv)
                            - (share * t_with + (1 - share) * t_without), 0.0)
        # the prompts met are those that arrive during the request's stay H = steps x TPOT: A ~ Poisson(rate H), so
        # E[A] = rate E[H], a share TPOT / t of the mean iteration's (the stay is size-biased, the prompts are not
        # otherwise); the mean solves TPOT = t_without + spread + share (TPOT / t) (t_with - t_without)
        lift = share * (t_with - t_without) / np.maximum(t_ok, 1e-300)
        if stay is None:
            stay = (t_without + spread) / np.maximum(1.0 - lift, 0.05) / np.maximum(t_ok, 1e-300)
        mixed = share * steps * np.where(t_ok > 0, stay, 1.0)
        # their count varies with the slots held (a stay that meets more prompts is longer): wider quantiles, but a
        # full replica admits a prompt only when a slot frees, so a stay meets at most one per other slot turned over
        ratio = count_var / np.maximum(n, 1.0)
        most = steps if turnover is None else np.minimum(np.maximum(turnover, mixed), steps)
        mixed_q = np.minimum(mixed + Z[q] * np.sqrt(mixed + np.square(share * steps) * ratio), most)
        return (mixed_q * t_with + (steps - mixed_q) * t_without) / steps + spread

    packing = packed_prefill(shape, theta, n, budget, chunk, rate, t_ok, arrival_scv)
    own = packing.steps
    alone = own.total_s  # the prompt's own steps
    p_pack, pack_delay = packing.p_pack, packing.delay_s
    own_prefill = packing.mean_s
    # prompts queue for the token budget, and an arrival waits out the rest of the iteration it lands in
    # (``budget_wait``: per size of the prompt found ahead, for a pool's mix)
    queue = budget_wait(shape, theta, rate, t_ok, n, t_dec, budget, chunk, arrival_scv, prompt_scv, own)
    budget_wait_mean = queue.mean_s
    # Little's law on the slots: a request holds one through its prefill and L_out - 1 steps as it sees them (TPOT's
    # mean: longer than the time-average step where the load feeds back on them); not while it waits for the token
    # budget, since the scheduler admits a waiting request only into a step with budget left (vLLM V1; on 100
    # random single-size replicas, 40 of them at 80-86 % of their slots, the slots held's p90 error 1.5 -> 1.2 % in a
    # scratch harness at fixed rates)
    tpot_mean = tpot_at(None)
    occupancy = rate * (own_prefill + (l_out - 1.0) * tpot_mean)
    # TTFT: admission wait (slots), wait for token budget (prompt work), rest of the current iteration, own prefill
    service = occupancy / np.maximum(rate, 1e-300)
    # wait for a slot (queueing.slot_wait): the chain of slots held, whose load grows with the slots busy, its
    # variance widened by the prompt clusters; a full replica's departures are as irregular as its holding times
    # and, in a mix, the stalls of the prompts it admits (queueing.mix_departure_scv)
    departure_scv = holding_scv + mix_departure_scv(prompt_share, prompt_scv)
    # given a wait, every slot is held and the queue drains at the headroom X - lam; its input is the arrival stream
    # itself (arrival_scv), its output as smooth as the count
    full = full_replica_rate(shape, theta, engine, cap) if full_rate is None else np.asarray(full_rate, float)
    p_wait, slot_wait_mean, wait_scv = slot_wait(cap, occupancy, smooth, cluster, dispersion, full - rate,
                                                 departure_scv, mix_spread, np.asarray(arrival_scv, float) * ones)
    busy = 1.0 - np.exp(-occupancy)

    def ttft_at(q: float | None) -> np.ndarray:
        if q is None:
            return p_wait * slot_wait_mean + budget_wait_mean + residual_s(busy, queue.iterations) \
                + own_prefill
        # given a wait, Poisson arrivals queue prompts in bursts and the budget wait is exponential-like (what the
        # simulator shows for one replica; a round-robin stream's is narrower, so this errs long); the quantile of
        # the three waits' sum, not the sum of their quantiles
        return total_wait_quantile(q, busy, queue.iterations, [(p_wait, slot_wait_mean, wait_scv)],
                                   (p_pack, pack_delay), one_of=queue.alternatives) + alone

    quant = {k: QUANTILE[percentiles.get(k, "mean")] for k in ("ttft", "tpot", "e2e")}
    nan = np.full_like(rate, np.nan)  # a metric not asked for (capacity searches skip unbounded ones)
    ttft = ttft_at(quant["ttft"]) if "ttft" in metrics else nan
    tpots: dict[float | None, np.ndarray] = {None: tpot_mean}  # the mean, computed for the slots held

    # the prompt steps a stay of (L_out - 1) mean steps can meet: one prompt per other slot turned over, (cap - 1)
    # per holding time
    stay_s = steps * tpot_mean
    turnover = (cap - 1.0) * l_in / prompt_chunk * stay_s / np.maximum(service, 1e-300)

    def tpot_q(q: float | None) -> np.ndarray:  # a quantile meets the prompts of the mean stay
        return tpots[q] if q in tpots else tpots.setdefault(
            q, tpot_at(q, tpot_mean / np.maximum(t_ok, 1e-300), turnover))

    tpot = tpot_q(quant["tpot"]) if "tpot" in metrics else nan
    e2e = ttft_at(quant["e2e"]) + (l_out - 1.0) * tpot_q(quant["e2e"]) if "e2e" in metrics else nan
    unstable = ~finite | (occupancy >= MAX_UTILISATION * cap) | (rate >= full)
    inf = np.inf
    return OnlineState(rate_per_s=rate, iteration_s=np.where(finite, t, inf), decode_seqs=n, decode_step_s=t_dec,
                       own_prefill_s=own_prefill, occupancy=occupancy, ttft_s=np.where(unstable, inf, ttft),
                       tpot_s=np.where(unstable, inf, tpot), e2e_s=np.where(unstable, inf, e2e), stable=~unstable,
                       slot_wait_p=p_wait, slot_wait_given_wait_s=slot_wait_mean,
                       slot_wait_scv=wait_scv)


def online_capacity(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: np.ndarray,
                    bounds: dict[str, np.ndarray], percentiles: dict[str, str]) -> np.ndarray:
    """Highest request rate per replica at which every bound holds (NaN bound = none); 0 where none does.

    ``bounds`` maps ``ttft``, ``tpot``, ``e2e`` to arrays of seconds. Latencies rise with the rate, so the
    feasible rates are an interval from 0 and bisection finds its end.
    """
    cap = np.asarray(max_seqs, float)
    idle_iter = time_s(shape.work(np.ones_like(cap), 0.0, 0.0), theta)
    hi = cap / np.maximum(idle_iter * shape.output_tokens, 1e-12)  # cap slots at the fastest iteration
    lo = np.zeros_like(hi)

    limits = {k: np.asarray(bounds.get(k, np.nan), float) for k in ("ttft", "tpot", "e2e")}
    bounded = tuple(k for k, b in limits.items() if not np.all(np.isnan(b)))

    full = full_replica_rate(shape, theta, engine, cap)

    def holds(rate: np.ndarray) -> np.ndarray:
        state = online_state(shape, theta, engine, cap, rate, percentiles, metrics=bounded, full_rate=full)
        ok = np.asarray(state.stable, bool) & (state.occupancy <= PLANNING_UTILISATION * cap)
        for key in bounded:
            value = getattr(state, f"{key}_s")
            ok &= np.isnan(limits[key]) | (value <= limits[key])
        return ok

    idle_ok = holds(np.full_like(hi, 1e-9))
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        good = holds(mid)
        lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
    return np.where(idle_ok, lo, 0.0)
