"""Request-level simulation of one serving replica, iteration by iteration, priced by the same roofline.

The analytic ``serving.online_state`` is a steady-state approximation; this module runs the engine's scheduler
request by request so a plan can be checked against it (the simulator is the reference where they disagree).

**Continuous batching** (vLLM V1 style), per iteration:

1. the running decodes are scheduled first, one token each, out of the token budget ``max_num_batched_tokens``;
2. prompts being prefilled get their next chunk, FCFS, at most ``prefill_chunk_tokens`` each, while budget lasts;
3. waiting requests are admitted FCFS while running < ``max_seqs``, budget remains and KV fits;
4. with a KV capacity (tokens), when the running sequences would outgrow it the newest is preempted and later
   recomputed (prompt + tokens generated so far), as vLLM does; with KV offload no preemption happens.

The iteration lasts ``roofline.time_s(iteration_work(D decodes, C context, P prompt tokens, A attention pairs))``,
reduced once to scalar coefficients (``IterationCost``) so the inner loop does arithmetic only. Stretches of
identical decode-only iterations (no prompt, no admissible arrival, no finish) are jumped in closed form: the
loop runs per event (arrival, prefill chunk, finish), not per token. A request's first token comes at the end of
the iteration that finishes its prompt (TTFT); TPOT = (E2E - TTFT) / (L_out - 1).

**Static batches** (FlexGen-style): when idle, the engine takes up to ``max_seqs`` waiting requests FCFS,
prefills them together in chunks, then decodes the whole batch to its longest output (``static_latency``'s
iterations: every step runs all B sequences); each request's tokens stream as produced.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .engines import EngineProfile
from .roofline import GEMM_UNHIDDEN_SHARE, IterationWork, iteration_work, time_s
from .shape import Shape


def _scalar(x: object) -> float:
    return float(np.asarray(x, float).reshape(-1)[0])


class IterationCost:
    """Scalar form of ``roofline.time_s(iteration_work(...), theta)`` for one replica.

    ``time(D, C, P, A)`` = GEMM(k_c * compute(D, P, A), k_m * weight(T)) + rest(T) + kv * C with T = D + P (GEMM:
    the larger of the two plus ``GEMM_UNHIDDEN_SHARE`` of the smaller, as ``roofline.gemm_parts``); the
    coefficients are read off ``iteration_work`` itself (unit differences), and weight/rest are tabulated per T.
    """

    def __init__(self, shape: Shape, theta: np.ndarray, max_tokens: int):
        theta = np.asarray(theta, float).reshape(-1)
        self.shape, self.theta = shape, theta

        def work(d: float = 0.0, c: float = 0.0, p: np.ndarray | float = 0.0, a: float = 0.0,
                 runs: np.ndarray | float = 1.0) -> IterationWork:
            return iteration_work(shape.model, shape.hw, dtype=shape.dtype, kv_dtype=shape.kv_dtype, tp=shape.tp,
                                  decode_seqs=d, decode_context_tokens=c, prefill_tokens=p,
                                  prefill_attention_pairs=a, offload_ratio=shape.offload_ratio,
                                  runs=np.asarray(runs, float))

        p1, p2 = _scalar(work(p=1.0).compute_s), _scalar(work(p=2.0).compute_s)
        self.per_token = theta[0] * (p2 - p1)
        self.lm_head = theta[0] * (p1 - (p2 - p1))
        self.per_pair = theta[0] * (_scalar(work(p=1.0, a=1.0).compute_s) - p1)
        w0, w1 = work(d=1.0, c=0.0), work(d=1.0, c=1.0)
        self.per_ctx = theta[2] * (_scalar(w1.kv_s) - _scalar(w0.kv_s)) + (_scalar(w1.host_s) - _scalar(w0.host_s))
        tokens = np.arange(max_tokens + 1, dtype=float)
        wt = work(p=tokens, runs=np.ones_like(tokens))
        self.weight = (theta[1] * np.broadcast_to(wt.weight_s, tokens.shape)).tolist()
        rest = theta[3] * wt.comm_s + theta[4] * wt.steps + theta[5] * wt.layer_steps
        self.rest = np.broadcast_to(rest, tokens.shape).tolist()
        self.max_tokens = max_tokens
        self._decode: dict[int, float] = {}

    def time(self, d: int, c: float, p: int, a: float) -> float:
        """Seconds of one iteration: d decodes over c context tokens, p prompt tokens with a attention pairs."""
        t = d + p
        comp = self.per_token * t + self.lm_head * (d + (1 if p > 0 else 0)) + self.per_pair * a
        w = self.weight[t]
        share = GEMM_UNHIDDEN_SHARE
        return (comp + share * w if comp > w else w + share * comp) + self.rest[t] + self.per_ctx * c

    def decode_base(self, d: int) -> float:
        """Iteration time of d decodes, less the context term (cached)."""
        v = self._decode.get(d)
        if v is None:
            v = self._decode[d] = self.time(d, 0.0, 0, 0.0)
        return v


@dataclass(frozen=True)
class ReplicaResult:
    """Per-request latencies (seconds; NaN where a request never finished) and replica statistics."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    queue_s: np.ndarray  # arrival to first admission
    utilisation: float  # busy time / (last completion - first arrival)
    occupancy: float  # time-averaged running sequences / max_seqs
    mean_queue: float  # time-averaged waiting requests (Little: sum of waits / span)
    max_queue: int
    iterations: int
    preemptions: int
    span_s: float  # first arrival to last completion


