"""Simulate a whole plan request by request and report whether its SLOs hold (``infersave simulate``).

Online workloads: arrivals over one common horizon (Poisson, gamma inter-arrivals of a given CV, or a trace),
lengths by bucket fraction, each request routed to a pool by the plan's shares of its demand; every pool's
replicas (``count`` VMs x ``gpu_count // tensor_parallel``) serve the merged stream of all demands it holds,
round-robin. The first ``WARMUP`` of each workload's requests (by arrival) are left out of the statistics.
Offline jobs: each pool's share of the job, split over its replicas, all queued at t = 0; a replica serves a
sample and the rest at its measured steady throughput; the makespan is compared with the deadline.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from .calibration import Calibration
from .catalog import find_gpu
from .engines import EngineProfile, find_engine
from .errors import InputError
from .io import atomic_write_text
from .planfile import offers_of
from .replay_input import check_arrivals, check_replay_plan, gamma_cv, read_trace
from .roofline import Hardware, weight_bytes
from .scenario import Resolved, load_scenario
from .schema import Workload
from .shape import Shape
from .simulate import route_and_simulate

WARMUP = 0.10
METRICS = ("ttft", "tpot", "e2e")
BOUND = {"ttft": "max_ttft_s", "tpot": "max_tpot_s", "e2e": "max_e2e_s"}


# ---- request streams -----------------------------------------------------------------------------------------


def arrival_times(rate_per_s: float, n: int, kind: str, rng: np.random.Generator,
                  trace: Sequence[float] | None = None) -> np.ndarray:
    """``n`` arrival times: ``poisson``, ``gamma:CV`` (inter-arrival coefficient of variation) or ``trace:FILE``
    (a CSV/text of timestamps in seconds, first column; replayed, rescaled to ``rate_per_s`` when given; ``trace``:
    its timestamps, already read by ``replay_input.read_trace``)."""
    if kind == "poisson":
        return np.cumsum(rng.exponential(1.0 / rate_per_s, n))
    if kind.startswith("gamma:"):
        shape = 1.0 / gamma_cv(kind) ** 2
        return np.cumsum(rng.gamma(shape, 1.0 / (rate_per_s * shape), n))
    if kind.startswith("trace:"):
        ts = np.sort(np.array(read_trace(kind.split(":", 1)[1]) if trace is None else trace, float))
        ts = ts - ts[0]  # read_trace holds two different timestamps at least
        reps = math.ceil(n / ts.size)
        period = ts[-1] + (ts[-1] / (ts.size - 1))
        full = (ts[None, :] + period * np.arange(reps)[:, None]).reshape(-1)[:n]
        if rate_per_s:
            full = full * (ts.size / period) / rate_per_s
        return full
    raise ValueError(f"unknown arrivals {kind!r}: use poisson, gamma:CV or trace:FILE")


@dataclass
class SimulationReport:
    scenario: str
    requests: int
    seed: int
    arrivals: str
    warmup_share: float
    workloads: list[dict[str, Any]] = field(default_factory=list)
    pools: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "holds": self.holds}


def slo_percentile(slo: object, metric: str) -> str:
    """The statistic an SLO bound is held at: ``<metric>_percentile``, else ``percentile``, else the mean."""
    raw = getattr(slo, f"{metric}_percentile", None) or getattr(slo, "percentile", None)
    if raw is None:
        return "mean"
    if isinstance(raw, (int, float)):
        q = float(raw) * (100.0 if raw <= 1 else 1.0)
        return f"p{q:g}"
    return str(raw).lower()


def statistic(values: np.ndarray, name: str) -> float:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.inf
    return float(np.mean(values)) if name == "mean" else float(np.percentile(values, float(name.lstrip("p"))))


def _get(row: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
    return default


def kv_capacity_tokens(shape: Shape, gpu_memory_utilization: float) -> float:
    """KV tokens a replica holds: its GPUs' usable memory less the weights (activations not reserved)."""
    usable = float(shape.hw.memory_bytes[0]) * gpu_memory_utilization * float(shape.tp[0])
    free = usable - weight_bytes(shape.model, shape.dtype)
    return max(free, 0.0) / shape.model.kv_bytes_per_token(shape.kv_dtype)


