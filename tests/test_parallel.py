"""Blocks solved in forked worker processes (solver/parallel.py) and candidates built per model in workers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from solver.linear_model import LinearModel
from solver.parallel import block_share, block_workers, solve_blocks

ROOT = Path(__file__).resolve().parent.parent
fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers are forked")


def _tiny(k: int) -> LinearModel:
    m = LinearModel()
    m.add_vars("y", [str(k)], 0.0, 10.0, True, 1.0)
    return m


def _name_and_pid(block: LinearModel, seconds: float | None) -> tuple[str, int, float | None]:
    if block.names == ["y[slow]"]:
        time.sleep(0.3)
    return block.names[0], os.getpid(), seconds


@fork_only
def test_blocks_come_back_in_order_from_other_processes():
    blocks = [_tiny(k) for k in range(6)]
    out = solve_blocks(blocks, _name_and_pid, None, 2, (1e-3, 1.0))
    assert [o[0] for o in out] == [f"y[{k}]" for k in range(6)]
    assert all(o[1] != os.getpid() for o in out) and all(o[2] is None for o in out)


@fork_only
def test_a_spent_limit_starts_no_more_blocks():
    slow = LinearModel()
    slow.add_vars("y", ["slow"], 0.0, 1.0, True, 1.0)
    out = solve_blocks([slow, slow, _tiny(1), _tiny(2)], _name_and_pid, 0.1, 2, (1e-3, 1.0))
    assert out[0] is not None and out[1] is not None and out[0][2] <= 0.1 + 1e-9
    assert out[2:] == [None, None]  # both workers were asleep past the limit


def test_share_and_worker_rules():
    assert block_share(10.0, 9, 1e-3, 1.0) == pytest.approx(1.0)
    assert block_share(10.0, 0, 1e-3, 1.0) == pytest.approx(10.0)
    assert block_share(0.5, 1000, 1e-3, 1.0) == pytest.approx(1e-3)
    big = LinearModel(names=["v"] * 1500)
    assert block_workers([big]) == 1 and block_workers([big, big], forbidden=True) == 1
    assert block_workers([_tiny(0), _tiny(1)]) == 1  # too small to pay for a fork


SCRIPT = """
import json, sys
import numpy as np
import solver.backends as backends
from solver.backends import solve
from solver.linear_model import LinearModel
calls = []
forked = backends.solve_blocks
backends.solve_blocks = lambda *args: calls.append(args[3]) or forked(*args)
rng = np.random.default_rng(0)
m = LinearModel()
for b in range(4):  # four independent vertex covers of a 600-node path (bipartite: the LP is integral)
    v = m.add_vars("v", [f"{b}.{j}" for j in range(600)], 0.0, 1.0, True, rng.uniform(1, 3, 600))
    for j in range(599):
        m.add_row(f"edge[{b}.{j}]", v[j:j + 2], np.ones(2), 1.0, np.inf)
result = solve(m, "highs", mip_gap=1e-6)
print(json.dumps([result.status.value, result.objective, result.bound, calls]))
"""


def test_parallel_solve_matches_one_process():
    """In a fresh process (where HiGHS has not run, so blocks may go to forked workers) and with one worker."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True,
                           env=env | {"INFERSAVE_WORKERS": workers}).stdout for workers in ("2", "1")]
    (status2, obj2, bound2, calls2), (status1, obj1, bound1, calls1) = (json.loads(r) for r in runs)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    assert calls1 == [] and calls2 == ([2] if cpus >= 2 and hasattr(os, "fork") else [])  # the workers used
    assert status2 == status1 == "optimal"
    assert obj2 == pytest.approx(obj1, rel=1e-9) and bound2 == pytest.approx(bound1, rel=1e-9)


def test_candidates_from_workers_equal_one_process():
    from solver.candidates import build_candidates
    from solver.scenario import resolve
    from solver.schema import Scenario

    workloads = [dict(name=f"w{i}", model=m, input_tokens=512, output_tokens=128, request_rate_per_s=1.0 + i % 7)
                 for i, m in enumerate(["llama-3.1-8b", "mistral-7b", "qwen2.5-7b"] * 4)]
    r = resolve(Scenario(name="two-workers", workloads=workloads, pricing="both", horizon_hours=24))
    one, two = (build_candidates(r.scenario, r.instances, r.models, r.calibration, workers=w) for w in (1, 2))
    pd.testing.assert_frame_equal(one.table, two.table, check_exact=True)
    assert one.stats == two.stats
