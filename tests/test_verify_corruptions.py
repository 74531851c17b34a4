"""The verifier catches every kind of corrupted plan: one parametrised case per corruption kind.

A base plan on the tiny catalog uses most scenario features (shared online replicas, a bucketed workload, an
offline job of the same model, spot and on-demand pricing, a quota, both budgets, a spot share, a replica floor
and region spread). Each case corrupts the plan's JSON, or the scenario it is checked against, and names the
violation family ``verify`` must report (``family[``). The uncorrupted plan verifies clean.
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from conftest import tiny_scenario
from solver.plan import plan
from solver.scenario import resolve
from solver.schema import Scenario
from solver.verify import verify

SMALL = "llama-3.2-1b"
Doc = dict[str, Any]


def base_scenario(**change: Any) -> dict:
    # chat's 9 requests/s need both online VMs, so every online pool serves chat and mix shares one with it (the
    # mixed-variant and shared-VM cases need that, and at 3/s which of two tied optima the solver returned decided it)
    workloads = [
        {"name": "chat", "model": SMALL, "input_tokens": 512, "output_tokens": 128, "request_rate_per_s": 9.0,
         "batch_sizes": [8], "min_replicas": 2, "spread": ["r1", "r2"]},
        {"name": "mix", "model": SMALL, "request_rate_per_s": 1.0, "batch_sizes": [8],
         "buckets": [{"input_tokens": 256, "output_tokens": 64, "fraction": 0.5},
                     {"input_tokens": 1024, "output_tokens": 256, "fraction": 0.5}]},
        {"name": "job", "model": SMALL, "mode": "offline", "input_tokens": 512, "output_tokens": 128,
         "num_requests": 20000, "deadline_hours": 0.5, "batch_sizes": [8]},
    ]
    sc = tiny_scenario(workloads, pricing="both", instance_types=["l4.small", "t4.small", "a100.big"],
                       quotas=[{"instance_type": "a100.big", "max_instances": 3}], budget_usd_per_hour=50,
                       budget_usd=500, max_spot_share=0.6)
    for key, value in change.items():
        sc[key] = value
    return sc


BASE = resolve(Scenario(**base_scenario()))


@pytest.fixture(scope="module")
def base() -> Doc:
    sc = BASE.scenario
    p = plan(sc)
    doc = p.model_dump(mode="json")
    assert verify(BASE, doc) == []
    assert any(q["pricing"] == "spot" for q in doc["pools"]) and any(q["mode"] == "offline" for q in doc["pools"])
    workloads_by_pool: dict[str, set[str]] = {}
    for a in doc["assignments"]:
        workloads_by_pool.setdefault(a["pool"], set()).add(a["workload"])
    assert any(len(names) > 1 for names in workloads_by_pool.values())  # a pool shared by two workloads
    return doc


def online(doc: Doc) -> Doc:
    return next(p for p in doc["pools"] if p["mode"] == "online")


def offline(doc: Doc) -> Doc:
    return next(p for p in doc["pools"] if p["mode"] == "offline")


def assigned(doc: Doc, pool: Doc) -> list[Doc]:
    return [a for a in doc["assignments"] if a["pool"] == pool["pool"]]


def set_pool(doc: Doc, pool: Doc, **change: Any) -> None:
    """Change a pool and its assignments alike (so only the rule under test breaks)."""
    for a in assigned(doc, pool):
        a.update({k: v for k, v in change.items() if k in a})
    pool.update(change)


def recost(doc: Doc) -> None:
    """Recompute every reported money field from counts and hours, as an honest (wrong) plan would."""
    for p in doc["pools"]:
        p["pool_usd_per_hour"] = p["unit_usd_per_hour"] * p["count"]
        p["usd"] = p["pool_usd_per_hour"] * doc["horizon_hours"] if p["mode"] == "online" else \
            p["unit_usd_per_hour"] * (p["vm_hours"] or 0.0)
    doc["objective"] = sum(p["usd"] for p in doc["pools"])
    doc["online_usd_per_hour"] = sum(p["pool_usd_per_hour"] for p in doc["pools"] if p["mode"] == "online")
    doc["offline_usd"] = sum(p["usd"] for p in doc["pools"] if p["mode"] == "offline")


def plan_edit(fn: Callable[[Doc], None], cost: bool = False) -> Callable[[Doc], dict | None]:
    def apply(doc: Doc) -> None:
        fn(doc)
        if cost:
            recost(doc)
    return apply


def count_by(doc: Doc, pool: Doc, delta: int) -> None:
    set_pool(doc, pool, count=pool["count"] + delta)


def wl(name: str, **change: Any) -> dict:
    return {"workloads": [dict(w, **change) if w["name"] == name else w for w in base_scenario()["workloads"]]}


# (id, plan corruption or None, scenario change or None, expected violation family)
CASES: list[tuple[str, Callable[[Doc], None] | None, dict | None, str]] = [
    ("unknown-workload", lambda d: d["assignments"][0].update(workload="ghost"), None, "unknown workload"),
    ("unknown-demand", lambda d: d["assignments"][0].update(demand="chat#7"), None, "unknown workload"),
    ("share-above-one", lambda d: d["assignments"][0].update(share=1.5), None, "share["),
    ("share-negative", lambda d: d["assignments"][0].update(share=-0.2), None, "share["),
    ("share-halved", lambda d: d["assignments"][0].update(share=d["assignments"][0]["share"] / 2), None, "demand["),
    ("assignment-dropped", lambda d: d["assignments"].pop(0), None, "demand["),
    ("assignment-duplicated", lambda d: d["assignments"].append(copy.deepcopy(d["assignments"][0])), None,
     "demand["),
    ("model-renamed", lambda d: d["assignments"][0].update(model="opt-1.3b"), None, "model"),
    ("pool-missing", lambda d: d["assignments"][0].update(pool="nowhere"), None, "pool missing"),
    ("instance-unknown", lambda d: set_pool(d, online(d), instance_type="x9.huge"), None, "not an instance"),
    ("gpu-changed", lambda d: set_pool(d, online(d), gpu="H100"), None, "not an instance"),
    ("unit-price-changed", plan_edit(lambda d: online(d).update(unit_usd_per_hour=0.01), cost=True), None,
     "price["),
    ("count-zero", plan_edit(lambda d: set_pool(d, online(d), count=0), cost=True), None, "pool["),
    ("count-reduced", None, wl("chat", request_rate_per_s=30.0), "capacity["),
    ("idle-pool-added", plan_edit(lambda d: d["pools"].append(dict(copy.deepcopy(online(d)), pool="idle|pool")),
                                  cost=True), None, "pool[idle"),
    ("pool-listed-twice", plan_edit(lambda d: d["pools"].append(copy.deepcopy(online(d))), cost=True), None,
     "listed twice"),
    ("pool-usd-per-hour", lambda d: online(d).update(pool_usd_per_hour=online(d)["pool_usd_per_hour"] + 1), None,
     "cost["),
    ("pool-usd", lambda d: online(d).update(usd=online(d)["usd"] + 1), None, "cost["),
    ("objective", lambda d: d.update(objective=d["objective"] * 0.9), None, "total[objective]"),
    ("online-total", lambda d: d.update(online_usd_per_hour=d["online_usd_per_hour"] + 1), None,
     "total[online_usd_per_hour]"),
    ("offline-total", lambda d: d.update(offline_usd=d["offline_usd"] + 1), None, "total[offline_usd]"),
    ("horizon", lambda d: d.update(horizon_hours=24.0), None, "horizon"),
    ("status", lambda d: d.update(status="infeasible"), None, "status"),
    ("gap-negative", lambda d: d.update(gap=-0.5), None, "total[gap]"),
    ("share-usd", lambda d: d["assignments"][0].update(share_usd_per_hour=1e3), None, "cost["),
    ("online-vm-hours", lambda d: online(d).update(vm_hours=3.0), None, "billing["),
    ("offline-no-hours", plan_edit(lambda d: offline(d).update(vm_hours=None), cost=True), None, "billing["),
    ("offline-hours-cut", plan_edit(lambda d: offline(d).update(vm_hours=offline(d)["vm_hours"] / 3), cost=True),
     None, "capacity["),
    # idle offline VMs count against no limit without a spot share; with one they may be held to the deadline
    ("offline-idle-vms", plan_edit(lambda d: count_by(d, offline(d), 5), cost=True), {"max_spot_share": None},
     "count["),
    ("offline-held-past-deadline", plan_edit(lambda d: offline(d).update(vm_hours=offline(d)["count"] * 0.5 * 3),
                                             cost=True), None, "held at most"),
    ("offline-too-few", None, wl("job", deadline_hours=0.01), "deadline["),
    ("offline-below-minimum", plan_edit(lambda d: (count_by(d, offline(d), 200)), cost=True), None, "billing["),
    ("hourly-fraction", None, {"billing": "hourly"}, "billing["),
    ("mode-flipped", lambda d: online(d).update(mode="offline"), None, "mode"),
    ("region-not-allowed", None, {"regions": ["r2"]}, "allowed["),
    ("cloud-not-allowed", None, {"clouds": ["gcp"]}, "allowed["),
    ("type-not-allowed", None, {"instance_types": ["a100.big"]}, "allowed["),
    ("workload-type-not-allowed", None, wl("chat", instance_types=["a100.big"]), "allowed[chat"),
    ("workload-pricing", None, wl("chat", pricing="on_demand"), "allowed[chat"),
    ("scenario-pricing", None, {"pricing": "on_demand"}, "allowed["),
    ("batch-not-allowed", lambda d: set_pool(d, online(d), batch_size=4), None, "allowed["),
    ("tensor-parallel", lambda d: set_pool(d, online(d), tensor_parallel=3), None, "allowed["),
    ("offload-off-grid", lambda d: set_pool(d, online(d), offload_ratio=0.37), None, "allowed["),
    ("offload-disallowed", lambda d: set_pool(d, online(d), offload_ratio=0.5),
     {"settings": {"allow_offload": False}}, "allowed["),
    ("memory", lambda d: set_pool(d, online(d), batch_size=60000), {"settings": {"batch_sizes": [8, 60000]}},
     "memory["),
    ("slo-tightened", None, wl("chat", slo={"max_tpot_s": 1e-5}), "slo[chat"),
    ("deadline-tightened", None, wl("job", deadline_hours=3e-4), "[job"),  # slo[job or deadline[job|...
    ("latency-reported", lambda d: d["assignments"][0].update(tpot_s=d["assignments"][0]["tpot_s"] / 3), None,
     "prediction["),
    ("rate-reported", lambda d: d["assignments"][0].update(requests_per_s_per_vm=1e6), None, "prediction["),
    ("lengths-reported", lambda d: d["assignments"][0].update(input_tokens=7), None, "request lengths"),
    ("assignment-count", lambda d: d["assignments"][0].update(count=99), None, "assignment["),
    ("quota", None, {"quotas": [{"gpu": "L4", "max_gpus": 0}, {"gpu": "T4", "max_gpus": 0},
                                {"gpu": "A100-80GB", "max_gpus": 0}]}, "quota["),
    ("budget-per-hour", None, {"budget_usd_per_hour": 0.01}, "budget[usd_per_hour]"),
    ("budget-usd", None, {"budget_usd": 0.01}, "budget[usd]"),
    ("spot-share", None, {"max_spot_share": 0.0}, "spot_share"),
    ("types", None, {"max_instance_types": 1, "instance_types": None}, "types"),
    ("replica-floor", None, wl("chat", min_replicas=500), "replicas[chat"),
    ("replica-cap", None, wl("chat", min_replicas=None, max_replicas=1), "replicas[chat"),
    ("spread", None, wl("chat", spread=["r1", "r2", "r3"]), "spread[chat@r3"),
    ("dtype-mixed", None, wl("mix", dtype="int4"), "variants"),
    ("unshared-replicas", None, {"share_replicas": False}, "shares its VMs"),
    ("not-a-plan", lambda d: d.pop("pools"), None, "schema["),
]


@pytest.mark.parametrize("corrupt,change,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_verify_catches(base, corrupt, change, expect):
    doc = copy.deepcopy(base)
    if corrupt is not None:
        corrupt(doc)
    # the changed scenario replaces the resolved one's as is (a cloud the catalog lacks is then allowed too)
    resolved = dataclasses.replace(BASE, scenario=Scenario(**(base_scenario() | (change or {}))))
    violations = verify(resolved, doc)
    assert any(expect in v for v in violations), violations


def test_enough_corruption_kinds():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)
