"""``infersave plan --replay N``: a plan re-solved until its request-level replay keeps every online SLO
(``solver/replay_check.py``). Toys on tests/data/tiny.csv (l4.small in r1), uncalibrated."""
from __future__ import annotations

import importlib

import pytest

from conftest import run_cli, tiny_scenario, vm_rate, write_yaml
from solver import replay_check
from solver.plan import plan
from solver.scenario import resolve
from solver.schema import Scenario

PLAN_MODULE = importlib.import_module("solver.plan")  # solver.plan is also the function
SMALL, IN, OUT, BATCH = "llama-3.2-1b", 512, 128, 16


def toy(rate: float, slo: dict) -> Scenario:
    w = {"name": "chat", "model": SMALL, "input_tokens": IN, "output_tokens": OUT, "request_rate_per_s": rate,
         "batch_sizes": [BATCH], "slo": slo}
    return Scenario(**tiny_scenario([w], instance_types=["l4.small"], regions=["r1"]))


@pytest.fixture(scope="module")
def mu() -> float:
    return vm_rate(SMALL, "L4", BATCH, IN, OUT)


def test_a_replayed_miss_names_the_pools_of_its_workload(mu):
    loose = toy(2.5 * mu, {"max_ttft_s": 30.0, "percentile": "p99"})
    p = plan(loose)
    pools = {a.pool for a in p.assignments if a.workload == "chat"}
    # the same plan against a bound no replay meets: every pool of the workload gets the smallest load factor
    tight = resolve(toy(2.5 * mu, {"max_ttft_s": 1e-4, "percentile": "p99"}))
    factors, misses = replay_check.replay_misses(tight, p, 4000, 0)
    assert set(factors) == pools and all(f == replay_check.SHRINK_RANGE[0] for f in factors.values())
    assert len(misses) == 1 and "chat ttft p99" in misses[0]
    # ... and none against the loose bound
    assert replay_check.replay_misses(resolve(loose), p, 4000, 0) == ({}, [])


def test_plan_re_solves_the_pools_a_replay_finds_short(mu, monkeypatch):
    sc = toy(2.5 * mu, {"max_ttft_s": 30.0})
    first = plan(sc)
    (pool,) = {a.pool for a in first.assignments}
    calls = []

    def fake(resolved, out, requests, seed):  # the first replay misses, the second holds
        calls.append(sum(a.count for a in out.assignments))
        return ({pool: 0.7}, ["chat ttft mean 40 s > 30 s"]) if len(calls) == 1 else ({}, [])

    monkeypatch.setattr(PLAN_MODULE, "replay_misses", fake)
    out = plan(sc, replay_requests=1000)
    assert len(calls) == 2 and calls[1] > calls[0]  # the re-solve put less load on each VM: more VMs
    assert "after 1 re-solve(s)" in out.solver.note
    assert out.objective > first.objective


def test_plan_says_when_the_replay_still_misses(mu, monkeypatch):
    sc = toy(2.5 * mu, {"max_ttft_s": 30.0})
    monkeypatch.setattr(PLAN_MODULE, "replay_misses",
                        lambda resolved, out, requests, seed: ({a.pool: 0.9 for a in out.assignments}, ["chat miss"]))
    out = plan(sc, replay_requests=1000)
    assert f"WARNING: still after {replay_check.REPLAY_ROUNDS} re-solves" in out.solver.note


def test_cli_plan_replay(tmp_path, mu):
    path = write_yaml(tmp_path / "s.yaml", toy(1.5 * mu, {"max_ttft_s": 30.0}).model_dump(exclude_none=True))
    result = run_cli(["plan", path, "--replay", "3000"])
    assert result.exit_code == 0, result.output
    assert "replay check: every online SLO holds in a 3,000-request replay" in result.output
    bad = run_cli(["plan", path, "--replay", "-1"])
    assert bad.exit_code == 2
