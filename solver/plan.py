"""Orchestration: from a scenario to a checked ``Plan`` (candidates -> MILP -> solve/extract/check), and the
diagnosis of scenarios without a plan.

``plan()`` is the Python API (usable from an Airflow PythonOperator); it raises ``NoCandidatesError`` or
``InfeasibleError`` with a diagnosis when no plan exists, and never returns a plan that ``verify`` rejects.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .backends import SolveResult, Status, solve
from .candidates import Candidates, build_candidates
from .errors import InfeasibleError, NoCandidatesError, ScenarioError, SolverFailure
from .extract import SolveOptions, solve_plan
from .milp import build_problem
from .plan_types import Plan
from .promise import mixed_headroom, slo_report
from .provenance import provenance_of
from .replay_check import REPLAY_ROUNDS, replay_misses, with_note
from .scenario import Resolved, load_scenario, resolve
from .schema import Scenario
from .table import SLO_RULE, Rejection, demand_load
from .verify import verify

MAX_VMS_PER_DEMAND = 100_000


def _resolved(scenario: Resolved | Scenario | str | Path) -> Resolved:
    if isinstance(scenario, Resolved):
        return scenario
    if isinstance(scenario, Scenario):
        return resolve(scenario)
    return load_scenario(scenario)


def nearest_miss(cands: Candidates, demand: str) -> str:
    """One line: why the demand cannot be served, and the closest candidate."""
    rej = cands.rejected[cands.rejected["demand"] == demand] if len(cands.rejected) else cands.rejected
    d = cands.demands.set_index("demand").loc[demand]
    head = f"workload {d['workload']!r} ({d['model']}, {d['input_tokens']} in / {d['output_tokens']} out)"
    if rej.empty:
        return f"{head}: no instance in the catalog is allowed for it"
    slo = rej[rej["rejection"].isin([code.value for code in SLO_RULE])]
    if slo.empty:
        return f"{head}: does not fit GPU memory on any allowed instance, even with KV offloading"
    rule = SLO_RULE[Rejection(slo["rejection"].iloc[0])]
    bound = float(slo["rejection_bound"].iloc[0])
    same = slo[slo["rejection"] == rule.code.value]
    best = same.loc[same[rule.value].idxmax() if rule.sense < 0 else same[rule.value].idxmin()]
    cmp = ">=" if rule.sense < 0 else "<="
    return (f"{head}: no instance meets {rule.label} {cmp} {bound * rule.scale:g} {rule.unit}; best is "
            f"{best['instance_type']} (batch {best['batch_size']}, tp {best['tensor_parallel']}) at "
            f"{best[rule.value] * rule.scale:.4g} {rule.unit}")


def check_scale(cands: Candidates, resolved: Resolved) -> None:
    """Refuse demands that need more VMs than any real fleet, even on their best candidate: such numbers are
    almost always a unit slip, and they push solvers into numerical trouble."""
    rows = cands.table
    load = pd.Series(demand_load(rows), index=rows.index)
    hours = rows["deadline_hours"].where(rows["mode"] == "offline", 1.0)
    best = (load / hours).groupby(rows["demand"]).min()
    demands = cands.demands.set_index("demand")
    for demand, vms in best.items():
        if vms > MAX_VMS_PER_DEMAND:
            d = demands.loc[demand]
            index = [x.name for x in resolved.scenario.workloads].index(d["workload"])
            field = "request_rate_per_s" if d["mode"] == "online" else "num_requests"
            raise ScenarioError(f"needs at least {vms:,.0f} VMs even on its best instance (limit "
                                f"{MAX_VMS_PER_DEMAND:,}); check the units", path=resolved.path,
                                field=f"workloads.{index}.{field}")


def diagnose(rows: pd.DataFrame, scenario: Scenario, backend: str) -> str:
    """Name the constraint families, and the workloads' own replica bounds, whose removal alone makes the problem
    feasible (deletion filter); failing those, say whether removing them all would."""
    relaxations: dict[str, dict[str, object]] = {
        "quota": {"quotas": []}, "budget": {"budget_usd_per_hour": None, "budget_usd": None},
        "distinct instance types": {"max_instance_types": None}, "spot share": {"max_spot_share": None}}
    bounds = ("min_replicas", "max_replicas", "spread")  # a workload's own replica bounds

    @functools.cache  # the same relaxation is asked for more than once (one bounded workload, or no family given)
    def feasible(families: tuple[str, ...] = (), unbounded: tuple[int, ...] = ()) -> bool:
        """Whether the problem has a plan without those families and those workloads' replica bounds."""
        workloads = list(scenario.workloads)
        for i in unbounded:
            workloads[i] = workloads[i].model_copy(update=dict.fromkeys(bounds))
        change = {key: value for family in families for key, value in relaxations[family].items()}
        relaxed = scenario.model_copy(update={**change, "workloads": workloads})
        return solve(build_problem(rows, relaxed).model, backend, time_limit_s=30).status is not Status.INFEASIBLE

    # a family is given when any of its fields is set: a spot share of 0 (no spot at all) is set, though falsy
    given = tuple(family for family, change in relaxations.items()
                  if any(getattr(scenario, k) not in (None, []) for k in change))
    culprits = [family for family in given if feasible((family,))]
    bounded = {i: [f"{key}: {getattr(w, key)}" for key in bounds if getattr(w, key)]
               for i, w in enumerate(scenario.workloads) if any(getattr(w, key) for key in bounds)}

    def alone_at_fault(group: tuple[int, ...]) -> list[int]:
        """The workloads of ``group`` whose bounds alone make the problem infeasible. Relaxing more bounds never
        removes a plan, so a group whose bounds all relaxed leave none holds no such workload: halving the groups
        that do finds them in a few solves per culprit instead of one per bounded workload."""
        if not group or not feasible((), group):
            return []
        if len(group) == 1:
            return list(group)
        half = len(group) // 2
        return alone_at_fault(group[:half]) + alone_at_fault(group[half:])

    named = [f"workload {scenario.workloads[i].name!r} ({', '.join(bounded[i])})"
             for i in alone_at_fault(tuple(bounded))]
    parts = ([f"the {' and '.join(culprits)} constraints"] if culprits else []) + named
    if parts:
        return f"infeasible because of {' and '.join(parts)}: relax {'it' if parts == named[:1] else 'them'} " \
               "to find a plan"
    if (given or bounded) and feasible(given, tuple(bounded)):
        return ("infeasible because quotas, budgets, type limits, spot share and replica bounds together leave no "
                "plan, though none of them alone does: relax several of them")
    return "the fleet cannot be served even without quotas, budgets, type limits or replica bounds"


