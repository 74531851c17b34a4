"""Toys for the planner's replica rules: (replicas) min_replicas / max_replicas and (spread) per workload.

On tests/data/tiny.csv: l4.small costs 0.8 USD/h in r1 and 0.9 in r2; one-hour horizon, so objective = USD/h.
"""
from __future__ import annotations

import pytest

from conftest import tiny_scenario, vm_rate
from solver.errors import InfeasibleError
from solver.plan import plan
from solver.schema import Scenario

SMALL = "llama-3.2-1b"


def chat(rate: float, **extra) -> dict:
    return {"name": "chat", "model": SMALL, "input_tokens": 512, "output_tokens": 128, "request_rate_per_s": rate,
            "batch_sizes": [8], **extra}


@pytest.fixture(scope="module")
def mu() -> float:
    return vm_rate(SMALL, "L4", 8, 512, 128)


def test_min_replicas_adds_a_working_vm(mu):
    sc = Scenario(**tiny_scenario([chat(0.3 * mu, min_replicas=2)], instance_types=["l4.small"], regions=["r1"]))
    p = plan(sc)
    # one VM carries the load; the floor asks a second, and both share the load (none idle)
    assert p.objective == pytest.approx(2 * 0.8)
    assert sum(q.count for q in p.pools) == 2 and all(q.count > 0 for q in p.pools)


def test_max_replicas_caps_the_vms(mu):
    sc = Scenario(**tiny_scenario([chat(1.5 * mu, max_replicas=1)], instance_types=["l4.small"], regions=["r1"]))
    with pytest.raises(InfeasibleError):
        plan(sc)  # 1.5 VMs of load cannot fit one VM


def test_spread_puts_a_vm_in_each_region(mu):
    sc = Scenario(**tiny_scenario([chat(0.3 * mu, spread=["r1", "r2"])], instance_types=["l4.small"]))
    p = plan(sc)
    assert p.objective == pytest.approx(0.8 + 0.9)
    assert {q.region for q in p.pools} == {"r1", "r2"}


def test_replica_rules_are_online_only():
    with pytest.raises(ValueError, match="online"):
        Scenario(**tiny_scenario([{"name": "job", "model": SMALL, "mode": "offline", "input_tokens": 8,
                                   "output_tokens": 8, "num_requests": 10, "deadline_hours": 1,
                                   "min_replicas": 2}]))
