"""The fleet MILP on toy problems whose optimum is worked out by hand, and across back ends and pruning.

Toys run on tests/data/tiny.csv (prices 0.8 USD/h for l4.small in r1, 0.9 in r2, 1.7 for the two-GPU l4.duo,
3.0 for a100.big), uncalibrated, with a one-hour horizon so the objective is USD per hour. The per-VM request
rate ``mu`` of a configuration comes from the public ``predict`` API (batch / end-to-end time); the optimum is
then plain arithmetic on ``mu`` and the prices.
"""
from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys

import pytest

from conftest import FLEET_SCENARIOS, INFEASIBLE_SCENARIO, ROOT, has_workloads, tiny_scenario, vm_rate
from solver.errors import InfeasibleError, NoCandidatesError
from solver.plan import plan
from solver.scenario import load_scenario
from solver.schema import Scenario
from solver.verify import verify

SMALL = "llama-3.2-1b"
L4_PRICE, L4_R2_PRICE, DUO_PRICE, A100_PRICE = 0.8, 0.9, 1.7, 3.0
IN, OUT, BATCH = 512, 128, 8


def workload(name, model=SMALL, rate=1.0, **extra):
    return {"name": name, "model": model, "input_tokens": IN, "output_tokens": OUT, "request_rate_per_s": rate,
            "batch_sizes": [BATCH], **extra}


def scenario(workloads, **extra) -> Scenario:
    return Scenario(**tiny_scenario(workloads, **extra))


def counts(p) -> dict[str, int]:
    out: dict[str, int] = {}
    for pool in p.pools:
        out[pool.instance_type] = out.get(pool.instance_type, 0) + pool.count
    return out


@pytest.fixture(scope="module")
def mu_l4() -> float:
    return vm_rate(SMALL, "L4", BATCH, IN, OUT)


def served(p) -> dict[str, float]:
    out: dict[str, float] = {}
    for a in p.assignments:
        out[a.demand] = out.get(a.demand, 0.0) + a.share
    return out


# ---- one toy per constraint family ---------------------------------------------------------------------------


def test_demand_every_workload_served_in_full(mu_l4):
    mu_opt = vm_rate("opt-1.3b", "L4", BATCH, IN, OUT)
    sc = scenario([workload("a", rate=1.5 * mu_l4), workload("b", model="opt-1.3b", rate=0.7 * mu_opt)],
                  instance_types=["l4.small"], regions=["r1"])
    p = plan(sc)
    # a needs ceil(1.5) = 2 VMs, b ceil(0.7) = 1 VM, different models cannot share a replica
    assert p.objective == pytest.approx((2 + 1) * L4_PRICE, rel=1e-9)
    assert served(p) == pytest.approx({"a": 1.0, "b": 1.0})
    assert sorted(pl.count for pl in p.pools) == [1, 2]
    assert p.status == "optimal" and verify(_resolved(sc), p) == []


def test_capacity_rounds_up_to_whole_vms(mu_l4):
    for factor, vms in ((2.5, 3), (1.999, 2), (0.01, 1), (3.0001, 4)):
        p = plan(scenario([workload("a", rate=factor * mu_l4)], instance_types=["l4.small"], regions=["r1"]))
        assert counts(p) == {"l4.small": vms}, factor
        assert p.objective == pytest.approx(vms * L4_PRICE, rel=1e-9)
        assert p.online_usd_per_hour == pytest.approx(vms * L4_PRICE, rel=1e-9)


def test_horizon_multiplies_the_hourly_cost(mu_l4):
    p = plan(scenario([workload("a", rate=2.5 * mu_l4)], instance_types=["l4.small"], regions=["r1"],
                      horizon_hours=24))
    assert p.objective == pytest.approx(3 * L4_PRICE * 24, rel=1e-9)