MIX_ROUNDS = 8  # re-solves for pools whose request-size mix needs more than the sum of solo capacities
# Seconds per demand the solve leaves for the checks after it (a time limit covers the whole run): measured on
# the 1,000-workload fleets of benchmarks/scale.py on 2 busy cores, then about doubled. Verification and the SLO
# report take ~1 ms per demand; the mix check ~1.5-1.9 ms more per demand that may share a pool with others (a
# bisection for each pool whose request sizes overload it). At most CHECK_SHARE_MAX of the limit: a short limit
# still leaves the solve most of it.
CHECK_S_PER_DEMAND = 0.002
MIX_CHECK_S_PER_DEMAND = 0.003
CHECK_SHARE_MAX = 0.25


def check_reserve_s(demands: pd.DataFrame, time_limit_s: float | None) -> float:
    """Seconds to keep after the first solve for the mix check, verification and the SLO report, estimated
    from the demands (``Candidates.demands``) before any plan exists."""
    if time_limit_s is None:
        return 0.0
    return min(CHECK_S_PER_DEMAND * len(demands) + MIX_CHECK_S_PER_DEMAND * pooled_online(demands),
               CHECK_SHARE_MAX * time_limit_s)


def pooled_online(demands: pd.DataFrame) -> int:
    """Online demands that may share a pool with another demand (their mix is checked after each solve)."""
    online = demands[demands["mode"] == "online"]
    return int((online.groupby("group")["demand"].transform("size") > 1).sum())


MIX_SHARE = 0.5  # of the solve's time held back for the mix re-solves when pools may serve several sizes
MIN_RESOLVE_S = 1.0  # a mix re-solve starts only with this much of the time limit left


def mix_share_s(demands: pd.DataFrame, time_limit_s: float | None, started: float, reserve_s: float) -> float:
    """Seconds the first solve leaves for the mix re-solves: MIX_SHARE of what the limit leaves it when some
    online demands may share a pool (their mix is checked after the solve), else nothing."""
    if time_limit_s is None:
        return 0.0
    if not pooled_online(demands):
        return 0.0
    return MIX_SHARE * max(time_limit_s - (time.perf_counter() - started) - reserve_s, 0.0)


