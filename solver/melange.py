"""Mélange input files (Griggs et al. 2024, github.com/tyler-griggs/melange-release) solved with the fleet MILP.

A Mélange config is JSON (``melange/config/example.json`` upstream)::

    {"gpu_info": {"A10G": {"cost": 1.01, "tputs": [[2, 1], [5, 2]]}, ...},
     "workload_distribution": [[0.2, 0.1], [0.5, 0.2]],      # input-length rows x output-length columns
     "total_request_rate": 30.0,                             # requests/s over all buckets
     "slice_factor": 1}                                      # each bucket is cut into this many equal slices

``cost`` is USD per hour of one GPU, ``tputs[i][j]`` the most requests/s one GPU sustains within the SLO for
requests of bucket (i, j). Upstream's ``MelangeSolver`` cuts bucket (i, j)'s rate ``R f_ij`` into ``S =
slice_factor`` slices of ``R f_ij / S``, assigns each slice whole to one GPU type (binary ``x``), and buys
``y_g >= sum_slices x * (R f_ij / S) / tput_g,ij`` GPUs of type g (integer) at minimum ``sum_g cost_g y_g``.

Here each non-zero bucket is one demand (rate ``R f_ij``) and each GPU type one pool shared by every bucket, so
``build_problem``'s capacity row is exactly upstream's C2 and its objective (one-hour horizon) is USD/h:

* slice rule (default): ``x_{d,g}`` in ``{0, 1/S, ..., 1}`` via integer slice counts (``add_slice_constraints``);
  the same optimum as upstream's ILP, with one integer per (bucket, GPU) instead of ``S`` binaries (no symmetry
  between a bucket's identical slices);
* fractional (``fractional=True``): ``x`` continuous; never costs more than the slice rule.

Differences from upstream, on purpose: a zero ``tput`` marks a cell the GPU cannot serve (upstream divides by
zero); the file is validated (shapes, fractions sum to 1, costs > 0, tputs >= 0, finite numbers) with one-line
errors naming the file and field; keys starting with ``_`` are comments (upstream's loader would reject them).
``gpu_info`` may also be a list of ``{"name", "cost", "tputs"}`` objects, the shape upstream's README describes.

Plans carry no latencies or batch sizes (a Mélange profile has only throughputs): those fields are 0.
``check_plan`` re-checks a plan against the file with plain arithmetic, sharing no code with the MILP.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError

from .backends import SolveResult
from .calibration import Calibration
from .candidates import Candidates
from .errors import NoCandidatesError, ScenarioError, SolverFailure, first_problem
from .extract import SolveOptions, solve_plan
from .io import read_json
from .milp import build_problem
from .plan_types import Plan
from .scenario import Resolved
from .schema import Frozen, Scenario, Workload
from .table import complete

FRACTION_TOL = 1e-6
CAPACITY_TOL = 1e-6
WORKLOAD = "melange"


class GpuProfile(Frozen):
    cost: float = Field(gt=0, le=1e6, description="USD per hour of one GPU")
    tputs: list[list[float]] = Field(description="max requests/s per bucket, input rows x output columns")


class MelangeInput(Frozen):
    gpu_info: dict[str, GpuProfile]
    workload_distribution: list[list[float]]
    # the scenario's own bound on a workload's rate, which the converted workloads must meet
    total_request_rate: float = Field(gt=0, le=1e6, description="requests/s over all buckets")
    slice_factor: int = Field(default=1, ge=1, le=1_000_000)


@dataclass(frozen=True)
class Melange:
    """A validated Mélange instance and the file it came from (used in error messages and as the plan name)."""

    spec: MelangeInput
    path: str = "<melange>"

    @property
    def name(self) -> str:
        return Path(self.path).stem if self.path != "<melange>" else "melange"

    @property
    def shape(self) -> tuple[int, int]:
        w = self.spec.workload_distribution
        return len(w), len(w[0])

    @property
    def gpus(self) -> list[str]:
        return list(self.spec.gpu_info)


def demand_name(i: int, j: int) -> str:
    """The demand (and plan ``demand`` field) of bucket (input row i, output column j)."""
    return f"in{i}_out{j}"


def _field(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def parse_melange(data: Any, path: str = "<melange>") -> Melange:
    """Validate a Mélange config (already parsed JSON); raise ``ScenarioError`` naming the file and field."""
    if not isinstance(data, dict):
        raise ScenarioError("a Melange config must be a JSON object with gpu_info, workload_distribution, "
                            "total_request_rate and slice_factor", path=path)
    data = {k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("_"))}
    gpu_info = data.get("gpu_info")
    if isinstance(gpu_info, list):  # the README's "list of dictionaries with name, cost, tputs"
        converted = {}
        for k, item in enumerate(gpu_info):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ScenarioError("each gpu_info entry needs a string 'name'", path=path, field=f"gpu_info.{k}")
            if item["name"] in converted:
                raise ScenarioError(f"duplicate GPU name {item['name']!r}", path=path, field=f"gpu_info.{k}.name")
            converted[item["name"]] = {key: v for key, v in item.items() if key != "name"}
        data = {**data, "gpu_info": converted}
    for key in ("slice_factor",):  # reject 1.5 and True rather than truncating them
        value = data.get(key)
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ScenarioError(f"must be a positive integer, got {value!r}", path=path, field=key)
    try:
        spec = MelangeInput(**data)
    except ValidationError as exc:
        _, msg, kind = first_problem(exc)
        if kind == "extra_forbidden":
            msg = "unknown field (check the spelling; keys starting with '_' are comments)"
        elif kind == "missing":
            msg = "required field is missing"
        raise ScenarioError(msg, path=path, field=_field(tuple(exc.errors()[0]["loc"])) or None) from None
    _check_consistency(spec, path)
    return Melange(spec, path)


def _check_matrix(matrix: list[list[float]], rows: int, cols: int, what: str, path: str, field: str) -> None:
    if len(matrix) != rows or any(len(r) != cols for r in matrix):
        got = f"{len(matrix)} rows of lengths {sorted({len(r) for r in matrix})}" if matrix else "empty"
        raise ScenarioError(f"{what} must be {rows}x{cols} like workload_distribution, got {got}",
                            path=path, field=field)


def _check_consistency(spec: MelangeInput, path: str) -> None:
    w = spec.workload_distribution
    if not w or not w[0]:
        raise ScenarioError("must be a non-empty matrix (input-size rows x output-size columns)", path=path,
                            field="workload_distribution")
    rows, cols = len(w), len(w[0])
    for i, row in enumerate(w):
        if len(row) != cols:
            raise ScenarioError(f"ragged matrix: row {i} has {len(row)} columns, row 0 has {cols}", path=path,
                                field=f"workload_distribution.{i}")
        for j, f in enumerate(row):
            if f < 0:
                raise ScenarioError(f"fractions must be >= 0, got {f}", path=path,
                                    field=f"workload_distribution.{i}.{j}")
    total = math.fsum(f for row in w for f in row)
    if abs(total - 1.0) > FRACTION_TOL:
        raise ScenarioError(f"fractions must sum to 1, they sum to {total:.9g}", path=path,
                            field="workload_distribution")
    if not spec.gpu_info:
        raise ScenarioError("needs at least one GPU type", path=path, field="gpu_info")
    for name, gpu in spec.gpu_info.items():
        if not name.strip():
            raise ScenarioError("GPU names must be non-empty", path=path, field="gpu_info")
        _check_matrix(gpu.tputs, rows, cols, "tputs", path, f"gpu_info.{name}.tputs")
        for i, row in enumerate(gpu.tputs):
            for j, t in enumerate(row):
                if t < 0:
                    raise ScenarioError(f"throughputs must be >= 0 (0 = cannot serve), got {t}", path=path,
                                        field=f"gpu_info.{name}.tputs.{i}.{j}")


def load_melange(path: str | Path) -> Melange:
    """Read and validate a Mélange JSON config."""

    path = Path(path)
    return parse_melange(read_json(path, ScenarioError, "JSON"), str(path))


# ---- candidate table -------------------------------------------------------------------------------------


def buckets(m: Melange) -> list[tuple[int, int, float, float]]:
    """(i, j, fraction, rate) of every bucket with traffic."""
    s = m.spec
    return [(i, j, f, s.total_request_rate * f) for i, row in enumerate(s.workload_distribution)
            for j, f in enumerate(row) if f > 0]


def dominated_gpus(m: Melange) -> set[str]:
    """GPU types another type beats: cost no higher and tput no lower on every bucket with traffic (exact: any
    such GPU in a plan can be swapped one for one, carrying the same shares, at no extra cost; ties keep the
    first listed)."""
    s = m.spec
    cells = [(i, j) for i, j, _f, _r in buckets(m)]
    names = m.gpus
    out = set()
    for a, ga in enumerate(names):
        for b, gb in enumerate(names):
            if a == b or gb in out:
                continue
            pa, pb = s.gpu_info[ga], s.gpu_info[gb]
            tpa = np.array([pa.tputs[i][j] for i, j in cells])
            tpb = np.array([pb.tputs[i][j] for i, j in cells])
            if pb.cost <= pa.cost and np.all(tpb >= tpa):
                tie = pb.cost == pa.cost and np.all(tpb == tpa)
                if not tie or b < a:
                    out.add(ga)
                    break
    return out


def candidate_table(m: Melange, *, prune: bool = True) -> Candidates:
    """A ``Candidates`` in the shape ``build_problem`` expects: one online demand per bucket with traffic, one
    pool per GPU type (shared by all buckets), ``requests_per_s_per_vm = tput``, ``unit_usd_per_hour = cost``.
    Zero-tput cells get no row. Raises ``NoCandidatesError`` if a bucket with traffic has no GPU at all."""
    s = m.spec
    skip = dominated_gpus(m) if prune else set()
    rows, demands, zero = [], [], 0
    for i, j, f, rate in buckets(m):
        d = demand_name(i, j)
        demands.append(dict(demand=d, workload=WORKLOAD, model=WORKLOAD, mode="online", input_bucket=i,
                            output_bucket=j, fraction=f, rate_per_s=rate))
        servable = [g for g, p in s.gpu_info.items() if p.tputs[i][j] > 0]
        if not servable:
            raise NoCandidatesError(f"{m.path}: bucket (input {i}, output {j}) carries {f:.6g} of the traffic but "
                                    "every GPU's tput there is 0: no GPU type can serve it")
        zero += len(s.gpu_info) - len(servable)
        for g in servable:
            if g in skip:
                continue
            p = s.gpu_info[g]
            rows.append(dict(
                demand=d, workload=WORKLOAD, model=WORKLOAD, mode="online", group=WORKLOAD, input_bucket=i,
                output_bucket=j, fraction=f, rate_per_s=rate, num_requests=0.0, deadline_hours=math.nan,
                pool=g, offer=g, cloud=WORKLOAD, region="-", instance_type=g, gpu=g, gpu_count=1,
                pricing="on_demand", unit_usd_per_hour=p.cost, requests_per_s_per_vm=float(p.tputs[i][j]),
                tensor_parallel=1, batch_size=0, offload_ratio=0.0))
    table = complete(pd.DataFrame(rows).sort_values(["demand", "pool"]).reset_index(drop=True))
    stats = {"buckets": len(demands), "gpu_types": len(s.gpu_info), "gpu_types_kept": len(s.gpu_info) - len(skip),
             "cells_zero_tput": zero, "rows_kept": len(table)}
    rejected = table.iloc[0:0].assign(rejection=pd.Series(dtype=object), rejection_bound=pd.Series(dtype=float))
    return Candidates(table, rejected, pd.DataFrame(demands), stats)


def melange_scenario(m: Melange) -> Scenario:
    """The engine scenario a Mélange instance stands for: one online workload, a one-hour horizon (USD/h)."""
    w = Workload(name=WORKLOAD, model=WORKLOAD, input_tokens=1, output_tokens=1,
                 request_rate_per_s=m.spec.total_request_rate)
    return Scenario(name=m.name, description=f"Melange config {m.path}", workloads=[w], horizon_hours=1.0)


# ---- solve -----------------------------------------------------------------------------------------------


def solve_melange(m: Melange | str | Path, *, fractional: bool = False, solver: str = "highs",
                  time_limit_s: float | None = None, mip_gap: float = 1e-6, prune: bool = True,
                  timings: bool = True, check: bool = True, threads: int | None = None,
                  dump_lp: str | Path | None = None) -> Plan:
    """Cheapest GPU mix for a Mélange instance, as a ``Plan`` (objective in USD/h).

    ``fractional=False`` honours the slice rule (same optimum as Mélange's ILP); ``True`` lets every bucket
    split freely across GPU types. A time-limited solve returns the best plan found, status ``feasible``,
    with its bound and gap. Raises ``NoCandidatesError``, ``SolverFailure``.
    """
    if not isinstance(m, Melange):
        m = load_melange(m)
    cands = candidate_table(m, prune=prune)
    scenario = melange_scenario(m)
    slices = None if fractional else m.spec.slice_factor
    problem = build_problem(cands.table, scenario, slices=slices)
    mode = "fractional split" if fractional else f"slice rule, slice_factor {m.spec.slice_factor}"
    resolved = Resolved(scenario, {}, [], Calibration(source=f"Melange profile ({mode})"), m.path)
    options = SolveOptions(solver, time_limit_s, mip_gap, threads, timings,
                           None if dump_lp is None else Path(dump_lp))
    melange = m

    def infeasible(_result: SolveResult) -> SolverFailure:
        # cannot happen: every bucket has a pool and pools are unbounded
        return SolverFailure(f"{melange.path}: the solver reports the Melange instance infeasible")

    def checker(plan: Plan) -> list[str]:
        return check_plan(melange, plan, slices=slices)

    return solve_plan(problem, resolved, cands, options, check=checker if check else None,
                      check_name="the Melange check", on_infeasible=infeasible)


def gpu_counts(plan: Plan) -> dict[str, int]:
    """GPUs per type in a plan (types with none are left out)."""
    out: dict[str, int] = defaultdict(int)
    for p in plan.pools:
        out[p.gpu] += p.count
    return dict(out)


# ---- independent check -----------------------------------------------------------------------------------


def check_plan(m: Melange, plan: Plan | dict[str, Any], *, slices: int | None = None, tol: float = CAPACITY_TOL) -> list[str]:
    """Violations of a plan (``Plan`` or its JSON dict) against the Mélange instance, by plain arithmetic:
    every bucket with traffic served in full, no share on a zero-tput cell or unknown GPU, shares on the slice
    grid ``k/slices`` when given, per GPU type ``sum share * rate / tput <= count``, and the reported costs."""
    plan = plan if isinstance(plan, Plan) else Plan.model_validate(plan)
    s = m.spec
    rate = {demand_name(i, j): (i, j, r) for i, j, _f, r in buckets(m)}
    bad: list[str] = []
    served: dict[str, float] = defaultdict(float)
    load: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for p in plan.pools:
        counts[p.gpu] += p.count
        if p.gpu not in s.gpu_info:
            bad.append(f"pool {p.pool}: unknown GPU {p.gpu!r}")
            continue
        if abs(p.unit_usd_per_hour - s.gpu_info[p.gpu].cost) > 1e-9:
            bad.append(f"pool {p.pool}: price {p.unit_usd_per_hour} but {p.gpu} costs {s.gpu_info[p.gpu].cost}")
        if abs(p.pool_usd_per_hour - p.count * s.gpu_info[p.gpu].cost) > 1e-6 * max(1.0, p.pool_usd_per_hour):
            bad.append(f"pool {p.pool}: pool_usd_per_hour {p.pool_usd_per_hour} != {p.count} x "
                       f"{s.gpu_info[p.gpu].cost}")
    for a in plan.assignments:
        if a.demand not in rate:
            bad.append(f"{a.demand}: not a bucket with traffic")
            continue
        if a.gpu not in s.gpu_info:
            bad.append(f"{a.demand}: unknown GPU {a.gpu!r}")
            continue
        i, j, r = rate[a.demand]
        tput = s.gpu_info[a.gpu].tputs[i][j]
        if a.share < -tol or a.share > 1 + tol:
            bad.append(f"{a.demand} on {a.gpu}: share {a.share} outside [0, 1]")
        if slices is not None and abs(a.share * slices - round(a.share * slices)) > 1e-6:
            bad.append(f"{a.demand} on {a.gpu}: share {a.share} is not a multiple of 1/{slices}")
        if tput <= 0:
            bad.append(f"{a.demand} on {a.gpu}: tput is 0 there, yet it carries {a.share:.6g} of the bucket")
            continue
        served[a.demand] += a.share
        load[a.gpu] += a.share * r / tput
    for d in rate:
        if abs(served[d] - 1.0) > 1e-6:
            bad.append(f"{d}: served {served[d]:.9g} of its traffic, not all of it")
    for g, need in load.items():
        if need > counts[g] + tol * max(1.0, need):
            bad.append(f"{g}: carries {need:.9g} GPUs of load on {counts[g]} GPUs")
    cost = math.fsum(counts[g] * s.gpu_info[g].cost for g in counts if g in s.gpu_info)
    if abs(cost - plan.objective) > 1e-6 * max(1.0, cost):
        bad.append(f"objective {plan.objective} != sum of count x cost = {cost}")
    if abs(plan.online_usd_per_hour - plan.objective) > 1e-6 * max(1.0, cost):
        bad.append(f"online_usd_per_hour {plan.online_usd_per_hour} != objective {plan.objective}")
    return bad