def test_quota_forces_a_second_instance_type(mu_l4):
    rate = 2.5 * mu_l4
    mu_duo = max(2 * mu_l4, vm_rate(SMALL, "L4", BATCH, IN, OUT, vm_gpus=2, tp=2))  # 2 replicas of tp1, or tp2
    base = dict(instance_types=["l4.small", "l4.duo"], regions=["r1"])
    free = plan(scenario([workload("a", rate=rate)], **base))
    assert counts(free) == {"l4.small": 3} and free.objective == pytest.approx(3 * L4_PRICE)

    quota = [{"instance_type": "l4.small", "max_instances": 2}]
    p = plan(scenario([workload("a", rate=rate)], quotas=quota, **base))
    # by hand: a small + b duo VMs, a <= 2, a*mu + b*mu_duo >= rate
    best = min(L4_PRICE * a + DUO_PRICE * b for a in range(3) for b in range(4) if a * mu_l4 + b * mu_duo >= rate)
    assert best == pytest.approx(L4_PRICE + DUO_PRICE)  # one of each: 0.8 + 1.7 = 2.5
    assert p.objective == pytest.approx(best, rel=1e-9)
    assert counts(p) == {"l4.small": 1, "l4.duo": 1}


def test_gpu_quota_counts_gpus(mu_l4):
    # at most 2 L4 GPUs in r1: the duo alone uses both; 2.5 mu needs a third replica from the r2 region
    sc = scenario([workload("a", rate=2.5 * mu_l4)], instance_types=["l4.small", "l4.duo"],
                  quotas=[{"gpu": "L4", "region": "r1", "max_gpus": 2}])
    p = plan(sc)
    mu_duo = 2 * mu_l4
    best = min(L4_PRICE * a + L4_R2_PRICE * c + DUO_PRICE * b
               for a, b, c in itertools.product(range(3), range(2), range(4))
               if a + 2 * b <= 2 and (a + c) * mu_l4 + b * mu_duo >= 2.5 * mu_l4)
    assert best == pytest.approx(2 * L4_PRICE + L4_R2_PRICE)
    assert p.objective == pytest.approx(best, rel=1e-9)
    assert verify(_resolved(sc), p) == []


def test_budget_makes_it_infeasible(mu_l4):
    wl = [workload("a", rate=2.5 * mu_l4)]
    kw = dict(instance_types=["l4.small"], regions=["r1"])
    ok = plan(scenario(wl, budget_usd_per_hour=3 * L4_PRICE, **kw))
    assert ok.objective == pytest.approx(3 * L4_PRICE)
    with pytest.raises(InfeasibleError, match="budget"):
        plan(scenario(wl, budget_usd_per_hour=2.9 * L4_PRICE, **kw))
    with pytest.raises(InfeasibleError, match="budget"):
        plan(scenario(wl, budget_usd=2.3, **kw))


def test_budget_and_quota_both_named(mu_l4):
    sc = scenario([workload("a", rate=2.5 * mu_l4)], instance_types=["l4.small"], budget_usd_per_hour=1.0,
                  quotas=[{"instance_type": "l4.small", "max_instances": 1}])
    with pytest.raises(InfeasibleError) as info:
        plan(sc)
    assert "budget" in str(info.value) and "quota" in str(info.value)


def test_replica_bounds_named_when_they_make_it_infeasible(mu_l4):
    # 2.5 replicas' worth of traffic capped at 2 VMs: the diagnosis names the workload and its bound
    kw = dict(instance_types=["l4.small"], regions=["r1"])
    with pytest.raises(InfeasibleError) as info:
        plan(scenario([workload("a", rate=2.5 * mu_l4, max_replicas=2), workload("b", rate=0.5 * mu_l4)], **kw))
    assert "workload 'a' (max_replicas: 2)" in str(info.value) and "'b'" not in str(info.value)
    # a quota of 2 VMs beside a floor of 3 for 'a': either alone leaves a plan, so both are named
    with pytest.raises(InfeasibleError) as info:
        plan(scenario([workload("a", rate=0.5 * mu_l4, min_replicas=3)],
                      quotas=[{"instance_type": "l4.small", "max_instances": 2}], **kw))
    assert "quota" in str(info.value) and "workload 'a' (min_replicas: 3)" in str(info.value)
    # 3 VMs of traffic under a quota of 2 VMs and a budget for 2: relaxing either alone leaves the other binding
    with pytest.raises(InfeasibleError, match="together leave no plan"):
        plan(scenario([workload("a", rate=2.5 * mu_l4)], budget_usd_per_hour=2.5 * L4_PRICE,
                      quotas=[{"instance_type": "l4.small", "max_instances": 2}], **kw))