def final_checks_s(plan: Plan) -> float:
    """Seconds to keep for verification and the SLO report of a plan (once one exists)."""
    return CHECK_S_PER_DEMAND * len(plan.assignments)


def candidates_for(resolved: Resolved, prune: bool = True) -> Candidates:
    """The scenario's candidate table; raises ``NoCandidatesError`` naming each demand's nearest miss."""
    sc = resolved.scenario
    try:
        cands = build_candidates(sc, resolved.instances, resolved.models, resolved.calibration, prune=prune)
    except ScenarioError as exc:  # raised without the file name (e.g. an online workload with no rate)
        if exc.path:
            raise
        raise ScenarioError(str(exc).split(": ", 1)[-1], path=resolved.path, field=exc.field) from None
    served = set(cands.table["demand"]) if not cands.table.empty else set()
    missing = [d for d in cands.demands["demand"] if d not in served]
    if missing:
        raise NoCandidatesError("; ".join(nearest_miss(cands, d) for d in missing))
    check_scale(cands, resolved)
    return cands


def with_load_factors(cands: Candidates, factors: dict[str, float]) -> Candidates:
    """The candidates with each named pool's load per VM scaled by its factor (``mix_headroom``, cumulative)."""
    table = cands.table
    before = table["mix_headroom"] if "mix_headroom" in table else 1.0
    return dataclasses.replace(cands, table=table.assign(
        mix_headroom=before * table["pool"].map(factors).fillna(1.0).to_numpy(float)))


def _mix_warning(out: Plan, headroom: dict[str, float], why: str) -> Plan:
    """The plan with a WARNING note naming the pools whose mix of request sizes it overloads."""
    names = ", ".join(sorted(headroom)[:3]) + (", ..." if len(headroom) > 3 else "")
    warning = (f"WARNING: {len(headroom)} pool(s) serving several request sizes carry more than their mix holds "
               f"(capacity = the sum of the sizes' solo capacities; {why}): {names}")
    return with_note(out, warning)


def plan(scenario: Resolved | Scenario | str | Path, *, solver: str = "highs", time_limit_s: float | None = None,
         mip_gap: float = 1e-6, prune: bool = True, timings: bool = True, verify_plan: bool = True,
         dump_lp: str | Path | None = None, replay_requests: int = 0, replay_seed: int = 0) -> Plan:
    """Cheapest fleet that serves every workload of the scenario within its SLO and the business limits.

    ``time_limit_s`` covers the whole run: candidates, the model, the solves, the mix check, verification and
    the SLO report (the solves stop early enough to leave them their estimated time).

    Args:
        dump_lp: if given, the MILP is written there before solving (``.mps`` for MPS, else LP format).
        replay_requests: if > 0, the plan is replayed request by request (``replay_check``) and the pools of a
            workload whose replay misses an SLO get less load per VM and are solved again, up to REPLAY_ROUNDS times.

    Raises:
        NoCandidatesError: a workload has no candidate that fits and meets its SLO (message: nearest miss).
        InfeasibleError: candidates exist but quotas/budget/type limits cannot all hold (message: culprits).
        SolverFailure: no back end produced a plan within the limits.
    """
    started = time.perf_counter()  # --time-limit covers candidates, model, solves, checks and writing
    resolved = _resolved(scenario)
    cands = candidates_for(resolved, prune)
    problem = build_problem(cands.table, resolved.scenario)
    reserve_s = check_reserve_s(cands.demands, time_limit_s)
    options = SolveOptions(solver, time_limit_s, mip_gap, timings=timings,
                           lp_path=None if dump_lp is None else Path(dump_lp), started=started, reuse={},
                           reserve_s=reserve_s + mix_share_s(cands.demands, time_limit_s, started, reserve_s))

    def infeasible(result: SolveResult) -> InfeasibleError:
        return InfeasibleError(diagnose(cands.table, resolved.scenario, result.backend))

    def re_solve(shrunk: Candidates) -> Plan:  # with the options of the moment (a mix round narrows them)
        return solve_plan(build_problem(shrunk.table, resolved.scenario), resolved, shrunk, options, check=None,
                          check_name="verification", on_infeasible=infeasible)

    out = solve_plan(problem, resolved, cands, options, check=None, check_name="verification",
                     on_infeasible=infeasible)
    for round_ in range(1, MIX_ROUNDS + 1):  # pools whose mix of sizes overloads them: shrink, re-solve
        mix_at = time.perf_counter()
        headroom = mixed_headroom(resolved, out)
        if not headroom:
            break
        # a re-solve is followed by its own mix check (as long as this one, measured) and the final checks
        reserve_s = time.perf_counter() - mix_at + final_checks_s(out)
        left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - started) - reserve_s
        # a re-solve solves again only the blocks the shrink changed (the others are reused), so it needs far less
        # than the first solve; it gets every second left and keeps the last plan if it finds none in time
        stop = None if left is None or left > MIN_RESOLVE_S else f"{left:.1f} s of the time limit left"
        options = dataclasses.replace(options, reserve_s=reserve_s if time_limit_s is not None else 0.0)
        if stop is None:
            cands = with_load_factors(cands, headroom)
            try:
                out = re_solve(cands)
                continue
            except SolverFailure as exc:
                stop = str(exc)
        # out of time: keep the last plan and say what it lacks
        out = _mix_warning(out, headroom, f"re-solve {round_} of {MIX_ROUNDS} not done: {stop}")
        break
    else:  # every round re-solved: the last plan has not been checked yet
        headroom = mixed_headroom(resolved, out)
        if headroom:
            out = _mix_warning(out, headroom, f"still after {MIX_ROUNDS} re-solves")
    if replay_requests > 0:
        replayed = _keep_promises_in_replay(out, resolved, cands, re_solve, replay_requests, replay_seed,
                                            time_limit_s, started)
        if replayed.assignments != out.assignments:  # re-solved: check the new plan's mixes once more
            headroom = mixed_headroom(resolved, replayed)
            replayed = _mix_warning(replayed, headroom, "after the replay's re-solves") if headroom else replayed
        out = replayed
    if replay_requests <= 0:
        out = _short_answer_warning(out, resolved.scenario)
    violations = verify(resolved, out) if verify_plan else []  # once, on the plan returned
    if violations:
        raise SolverFailure("the solver's plan fails verification: " + "; ".join(violations[:5]))
    return out.model_copy(update={"slo_report": slo_report(resolved, out), "provenance": provenance_of(resolved)})


