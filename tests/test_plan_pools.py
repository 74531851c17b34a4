"""Every pool a plan lists is a VM to start: it carries load, and the table's fleet is the sum of the pools."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import solver
from solver.errors import PlannerError
from solver.report import plan_text

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
BUNDLED = sorted(p for p in SCENARIOS.rglob("*.yaml") if "axes:" not in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_every_listed_pool_runs_and_the_table_counts_each_once(path):
    try:
        plan = solver.plan(str(path))
    except PlannerError:
        pytest.skip("no plan for this scenario (infeasible or not a fleet scenario)")
    used = {a.pool for a in plan.assignments if a.share > 0}
    for pool in plan.pools:
        assert pool.count > 0 and pool.pool in used and pool.usd > 0, pool
    text = plan_text(plan)
    fleet = int(re.search(r"fleet: (\d+) VMs", text).group(1))
    assert fleet == sum(p.count for p in plan.pools)
    # the table's VMs column shows each pool once, so it sums to the fleet too
    first_table = text.split("└", 1)[0]  # the assignments table; hourly plans print more tables after it
    rows = [line.split("│") for line in first_table.splitlines() if line.startswith("│")]
    vms = [cells[6].strip() for cells in rows]  # cells[0] is the left border
    assert sum(int(v) for v in vms if v) == fleet