def test_many_bounded_workloads_diagnosed_in_few_solves(mu_l4, monkeypatch):
    # 32 workloads with replica bounds, one of them too tight: it is named, none of the others, and the diagnosis
    # halves groups of workloads instead of re-solving once per bounded workload
    plan_module = sys.modules["solver.plan"]
    calls = []
    real_solve = plan_module.solve
    monkeypatch.setattr(plan_module, "solve", lambda *a, **k: calls.append(1) or real_solve(*a, **k))
    tight = {20: 2}  # workload -> max_replicas below its traffic's VMs
    wl = [workload(f"w{i}", rate=(2.5 if i in tight else 0.5) * mu_l4, max_replicas=tight.get(i, 40))
          for i in range(32)]
    with pytest.raises(InfeasibleError) as info:
        plan(scenario(wl, instance_types=["l4.small"], regions=["r1"]))
    message = str(info.value)
    assert "infeasible because of workload 'w20' (max_replicas: 2)" in message
    assert not any(f"'w{i}'" in message for i in range(32) if i not in tight)
    # all relaxed, then two groups at each of five levels (16, 8, 4, 2, 1 workloads): 11 (one per workload: 33)
    assert len(calls) == 11


def test_max_instance_types(mu_l4):
    mu_a_a100 = vm_rate(SMALL, "A100-80GB", BATCH, IN, OUT)
    mu_b = vm_rate("qwen2.5-14b", "A100-80GB", BATCH, IN, OUT)  # 29.5 GB of weights: no L4 fits it
    rate_a, rate_b = 0.5 * mu_l4, 1.5 * mu_b
    wl = [workload("small", rate=rate_a), workload("big", model="qwen2.5-14b", rate=rate_b)]
    kw = dict(instance_types=["l4.small", "a100.big"], regions=["r1"])
    free = plan(scenario(wl, **kw))
    assert free.objective == pytest.approx(1 * L4_PRICE + 2 * A100_PRICE, rel=1e-9)
    one = plan(scenario(wl, max_instance_types=1, **kw))
    by_hand = (math.ceil(rate_a / mu_a_a100) + math.ceil(rate_b / mu_b)) * A100_PRICE
    assert by_hand == 3 * A100_PRICE
    assert one.objective == pytest.approx(by_hand, rel=1e-9)
    assert set(counts(one)) == {"a100.big"}


@pytest.mark.parametrize("billing", ["per_second", "hourly"])
def test_offline_deadline_and_billing(billing):
    mu = vm_rate(SMALL, "L4", BATCH, IN, OUT, online=False)  # offline jobs run static batches
    n_requests = round(2.3 * 3600 * mu)
    vm_hours = n_requests / (3600 * mu)  # about 2.3 VM-hours of work
    assert 2.29 < vm_hours < 2.31
    wl = [{"name": "job", "model": SMALL, "mode": "offline", "input_tokens": IN, "output_tokens": OUT,
           "num_requests": n_requests, "deadline_hours": 1.5, "batch_sizes": [BATCH]}]
    p = plan(scenario(wl, instance_types=["l4.small"], regions=["r1"], billing=billing))
    (pool,) = p.pools
    if billing == "per_second":
        # pay for exactly the VM-hours used; ceil(2.3 / 1.5) = 2 VMs to finish within 1.5 h
        assert p.objective == pytest.approx(L4_PRICE * vm_hours, rel=1e-6)
        assert pool.count == 2 and pool.vm_hours == pytest.approx(vm_hours, rel=1e-6)
    else:
        # whole started hours: 2.3 h of work cannot be billed as less than 3 VM-hours, and within a 1.5 h
        # deadline it needs at least ceil(2.3 / 1.5) = 2 VMs
        assert p.objective == pytest.approx(L4_PRICE * 3, rel=1e-9)
        assert pool.count >= 2 and pool.vm_hours == pytest.approx(3.0)
    assert p.offline_usd == pytest.approx(p.objective) and p.online_usd_per_hour == 0