SHORT_ANSWER_TOKENS = 128  # the breadth and knee benchmarks cover 128-512-token answers; part 7 the shorter ones


def _short_answer_warning(out: Plan, scenario: Scenario) -> Plan:
    """The plan with a WARNING naming online workloads with a TPOT bound and answers shorter than
    ``SHORT_ANSWER_TOKENS``: the model's TPOT is optimistic there (README, Known limitations) and no replay checked
    this plan."""
    short = [w.name for w in scenario.workloads if w.mode == "online" and w.slo.max_tpot_s is not None
             and any(b.output_tokens < SHORT_ANSWER_TOKENS for b in w.size_mix())]
    if not short:
        return out
    names = ", ".join(short[:3]) + (", ..." if len(short) > 3 else "")
    return with_note(out, f"WARNING: TPOT of answers under {SHORT_ANSWER_TOKENS} tokens is optimistic in the model "
                          f"(16-64-token answers: mean -7 %, p99 -20 % against the replay, benchmarks/simulate.py "
                          f"part 7; down to -50 % where long prompts keep the engine busy); check with plan --replay N: "
                          f"{names}")


def _keep_promises_in_replay(out: Plan, resolved: Resolved, cands: Candidates, re_solve: Callable[[Candidates], Plan],
                             requests: int, seed: int, time_limit_s: float | None, started: float) -> Plan:
    """Replay the plan; while a workload misses an SLO in the replay, cut its pools' load per VM and re-solve."""
    for round_ in range(REPLAY_ROUNDS + 1):
        if time_limit_s is not None and time_limit_s - (time.perf_counter() - started) < MIN_RESOLVE_S:
            return with_note(out, f"replay check not done: under {MIN_RESOLVE_S:g} s of the time limit left")
        factors, misses = replay_misses(resolved, out, requests, seed)
        if not misses:
            return with_note(out, f"replay check: every online SLO holds in a {requests:,}-request replay (seed {seed})"
                                  + (f" after {round_} re-solve(s)" if round_ else ""))
        if round_ == REPLAY_ROUNDS:
            break
        cands = with_load_factors(cands, factors)
        try:
            out = re_solve(cands)
        except (SolverFailure, InfeasibleError) as exc:
            return with_note(out, f"WARNING: the replay misses {'; '.join(misses[:3])} and the re-solve with less "
                                  f"load on those pools failed: {str(exc).splitlines()[0]}")
    return with_note(out, f"WARNING: still after {REPLAY_ROUNDS} re-solves the {requests:,}-request replay misses "
                          + "; ".join(misses[:3]))