@dataclass
class ReplayPool:
    """One plan pool as the simulator replays it: its replicas, concurrency cap and KV capacity."""

    name: str
    shape: Shape
    theta: np.ndarray
    engine: EngineProfile
    max_seqs: int
    replicas: int
    kv_tokens: float | None


def replay_pools(resolved: Resolved, plan: dict[str, Any], calibration: Calibration, engine: str | None
                 ) -> dict[str, ReplayPool]:
    """Every pool of ``plan`` (a plan's JSON) as the simulator replays it."""
    counts = {p["pool"]: int(p.get("count", 1)) for p in plan.get("pools", [])}
    by_name = {w.name: w for w in resolved.scenario.workloads}
    util = resolved.scenario.settings.gpu_memory_utilization
    out: dict[str, ReplayPool] = {}
    for a in plan.get("assignments", []):
        name = a["pool"]
        if name in out:
            continue
        w = by_name[a["workload"]]
        eng = find_engine(_get(a, "engine", default=engine))
        gpu, tp = str(a["gpu"]), int(_get(a, "tensor_parallel", "tp", default=1))
        per_vm = max(int(_get(a, "gpu_count", default=tp)) // tp, 1)
        count = counts.get(name, int(_get(a, "count", default=1)))
        r = float(_get(a, "offload_ratio", default=0.0))
        hw = Hardware.from_specs([find_gpu(gpu)], w.dtype)
        shape = Shape(resolved.models[w.model], hw, w.dtype, w.effective_kv_dtype, np.array([tp]), np.array([1]),
                      np.array([1]), np.array([r]))
        seqs = int(_get(a, "max_num_seqs", "batch_size", default=eng.default_max_seqs))
        out[name] = ReplayPool(name, shape, calibration.theta(eng, gpu, w.dtype), eng, seqs, count * per_vm,
                               None if r > 0 else kv_capacity_tokens(shape, util))
    return out


def lognormal_lengths(mean: int, p90: int | None, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` token counts with the given mean and p90 (lognormal; the smaller sigma of the two that fit), or all
    equal to the mean when no p90 is given."""
    if p90 is None:
        return np.full(n, int(mean))
    z90 = 1.2815516
    sigma = z90 - math.sqrt(max(z90 * z90 - 2.0 * math.log(p90 / mean), 0.0))
    mu = math.log(mean) - sigma * sigma / 2.0
    return np.maximum(np.rint(rng.lognormal(mu, sigma, size=n)), 1).astype(int)


def _lengths(w: Workload, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mix = w.size_mix()
    k = rng.choice(len(mix), size=n, p=np.array([b.fraction for b in mix]) / sum(b.fraction for b in mix))
    if w.buckets is None:
        lin = lognormal_lengths(mix[0].input_tokens, w.input_tokens_p90, n, rng)
        lout = lognormal_lengths(mix[0].output_tokens, w.output_tokens_p90, n, rng)
        return lin, lout, k
    return (np.array([b.input_tokens for b in mix])[k], np.array([b.output_tokens for b in mix])[k], k)


def busiest_hour(plan: dict[str, Any]) -> tuple[dict[str, Any], dict[str, float], int]:
    """An hourly plan (rate profiles) as the plan of its busiest hour h (most planned requests/s in all): each
    pool with its committed + burst VMs of hour h, each demand routed by its hour-h shares; with the hour's rates."""
    hourly = plan["hourly"]
    rates = hourly["rate_per_s"]
    h = max(range(24), key=lambda k: (sum(r[k] for r in rates.values()), -k))
    fleet = {q["pool"]: q["base"] + q["burst"][h] for q in hourly["pools"]}
    pools = [p | {"count": fleet.get(p["pool"], p["count"])} for p in plan["pools"]]
    share = {(s["demand"], s["pool"]): s["shares"][h] for s in hourly["shares"]}
    rows = [a | {"share": share.get((a["demand"], a["pool"]), a["share"]) if a["pool"] in fleet else a["share"]}
            for a in plan["assignments"]]
    keep = [a for a in rows if a["share"] > 0]
    return (plan | {"pools": [p for p in pools if p["count"] > 0], "assignments": keep},
            {w: r[h] for w, r in rates.items()}, h)


def simulate_plan(scenario: Resolved | str | Path, plan: dict[str, Any], *, requests: int = 20000, seed: int = 0,
                  arrivals: str = "poisson", calibration: Calibration | None = None,
                  engine: str | None = None, trace: Sequence[float] | None = None) -> SimulationReport:
    """Simulate every workload of ``plan`` (the plan JSON as a dict); see the module docstring. ``trace``: the
    timestamps of ``trace:FILE`` arrivals if already read (else read here, once for every workload)."""
    resolved = scenario if isinstance(scenario, Resolved) else load_scenario(scenario)
    calibration = calibration or resolved.calibration  # the calibration the plan was made with
    rng = np.random.default_rng(seed)
    if trace is None and arrivals.startswith("trace:"):
        trace = read_trace(arrivals.split(":", 1)[1])
    hour_rates: dict[str, float] | None = None
    if plan.get("hourly"):  # rate profiles: replay the busiest hour with that hour's fleet and routing
        plan, hour_rates, hour = busiest_hour(plan)
    pools = replay_pools(resolved, plan, calibration, engine)
    report = SimulationReport(resolved.scenario.name, int(requests), int(seed), arrivals, WARMUP)
    report.notes.append(f"first {WARMUP:.0%} of each workload's requests (by arrival) left out as warm-up; "
                        f"round-robin over each pool's replicas; calibration: {calibration.source}")
    online = [w for w in resolved.scenario.workloads if w.mode == "online" and w.request_rate_per_s]
    # replay the rate the plan was sized for: the mean rate times the peak factor
    peak = {w.name: (w.request_rate_per_s or 0.0) * (w.peak_factor or resolved.scenario.peak_factor) for w in online}
    if hour_rates is not None:
        peak = {name: hour_rates.get(name, rate) for name, rate in peak.items()}
        online = [w for w in online if peak[w.name] > 0]
        report.notes.append(f"hourly plan: hour {hour:02d} replayed (the most planned requests/s)")
    total_rate = sum(peak.values())
    streams: dict[str, list[Any]] = {p: [] for p in pools}  # pool -> [(workload, index array, arr, lin, lout)]
    per_workload: dict[str, dict[str, Any]] = {}
    for w in online:
        n = max(int(round(requests * peak[w.name] / total_rate)), 20)
        arr = arrival_times(peak[w.name], n, arrivals, rng, trace)
        lin, lout, bucket = _lengths(w, n, rng)
        rows = [a for a in plan.get("assignments", []) if a["workload"] == w.name]
        demand = np.array([f"{w.name}#{k}" for k in bucket]) if any("#" in str(a.get("demand", "")) for a in rows) \
            else np.full(n, w.name)
        pool_of = np.full(n, "", dtype=object)
        for d in np.unique(demand):
            mine = [a for a in rows if str(a.get("demand", w.name)) == d] or rows
            if not mine:
                continue
            share = np.array([max(float(a.get("share", 1.0)), 0.0) for a in mine])
            pick = rng.choice(len(mine), size=int(np.sum(demand == d)), p=share / share.sum())
            pool_of[demand == d] = np.array([a["pool"] for a in mine], dtype=object)[pick]
        per_workload[w.name] = {"arr": arr, "lin": lin, "lout": lout, "pool": pool_of,
                                "out": {k: np.full(n, np.nan) for k in ("ttft_s", "tpot_s", "e2e_s", "queue_s")}}
        for p in pools:
            idx = np.flatnonzero(pool_of == p)
            if idx.size:
                streams[p].append((w.name, idx))
    for name, parts in streams.items():
        if not parts:
            continue
        pool = pools[name]
        arr = np.concatenate([per_workload[w]["arr"][i] for w, i in parts])
        lin = np.concatenate([per_workload[w]["lin"][i] for w, i in parts])
        lout = np.concatenate([per_workload[w]["lout"][i] for w, i in parts])
        need = float(np.max(lin + lout))
        if pool.kv_tokens is not None and pool.kv_tokens < need:  # the replay would preempt for ever
            raise InputError(f"pool {name}: the memory its weights leave holds {max(pool.kv_tokens, 0.0):,.0f} KV "
                             f"tokens, fewer than one request's {need:,.0f} (batch size, GPU or offload wrong?)",
                             field="assignments.pool")
        res = route_and_simulate(pool.shape, pool.theta, pool.engine, pool.max_seqs, pool.replicas, arr, lin,
                                 lout, pool.kv_tokens)
        start = 0
        for w, i in parts:
            for k, v in per_workload[w]["out"].items():
                v[i] = getattr(res, k)[start:start + i.size]
            start += i.size
        report.pools.append({"pool": name, "engine": pool.engine.engine, "replicas": pool.replicas,
                             "max_seqs": pool.max_seqs, "requests": int(arr.size),
                             "utilisation": float(np.mean(res.utilisation)),
                             "slot_occupancy": float(np.mean(res.occupancy)),
                             "mean_queue": float(np.mean(res.mean_queue)), "max_queue": int(max(res.max_queue)),
                             "preemptions": int(res.preemptions), "iterations": int(res.iterations),
                             "kv_capacity_tokens": None if pool.kv_tokens is None else round(pool.kv_tokens)})
    for w in online:
        report.workloads.append(_online_stats(w, per_workload[w.name], report))
    for w in resolved.scenario.workloads:
        if w.mode == "offline":
            report.workloads.append(_offline(w, plan, pools, requests, rng, report))
    return report


def _online_stats(w: Workload, data: dict[str, Any], report: SimulationReport) -> dict[str, Any]:
    order = np.argsort(data["arr"], kind="stable")
    keep = order[int(math.floor(WARMUP * order.size)):]
    out = {k: v[keep] for k, v in data["out"].items()}
    row: dict[str, Any] = {"workload": w.name, "mode": "online", "requests": int(keep.size),
                 "rate_per_s": w.request_rate_per_s, "peak_factor": w.peak_factor or 1.0, "unrouted": int(np.sum(data["pool"] == ""))}
    for m in METRICS:
        v = out[f"{m}_s"]
        row[m] = {s: statistic(v, s) for s in ("mean", "p50", "p90", "p99")}
        bound = getattr(w.slo, BOUND[m])
        if bound is None:
            continue
        pct = slo_percentile(w.slo, m)
        value = statistic(v, pct)
        row[m]["bound"], row[m]["percentile"] = bound, pct
        row[m]["meets_share"] = float(np.mean(np.nan_to_num(v, nan=np.inf) <= bound))
        if not value <= bound:
            report.failures.append({"workload": w.name, "metric": m, "percentile": pct, "value": value,
                                    "bound": bound})
    row["queue_wait_s"] = {s: statistic(out["queue_s"], s) for s in ("mean", "p99")}
    if row["unrouted"]:
        report.failures.append({"workload": w.name, "metric": "routing", "percentile": "-",
                                "value": row["unrouted"], "bound": 0})
    return row


def _offline(w: Workload, plan: dict[str, Any], pools: dict[str, Any], requests: int, rng: np.random.Generator,
             report: SimulationReport) -> dict[str, Any]:
    assert w.num_requests is not None and w.deadline_hours is not None  # the schema requires both offline
    rows = [a for a in plan.get("assignments", []) if a["workload"] == w.name]
    parts, finish_h = [], 0.0
    for a in rows:
        pool = pools[a["pool"]]
        total = float(a.get("share", 1.0)) * w.num_requests
        per_replica = math.ceil(total / pool.replicas)
        # a replay shorter than the job replays whole batches of the engine's sequences and measures the middle
        # half's throughput between batch ends: a partial batch replayed, and quartiles that cut batches, read a
        # 6,771-request job replayed from 3,000 as 0.510 h against 0.499 h replayed in full
        batch = max(int(pool.max_seqs), 1)
        n = per_replica if per_replica <= requests else min(max(requests // batch, 1) * batch, per_replica)
        lin, lout, _ = _lengths(w, n, rng)
        res = route_and_simulate(pool.shape, pool.theta, pool.engine, pool.max_seqs, 1, np.zeros(n), lin, lout,
                                 pool.kv_tokens)
        done = np.sort(res.e2e_s)
        span = done[-1]
        if per_replica > n:
            lo, hi = n // 4 // batch * batch, 3 * n // 4 // batch * batch  # the first requests of whole batches
            # four or more batches replayed (lo > 0, then hi >= lo + 2 batches): the rest at the throughput between
            # the middle half's batch ends; fewer: their mean time per request, start-up included
            span = (done[-1] + (per_replica - n) * (done[hi - 1] - done[lo - 1]) / (hi - lo) if lo > 0
                    else done[-1] * per_replica / n)
        hours = span / 3600.0
        finish_h = max(finish_h, hours)
        parts.append({"pool": a["pool"], "requests": int(round(total)), "replicas": pool.replicas,
                      "simulated_per_replica": n, "makespan_h": hours})
    row = {"workload": w.name, "mode": "offline", "requests": w.num_requests, "deadline_h": w.deadline_hours,
           "makespan_h": finish_h, "parts": parts}
    if not rows or finish_h > w.deadline_hours:
        report.failures.append({"workload": w.name, "metric": "makespan_h", "percentile": "max",
                                "value": finish_h if rows else math.inf, "bound": w.deadline_hours})
    return row


# ---- rendering and the CLI entry ------------------------------------------------------------------------------


def render_table(report: SimulationReport) -> str:
    lines = [f"Simulated plan for {report.scenario!r}: {report.requests:,} requests, seed {report.seed}, "
             f"arrivals {report.arrivals}; " + ("every SLO holds" if report.holds else "SLO VIOLATED")]
    lines.append(f"{'workload':<18}{'metric':<8}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'bound':>10}"
                 f"{'at':>6}{'meets':>8}")
    for row in report.workloads:
        if row["mode"] == "offline":
            lines.append(f"{row['workload']:<18}{'makespan':<8}{row['makespan_h']:>9.2f}h{'':>30}"
                         f"{row['deadline_h']:>9.2f}h{'max':>6}")
            continue
        for m in METRICS:
            s = row[m]
            ms: Callable[[float], str] = (  # noqa: E731
                lambda x: f"{x * 1e3:>8.1f}ms" if math.isfinite(x) else f"{'inf':>10}")
            bound = ms(s["bound"]) if "bound" in s else f"{'-':>10}"
            meets = f"{s['meets_share']:>7.1%}" if "meets_share" in s else f"{'':>7}"
            lines.append(f"{row['workload']:<18}{m:<8}{ms(s['mean'])}{ms(s['p50'])}{ms(s['p90'])}{ms(s['p99'])}"
                         f"{bound}{s.get('percentile', ''):>6} {meets}")
    for p in report.pools:
        lines.append(f"pool {p['pool']}: {p['replicas']} replicas, {p['requests']:,} requests, utilisation "
                     f"{p['utilisation']:.0%}, slots held {p['slot_occupancy']:.0%}, queue mean {p['mean_queue']:.2f} "
                     f"max {p['max_queue']}, "
                     f"preemptions {p['preemptions']}")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def failure_message(f: dict[str, Any]) -> str:
    if f["metric"] == "makespan_h":
        return (f"{f['workload']}: simulated makespan {f['value']:.2f} h exceeds the deadline of "
                f"{f['bound']:.2f} h")
    if f["metric"] == "routing":
        return f"{f['workload']}: {f['value']} requests have no pool in the plan"
    return (f"{f['workload']}: simulated {f['metric'].upper()} {f['percentile']} = {f['value'] * 1e3:.1f} ms "
            f"exceeds the bound of {f['bound'] * 1e3:.1f} ms")


def run_simulate_command(scenario: Resolved | str | Path, plan_path: str | Path, requests: int = 20000,
                         seed: int = 0, arrivals: str = "poisson", fmt: str = "table", out: str | Path | None = None
                         ) -> tuple[str, int, str]:
    """``infersave simulate``: (text to print, exit code 0 when every SLO holds at its percentile, else 1, the line
    naming the first bound missed or ""). The table ends with that line; the JSON does not, so stdout stays one
    document (its ``holds`` and ``failures`` say the same). ``scenario``: its file, or the scenario already loaded
    (``verify --simulate``)."""

    trace = check_arrivals(arrivals)
    resolved = scenario if isinstance(scenario, Resolved) else load_scenario(scenario)
    workloads = {w.name for w in resolved.scenario.workloads}
    plan = check_replay_plan(plan_path, workloads, offers_of(resolved.instances))
    report = simulate_plan(resolved, plan, requests=requests, seed=seed, arrivals=arrivals, trace=trace)
    text = json.dumps(report.to_dict(), indent=2, default=float) if fmt == "json" else render_table(report)
    if out is not None:
        atomic_write_text(out, text + "\n")
    if report.holds:
        return text, 0, ""
    missed = failure_message(report.failures[0])
    return (text if fmt == "json" else text + "\n" + missed), 1, missed