def test_spot_share_holds_offline_on_demand_vms_idle():
    """Under a spot share an offline on-demand VM may be held, idle, up to its deadline: its GPU-hours count in the
    share's denominator as an idle online VM's do. Worked by hand on A100 (on-demand 3.0, spot 1.2) and T4 (0.5)."""
    mu_a100 = vm_rate(SMALL, "A100-80GB", BATCH, IN, OUT)
    mu_t4 = vm_rate(SMALL, "T4", BATCH, IN, OUT, online=False)
    work = round(0.25 * 3600 * mu_t4) / (3600 * mu_t4)  # ~0.25 VM-hours of batch work on a T4
    wl = [workload("a", rate=1.5 * mu_a100, instance_types=["a100.big"]),  # two A100 VMs
          {"name": "job", "model": SMALL, "mode": "offline", "input_tokens": IN, "output_tokens": OUT,
           "num_requests": round(0.25 * 3600 * mu_t4), "deadline_hours": 1.0, "batch_sizes": [BATCH],
           "instance_types": ["t4.small"]}]
    sc = scenario(wl, instance_types=["a100.big", "t4.small"], regions=["r1"], pricing="both", max_spot_share=0.5)
    p = plan(sc)
    # spot GPU-hours <= on-demand ones: both A100s on spot (2 x 1.2) beside 2 on-demand T4 hours (two VMs held the
    # whole hour, 2 x 0.5) beats one spot and one on-demand A100 (4.2 + 0.5 x work); billed only for the work, the
    # batch job could not balance a second spot A100
    assert p.objective == pytest.approx(2 * 1.2 + 2 * 0.5, rel=1e-6)
    (job,) = [pool for pool in p.pools if pool.mode == "offline"]
    assert job.pricing == "on_demand" and job.count == 2 and job.vm_hours == pytest.approx(2.0, rel=1e-6)
    assert job.vm_hours > 7 * work
    assert "held idle" in p.solver.note and job.pool in p.solver.note
    resolved = _resolved(sc)
    assert verify(resolved, p) == []
    over = p.model_copy(update={"pools": [q.model_copy(update={"vm_hours": 2.5, "usd": 2.5 * 0.5})
                                          if q.mode == "offline" else q for q in p.pools]})
    assert any("held at most 1 h" in v for v in verify(resolved, over))


def test_offline_sub_hour_deadline_with_hourly_billing():
    wl = [{"name": "quick", "model": SMALL, "mode": "offline", "input_tokens": 32, "output_tokens": 8,
           "num_requests": 100, "deadline_hours": 0.5, "batch_sizes": [BATCH]}]
    p = plan(scenario(wl, instance_types=["l4.small"], regions=["r1"], billing="hourly"))
    # 100 short requests take seconds on one VM, billed one started hour
    assert p.objective == pytest.approx(L4_PRICE)


def test_offline_deadline_too_short_for_one_batch():
    wl = [{"name": "job", "model": SMALL, "mode": "offline", "input_tokens": IN, "output_tokens": OUT,
           "num_requests": 100, "deadline_hours": 3e-4, "batch_sizes": [BATCH]}]  # ~1 s
    with pytest.raises(NoCandidatesError, match="job"):
        plan(scenario(wl, instance_types=["l4.small"]))


def _resolved(sc: Scenario):
    from solver.scenario import resolve

    return resolve(sc)


# ---- back ends, pruning, determinism -------------------------------------------------------------------------

FLEETS = [p for p in FLEET_SCENARIOS if has_workloads(p)]


def test_bundled_scenarios_found():
    names = {p.name for p in FLEETS}
    assert {"chat_fleet.yaml", "infeasible_tight_slo.yaml", "nightly_batch.yaml"} <= names


@pytest.mark.parametrize("path", FLEETS, ids=lambda p: p.stem)
def test_backends_agree_on_bundled_scenarios(path, monkeypatch):
    """Every back end reaches the MILP's optimum; after the mix re-solves (a heuristic outside the MILP, which can
    start from different equally cheap plans) every final plan verifies, holds its mixes and costs no less."""
    import importlib

    from solver.promise import mixed_headroom

    resolved = load_scenario(path)
    if path == INFEASIBLE_SCENARIO:
        for backend in ("highs", "cbc", "ortools"):
            with pytest.raises(NoCandidatesError, match="instant-70b"):
                plan(resolved, solver=backend)
        return
    monkeypatch.setattr(importlib.import_module("solver.plan"), "MIX_ROUNDS", 0)
    linear = {b: plan(resolved, solver=b) for b in ("highs", "cbc", "ortools")}
    monkeypatch.undo()
    for b, p in linear.items():
        assert p.solver.backend == b, p.solver.note  # no silent fall-back
        assert p.status == "optimal"
        assert p.objective == pytest.approx(linear["highs"].objective, rel=1e-6), {k: v.objective for k, v in linear.items()}
    for b in linear:
        final = linear[b] if not mixed_headroom(resolved, linear[b]) else plan(resolved, solver=b)
        assert final.status == "optimal" and "WARNING" not in (final.solver.note or "")
        assert mixed_headroom(resolved, final) == {}
        assert final.objective >= linear[b].objective - 1e-9
        assert verify(resolved, final) == []


