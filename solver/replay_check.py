"""A plan checked by its own replay (``infersave plan --replay N``): where the request-level simulator says an
online workload misses an SLO at its percentile, the pools serving it get less load per VM and the MILP is solved
again, so the plan returned keeps its promises in the replay as well as in the analytic model.

The simulator is the reference where it and the analytic model disagree (README "Plans that keep their
promises"); the analytic model is still what the MILP prices, and this loop only tightens the pools a replay
finds short. A replay near a pool's knee is noisy (the p99 of a 150,000-request replay moves by tens of percent
between seeds), so a miss found here can be the replay's noise: the cost is a somewhat larger fleet, never a
broken promise.
"""
from __future__ import annotations

from .plan_types import Plan
from .scenario import Resolved
from .simulate_report import METRICS, simulate_plan

REPLAY_ROUNDS = 3  # re-solves after a replay finds a miss; a plan still short after them carries a WARNING
# one round's load factor on a pool that misses: the bound over the replayed value of its worst miss, within these
# (a queue near its knee grows much faster than the load, so a small cut goes a long way; at least 5 % so the
# next replay sees a different plan)
SHRINK_RANGE = (0.7, 0.95)


def replay_misses(resolved: Resolved, plan: Plan, requests: int, seed: int) -> tuple[dict[str, float], list[str]]:
    """(pool -> load factor for the pools serving a workload whose replay misses an SLO, one line per miss)."""
    report = simulate_plan(resolved, plan.model_dump(), requests=requests, seed=seed)
    misses = [f for f in report.failures if f["metric"] in METRICS]
    factors: dict[str, float] = {}
    lines = []
    for f in misses:
        value, bound = float(f["value"]), float(f["bound"])
        ratio = bound / value if value > 0 and value == value else SHRINK_RANGE[0]  # NaN: never served in time
        factor = min(max(ratio, SHRINK_RANGE[0]), SHRINK_RANGE[1])
        for a in plan.assignments:
            if a.workload == f["workload"] and a.count > 0:
                factors[a.pool] = min(factors.get(a.pool, 1.0), factor)
        lines.append(f"{f['workload']} {f['metric']} {f['percentile']} {value:.4g} s > {bound:.4g} s")
    return factors, lines


def with_note(plan: Plan, text: str) -> Plan:
    """The plan with ``text`` appended to its solver note."""
    return plan.model_copy(update={"solver": plan.solver.model_copy(
        update={"note": "; ".join(x for x in (plan.solver.note, text) if x)})})