def simulate_replica(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: int, arrivals_s: np.ndarray,
                     input_tokens: np.ndarray, output_tokens: np.ndarray,
                     kv_capacity_tokens: float | None = None) -> ReplicaResult:
    """Serve the requests (arrival times sorted ascending) on one replica; see the module docstring."""
    arr = np.asarray(arrivals_s, float)
    lin = np.broadcast_to(np.asarray(input_tokens, int), arr.shape)
    lout = np.broadcast_to(np.asarray(output_tokens, int), arr.shape)
    if arr.size and np.any(np.diff(arr) < 0):
        raise ValueError("arrivals_s must be sorted ascending")
    if engine.scheduling == "static":
        return _static(shape, theta, engine, int(max_seqs), arr, lin, lout)
    if _scalar(shape.offload_ratio) > 0:
        kv_capacity_tokens = None  # the offloaded share lives in host memory: no preemption
    return _continuous(shape, theta, engine, int(max_seqs), arr, lin, lout, kv_capacity_tokens)


def _continuous(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: int, arr_np: np.ndarray,
                lin_np: np.ndarray, lout_np: np.ndarray, cap: float | None) -> ReplicaResult:
    n = arr_np.size
    budget_max = int(engine.token_budget)
    chunk_max = int(engine.chunk_tokens)
    cost = IterationCost(shape, theta, max(budget_max, max_seqs))
    arr, lin, lout = arr_np.tolist(), lin_np.tolist(), lout_np.tolist()
    cap = math.inf if cap is None else float(cap)
    nan = math.nan
    ttft, e2e, queue = [nan] * n, [nan] * n, [nan] * n
    pf_len = [0] * n  # tokens to prefill (prompt, or prompt + generated after a preemption)
    pf_done = [0] * n
    gen = [0] * n  # tokens generated so far
    entry = [0] * n  # iteration at which the sequence entered decode
    ctx0 = [0] * n  # its context when entering decode
    epoch = [0] * n
    prefill: list[int] = []  # FCFS prompts in progress
    requeue: deque[int] = deque()  # preempted, ahead of fresh arrivals
    order: dict[int, None] = {}  # running sequences by admission (newest last), for preemption
    buckets: dict[int, list[tuple[int, int]]] = {}
    finish_heap: list[int] = []
    decoding: set[int] = set()
    now = arr[0] if n else 0.0
    it = iters = 0
    D, C, pf_used = 0, 0.0, 0  # decodes, their context sum, prompt tokens resident
    adm = arrived = done = 0
    busy = slots = 0.0
    max_queue = preempt = 0
    kvc = cost.per_ctx
    last_done = now
    while done < n:
        while arrived < n and arr[arrived] <= now:
            arrived += 1
        waiting = len(requeue) + arrived - adm
        if waiting > max_queue:
            max_queue = waiting
        running = D + len(prefill)
        # ---- quiet stretch: only decodes, nothing admissible; jump to the next event in closed form
        if not prefill and D > 0 and (waiting == 0 or running >= max_seqs):
            while finish_heap and finish_heap[0] < it:
                heapq.heappop(finish_heap)
            k = finish_heap[0] - it + 1 if finish_heap else 1
            if cap < math.inf:
                k = min(k, int((cap - C - pf_used) // D))
            if running < max_seqs and arrived < n:
                gap = arr[arrived] - now
                a1 = cost.decode_base(D) + kvc * C
                q = kvc * D / 2.0
                j = math.ceil(gap / a1) if q <= 0 else math.ceil(
                    (-(a1 - q) + math.sqrt((a1 - q) ** 2 + 4.0 * q * gap)) / (2.0 * q))
                j = max(j, 1)
                while j > 1 and (j - 1) * a1 + q * (j - 1) * (j - 2) >= gap:
                    j -= 1
                while j * a1 + q * j * (j - 1) < gap:
                    j += 1
                k = min(k, j)
            if k >= 1:
                dt = k * (cost.decode_base(D) + kvc * C) + kvc * D * k * (k - 1) / 2.0
                now += dt
                busy += dt
                slots += running * dt
                C += D * k
                it += k
                iters += k
                last = it - 1
                for rid, ep in buckets.pop(last, ()):
                    if ep == epoch[rid]:
                        D -= 1
                        C -= ctx0[rid] + last - entry[rid]
                        e2e[rid] = now - arr[rid]
                        decoding.discard(rid)
                        order.pop(rid, None)
                        done += 1
                        last_done = now
                continue
        # ---- KV pressure: preempt the newest running sequence (recompute later)
        while cap < math.inf and C + pf_used + D > cap and len(order) > 1:
            rid = next(reversed(order))
            order.pop(rid)
            preempt += 1
            if rid in decoding:
                decoding.discard(rid)
                g = gen[rid] + (it - entry[rid] - 1)
                ctx = ctx0[rid] + (it - entry[rid] - 1)
                D -= 1
                C -= ctx
                gen[rid] = g
                epoch[rid] += 1
                pf_len[rid] = lin[rid] + g
            else:
                prefill.remove(rid)
                pf_used -= pf_done[rid]
                pf_len[rid] = lin[rid] + gen[rid]
            pf_done[rid] = 0
            requeue.appendleft(rid)
        # ---- schedule: decodes, running prompt chunks (FCFS), then admissions
        budget = budget_max - D
        room = cap - C - pf_used - D
        P, A = 0, 0.0
        chunks: list[tuple[int, int]] = []
        for rid in prefill:
            if budget <= 0:
                break
            c = min(pf_len[rid] - pf_done[rid], chunk_max, budget)
            if c > room:
                c = int(max(room, 0))
            if c <= 0:
                break
            s = pf_done[rid]
            chunks.append((rid, c))
            P += c
            A += c * s + c * c / 2.0
            budget -= c
            room -= c
        running = D + len(prefill)
        while budget > 0 and running < max_seqs and (requeue or adm < arrived):
            rid = requeue[0] if requeue else adm
            if not requeue:
                pf_len[rid] = lin[rid]
            c = min(pf_len[rid], chunk_max, budget)
            if c > room and running > 0:
                break  # KV full: wait (an empty replica always admits)
            if requeue:
                requeue.popleft()
            else:
                adm += 1
                queue[rid] = now - arr[rid]
            prefill.append(rid)
            order[rid] = None
            running += 1
            chunks.append((rid, c))
            P += c
            A += c * c / 2.0
            budget -= c
            room -= c
        if D == 0 and P == 0:
            if arrived < n:
                now = max(now, arr[arrived])
                continue
            raise RuntimeError("simulator stalled: nothing running, nothing to admit")  # pragma: no cover
        dt = cost.time(D, C, P, A)
        now += dt
        busy += dt
        slots += running * dt
        C += D
        iters += 1
        for rid, c in chunks:
            pf_done[rid] += c
            pf_used += c
            if pf_done[rid] < pf_len[rid]:
                continue
            prefill.remove(rid)
            pf_used -= pf_done[rid]
            gen[rid] += 1
            if gen[rid] == 1:
                ttft[rid] = now - arr[rid]
            if gen[rid] >= lout[rid]:
                e2e[rid] = now - arr[rid]
                order.pop(rid, None)
                done += 1
                last_done = now
                continue
            decoding.add(rid)
            entry[rid] = it
            ctx0[rid] = pf_len[rid] + 1
            D += 1
            C += ctx0[rid]
            fin = it + lout[rid] - gen[rid]
            if fin not in buckets:
                heapq.heappush(finish_heap, fin)
            buckets.setdefault(fin, []).append((rid, epoch[rid]))
        for rid, ep in buckets.pop(it, ()):
            if ep == epoch[rid]:
                D -= 1
                C -= ctx0[rid] + it - entry[rid]
                e2e[rid] = now - arr[rid]
                decoding.discard(rid)
                order.pop(rid, None)
                done += 1
                last_done = now
        it += 1
    return _result(arr_np, ttft, e2e, queue, lout_np, busy, max_queue, iters, preempt, last_done, slots / max_seqs)


def _result(arr: np.ndarray, ttft: list[float] | np.ndarray, e2e: list[float] | np.ndarray,
            queue: list[float] | np.ndarray, lout: np.ndarray, busy: float, max_queue: int, iters: int, preempt: int,
            last_done: float, slot_s: float) -> ReplicaResult:
    ttft, e2e, queue = np.array(ttft, float), np.array(e2e, float), np.array(queue, float)
    steps = np.asarray(lout, float) - 1.0
    tpot = np.where(steps > 0, (e2e - ttft) / np.maximum(steps, 1.0), 0.0)
    span = float(last_done - arr[0]) if arr.size else 0.0
    return ReplicaResult(ttft_s=ttft, tpot_s=tpot, e2e_s=e2e, queue_s=queue,
                         utilisation=busy / span if span > 0 else 0.0, occupancy=slot_s / span if span > 0 else 0.0,
                         mean_queue=float(np.nansum(queue)) / span if span > 0 else 0.0,
                         max_queue=int(max_queue), iterations=int(iters), preemptions=int(preempt), span_s=span)


def _static(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: int, arr: np.ndarray, lin: np.ndarray,
            lout: np.ndarray) -> ReplicaResult:
    n = arr.size
    ttft, e2e, queue = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    chunk = float(engine.chunk_tokens)

    def t(d: np.ndarray | float, c: np.ndarray | float, p: np.ndarray | float, a: np.ndarray | float) -> np.ndarray:
        w = iteration_work(shape.model, shape.hw, dtype=shape.dtype, kv_dtype=shape.kv_dtype, tp=shape.tp,
                           decode_seqs=d, decode_context_tokens=c, prefill_tokens=p, prefill_attention_pairs=a,
                           offload_ratio=shape.offload_ratio)
        return time_s(w, np.asarray(theta, float))

    now = float(arr[0]) if n else 0.0
    ptr = iters = max_queue = 0
    busy = slots = 0.0
    while ptr < n:
        now = max(now, float(arr[ptr]))
        arrived = int(np.searchsorted(arr, now, side="right"))
        max_queue = max(max_queue, arrived - ptr)
        idx = np.arange(ptr, min(arrived, ptr + max_seqs))
        ptr = int(idx[-1]) + 1
        b = float(idx.size)
        li, lo = lin[idx].astype(float), lout[idx]
        tokens = li.sum()
        chunks = max(math.ceil(tokens / chunk), 1)
        prefill = chunks * _scalar(t(0.0, 0.0, tokens / chunks, float(np.square(li).sum()) / 2.0 / chunks))
        steps = np.arange(1, int(lo.max()), dtype=float)
        dec = np.cumsum(np.broadcast_to(t(b, tokens + b * steps, 0.0, 0.0), steps.shape)) if steps.size else \
            np.zeros(0)
        dec = np.concatenate([[0.0], dec])
        queue[idx] = now - arr[idx]
        ttft[idx] = now + prefill - arr[idx]
        e2e[idx] = now + prefill + dec[lo - 1] - arr[idx]
        busy += prefill + dec[-1]
        slots += (prefill + dec[-1]) * b / max_seqs
        now += prefill + dec[-1]
        iters += chunks + steps.size
    return _result(arr, ttft, e2e, queue, lout, busy, max_queue, iters, 0, float(np.nanmax(arr + e2e)) if n else 0.0,
                   slots)


@dataclass(frozen=True)
class PoolResult:
    """Requests of one pool (in the order given) served by ``replicas`` identical replicas."""

    ttft_s: np.ndarray
    tpot_s: np.ndarray
    e2e_s: np.ndarray
    queue_s: np.ndarray
    replica: np.ndarray  # which replica served each request
    utilisation: list[float]
    occupancy: list[float]
    mean_queue: list[float]
    max_queue: list[int]
    preemptions: int
    iterations: int


def route_and_simulate(shape: Shape, theta: np.ndarray, engine: EngineProfile, max_seqs: int, replicas: int,
                       arrivals_s: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray,
                       kv_capacity_tokens: float | None = None) -> PoolResult:
    """Round-robin the merged request stream (by arrival) over ``replicas`` and simulate each replica."""
    arr = np.asarray(arrivals_s, float)
    order = np.argsort(arr, kind="stable")
    lin = np.broadcast_to(np.asarray(input_tokens, int), arr.shape)
    lout = np.broadcast_to(np.asarray(output_tokens, int), arr.shape)
    out = {k: np.full(arr.size, np.nan) for k in ("ttft_s", "tpot_s", "e2e_s", "queue_s")}
    which = np.zeros(arr.size, int)
    util, occ, mq, xq, pre, its = [], [], [], [], 0, 0
    for r in range(max(int(replicas), 1)):
        idx = order[r::max(int(replicas), 1)]
        which[idx] = r
        if idx.size == 0:
            util.append(0.0)
            occ.append(0.0)
            mq.append(0.0)
            xq.append(0)
            continue
        res = simulate_replica(shape, theta, engine, max_seqs, arr[idx], lin[idx], lout[idx], kv_capacity_tokens)
        for k in out:
            out[k][idx] = getattr(res, k)
        util.append(res.utilisation)
        occ.append(res.occupancy)
        mq.append(res.mean_queue)
        xq.append(res.max_queue)
        pre += res.preemptions
        its += res.iterations
    return PoolResult(replica=which, utilisation=util, occupancy=occ, mean_queue=mq, max_queue=xq, preemptions=pre,
                      iterations=its, **out)