PRUNE_CASES = {
    "two-models": dict(workloads=[workload("a", rate=9.0, batch_sizes=[4, 16]),
                                  workload("b", model="opt-1.3b", rate=4.0, slo={"max_tpot_s": 0.04})]),
    "offload-long-context": dict(workloads=[{"name": "long", "model": "llama-3.1-8b", "input_tokens": 6000,
                                             "output_tokens": 500, "request_rate_per_s": 0.5,
                                             "batch_sizes": [8, 32], "slo": {"max_ttft_s": 60}}],
                                 settings={"batch_sizes": [8], "offload_step": 0.25}),
    "spot-quota-types": dict(workloads=[workload("a", rate=20.0), workload("b", rate=5.0, input_tokens=2048)],
                             pricing="both", quotas=[{"pricing": "spot", "max_gpus": 2}], max_instance_types=2),
    "shared-offline": dict(workloads=[workload("a", rate=3.0),
                                      {"name": "batch", "model": SMALL, "mode": "offline", "input_tokens": 256,
                                       "output_tokens": 64, "num_requests": 50000, "deadline_hours": 2}],
                           billing="hourly"),
}


@pytest.mark.parametrize("case", sorted(PRUNE_CASES))
def test_pruning_keeps_the_optimum(case):
    sc = scenario(**PRUNE_CASES[case])
    pruned = plan(sc, prune=True)
    full = plan(sc, prune=False)
    assert full.pruning["rows_kept"] >= pruned.pruning["rows_kept"]
    assert pruned.objective == pytest.approx(full.objective, rel=1e-6)


def test_pruning_keeps_the_optimum_on_chat_fleet():
    resolved = load_scenario(ROOT / "scenarios" / "chat_fleet.yaml")
    pruned, full = plan(resolved), plan(resolved, prune=False)
    assert pruned.pruning["rows_kept"] < full.pruning["rows_kept"]
    assert pruned.objective == pytest.approx(full.objective, rel=1e-6)


@pytest.mark.parametrize("name", ["chat_fleet.yaml", "nightly_batch.yaml"])
def test_plan_json_is_byte_identical_across_runs(name):
    cmd = [sys.executable, "-m", "solver.cli", "plan", str(ROOT / "scenarios" / name), "--format", "json",
           "--no-timings"]
    first = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=120)
    second = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=120)
    assert first.returncode == 0, first.stderr.decode()
    assert first.stdout == second.stdout
    payload = json.loads(first.stdout)
    assert payload["solver"]["wall_s"] is None


def test_spot_share_limits_spot_gpus(mu_l4):
    # l4.small in r1: on-demand 0.8, spot 0.3; 3.5 mu needs 4 L4 VMs
    base = dict(instance_types=["l4.small"], regions=["r1"], pricing="both")
    free = plan(scenario([workload("a", rate=3.5 * mu_l4)], **base))
    assert free.objective == pytest.approx(4 * 0.3)  # all spot
    p = plan(scenario([workload("a", rate=3.5 * mu_l4)], max_spot_share=0.5, **base))
    # by hand: s spot + o on-demand VMs, s + o >= 4, s <= 0.5 (s + o): cheapest is 2 + 2
    best = min(0.3 * s + L4_PRICE * o for s in range(6) for o in range(6) if s + o >= 4 and s <= 0.5 * (s + o))
    assert best == pytest.approx(2 * 0.3 + 2 * L4_PRICE)
    assert p.objective == pytest.approx(best, rel=1e-9)
    spot = sum(pool.count for pool in p.pools if pool.pricing == "spot")
    assert spot == 2 and sum(pool.count for pool in p.pools) == 4
    tampered = p.model_copy(update={"pools": [pool.model_copy(update={"count": pool.count + 1})
                                              if pool.pricing == "spot" else pool for pool in p.pools]})
    from solver.scenario import resolve
    from solver.verify import verify

    assert any(v.startswith("spot_share") for v in verify(resolve(scenario([workload("a", rate=3.5 * mu_l4)],
                                                                            max_spot_share=0.5, **base)), tampered))


def test_a_spot_share_of_zero_is_named_when_it_makes_the_fleet_infeasible(mu_l4):
    """Spot pricing only under a spot share of 0 leaves no VM to rent: the diagnosis names the spot share (0 is a
    set bound, though falsy; it read "cannot be served even without quotas, budgets, ..." before)."""
    base = dict(instance_types=["l4.small"], regions=["r1"], pricing="spot")
    assert plan(scenario([workload("a", rate=0.5 * mu_l4)], **base)).objective == pytest.approx(0.3)
    with pytest.raises(InfeasibleError) as info:
        plan(scenario([workload("a", rate=0.5 * mu_l4)], max_spot_share=0.0, **base))
    assert "infeasible because of the spot share constraints" in str(info.value)


def test_short_answers_with_a_tpot_bound_get_a_warning():
    """The model's TPOT is optimistic for answers under 128 tokens (benchmark part 7): a plan says so, naming the
    workload, unless a replay checked it."""
    short = workload("short", output_tokens=32, slo={"max_tpot_s": 0.2})
    no_bound = workload("free", output_tokens=32)
    p = plan(scenario([short, no_bound, workload("long", slo={"max_tpot_s": 0.2})], instance_types=["l4.small"],
                      regions=["r1"]))
    assert "WARNING: TPOT of answers under 128 tokens" in p.solver.note
    assert p.solver.note.split("plan --replay N: ")[1] == "short"  # the named workloads: neither free nor long
    replayed = plan(scenario([short], instance_types=["l4.small"], regions=["r1"]), replay_requests=2000)
    assert "under 128 tokens" not in replayed.solver.note and "replay" in replayed.solver.note


def test_an_online_row_of_no_capacity_is_rejected_under_its_first_bound():
    """A row whose latencies meet the bounds at idle but whose capacity search found no positive rate carries
    nothing: it is rejected (the MILP would divide the demand by 0), under the first bound it has."""
    import numpy as np
    import pandas as pd
    from solver.table import Rejection, classify
    rows = pd.DataFrame({"mode": ["online", "online", "offline"], "requests_per_s_per_vm": [0.0, 2.0, 0.0],
                         "min_offload_ratio": [0.0] * 3, "offload_ratio": [0.0] * 3, "ttft_s": [0.1] * 3,
                         "max_ttft_s": [np.nan, 0.2, 0.2], "tpot_s": [0.01] * 3, "max_tpot_s": [0.02] * 3,
                         "e2e_s": [1.0] * 3, "max_e2e_s": [np.nan] * 3, "tokens_per_s": [0.0] * 3,
                         "min_tokens_per_s": [np.nan] * 3})
    code, bound = classify(rows)
    assert list(code) == [Rejection.TPOT.value, "", ""] and bound[0] == 0.02


def test_a_bound_just_under_the_one_sequence_step_plans_cleanly(tmp_path):
    """Found by a random fleet: a 4-token answer with a TPOT bound of 20 ms sat between the L40S row's TPOT at
    idle and at any positive rate, so a capacity-0 candidate reached the MILP and its plan failed verification."""
    path = tmp_path / "s.yaml"
    path.write_text("name: idle-edge\nclouds: [aws, gcp]\npricing: both\nhorizon_hours: 720\nworkloads:\n"
                    "  - {name: on3, model: llama-3.1-8b, input_tokens: 2048, output_tokens: 4, peak_factor: 1.5,\n"
                    "     request_rate_per_s: 0.01, slo: {max_tpot_s: 0.02, max_ttft_s: 0.2, percentile: p99}}\n")
    resolved = load_scenario(str(path))
    result = plan(resolved)
    assert result.status == "optimal" and not verify(resolved, result)
    assert sum(a.share for a in result.assignments if a.workload == "on3") == pytest.approx(1.0)
