"""Property tests on random small fleets: the MILP against an independent brute force, and invariances.

Fleets: 1-3 online workloads (small models, random lengths, rates, SLOs, batch sets) over 2-3 instance rows of
a random tiny catalog (random prices, optional spot), with random quotas, an optional hourly budget and an
optional limit on distinct instance types. Replicas are not shared between workloads, so each workload's
capacity is plain arithmetic: counts n_o of VMs on offerings o serve it iff sum_o n_o * mu_o >= rate, where
mu_o is the best requests/s per VM of any feasible configuration of that workload on o (taken from the unpruned
candidate table). Using the best configuration per offering loses nothing: every VM of another configuration on
the same offering has the same price and counts the same against every quota and type limit.
"""
from __future__ import annotations

import csv
import itertools
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from conftest import examples
from hypothesis import strategies as st

from solver.candidates import build_candidates
from solver.errors import InfeasibleError, NoCandidatesError
from solver.plan import plan
from solver.scenario import resolve
from solver.schema import Scenario
from solver.verify import verify

TEMPLATES = [  # instance type, GPU, GPUs, host GiB
    ("t4.a", "T4", 1, 16), ("l4.a", "L4", 1, 32), ("l4.x2", "L4", 2, 64), ("a10g.a", "A10G", 1, 32),
    ("a100.a", "A100-80GB", 1, 120),
]
MODELS = ["llama-3.2-1b", "opt-1.3b", "llama-3.2-3b"]
HEADER = ["InstanceType", "AcceleratorName", "AcceleratorCount", "vCPUs", "MemoryGiB", "Price", "SpotPrice", "Region",
          "source"]
SETTINGS = settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def fleets(draw):
    picks = draw(st.lists(st.tuples(st.sampled_from(range(len(TEMPLATES))), st.sampled_from(["r1", "r2"])),
                          min_size=2, max_size=3, unique=True))
    rows = []
    for t, region in picks:
        name, gpu, count, mem = TEMPLATES[t]
        price = draw(st.integers(20, 500)) / 100
        spot = draw(st.one_of(st.none(), st.integers(10, 90)))
        rows.append(dict(InstanceType=name, AcceleratorName=gpu, AcceleratorCount=count, vCPUs=8, MemoryGiB=mem,
                         Price=price, SpotPrice="" if spot is None else round(price * spot / 100, 4),
                         Region=region, source="property test"))
    workloads = []
    for i in range(draw(st.integers(1, 3))):
        slo = {}
        if draw(st.booleans()):
            slo["max_tpot_s"] = draw(st.sampled_from([0.01, 0.03, 0.1]))
        if draw(st.booleans()):
            slo["max_ttft_s"] = draw(st.sampled_from([0.2, 1.0, 5.0]))
        workloads.append(dict(
            name=f"w{i}", model=draw(st.sampled_from(MODELS)),
            input_tokens=draw(st.sampled_from([64, 512, 1024])), output_tokens=draw(st.sampled_from([16, 128, 512])),
            batch_sizes=sorted(draw(st.sets(st.sampled_from([1, 4, 16, 64]), min_size=1, max_size=2))),
            slo=slo, rate_factor=draw(st.integers(5, 250)) / 100))
    quotas = []
    for _ in range(draw(st.integers(0, 2))):
        row = draw(st.sampled_from(rows))
        key = draw(st.sampled_from(["instance_type", "region", "gpu", "pricing"]))
        value = {"instance_type": row["InstanceType"], "region": row["Region"], "gpu": row["AcceleratorName"],
                 "pricing": draw(st.sampled_from(["on_demand", "spot"]))}[key]
        limit_kind = draw(st.sampled_from(["max_instances", "max_gpus"]))
        quotas.append({key: value, limit_kind: draw(st.integers(0, 4))})
    return dict(rows=rows, workloads=workloads, quotas=quotas,
                pricing=draw(st.sampled_from(["on_demand", "both"])),
                budget=draw(st.one_of(st.none(), st.integers(50, 1500).map(lambda c: c / 100))),
                max_types=draw(st.one_of(st.none(), st.integers(1, 2))),
                allow_offload=draw(st.booleans()))


def write_catalog(folder: Path, rows: list[dict], k: float = 1.0) -> Path:
    path = folder / f"cat_{str(k).replace('.', '_')}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, HEADER)
        writer.writeheader()
        for r in rows:
            writer.writerow(r | {"Price": round(r["Price"] * k, 6),
                                 "SpotPrice": "" if r["SpotPrice"] == "" else round(r["SpotPrice"] * k, 6)})
    return path


def make_scenario(f: dict, catalog: Path, rates: dict[str, float] | None, *, k: float = 1.0) -> Scenario:
    workloads = [{key: v for key, v in w.items() if key != "rate_factor"}
                 | {"request_rate_per_s": (rates or {}).get(w["name"], 1.0)} for w in f["workloads"]]
    return Scenario(name="prop", catalogs=[str(catalog)], calibration="none", horizon_hours=1, share_replicas=False,
                    pricing=f["pricing"], quotas=f["quotas"], max_instance_types=f["max_types"],
                    budget_usd_per_hour=None if f["budget"] is None else f["budget"] * k, workloads=workloads,
                    settings={"offload_step": 0.5, "allow_offload": f["allow_offload"]})


def best_rates(sc: Scenario):
    """Per workload, per offering: (offering attributes, best requests/s per VM) from the unpruned table."""
    r = resolve(sc)
    cands = build_candidates(sc, r.instances, r.models, r.calibration, prune=False)
    out: dict[str, dict[str, tuple[dict, float]]] = {w.name: {} for w in sc.workloads}
    for row in cands.table.itertuples():
        attrs = dict(instance_type=row.instance_type, region=row.region, cloud=row.cloud, gpu=row.gpu,
                     pricing=row.pricing, gpu_count=int(row.gpu_count), price=float(row.unit_usd_per_hour))
        best = out[row.workload].get(row.offer)
        if best is None or row.requests_per_s_per_vm > best[1]:
            out[row.workload][row.offer] = (attrs, float(row.requests_per_s_per_vm))
    return out


def minimal_vectors(options: list[tuple[str, dict, float]], rate: float) -> list[dict[str, int]]:
    """Every componentwise-minimal VM count vector over the offerings that covers ``rate``."""
    need = rate * (1 - 1e-9)
    bounds = [math.ceil(rate / mu - 1e-9) for _, _, mu in options]
    found = []
    for counts in itertools.product(*(range(b + 1) for b in bounds)):
        if sum(n * mu for n, (_, _, mu) in zip(counts, options)) < need:
            continue
        minimal = all(sum((n - (j == i)) * mu for j, (n, (_, _, mu)) in enumerate(zip(counts, options))) < need
                      for i, c in enumerate(counts) if c > 0)
        if minimal:
            found.append({o: n for n, (o, _, _) in zip(counts, options) if n})
    return found


def brute_force(sc: Scenario, table) -> float | None:
    """Cheapest feasible fleet by enumeration with plain arithmetic (None when there is none)."""
    attrs: dict[str, dict] = {}
    per_workload = []
    for w in sc.workloads:
        options = [(o, a, mu) for o, (a, mu) in sorted(table[w.name].items())]
        if not options:
            return None
        attrs.update({o: a for o, a, _ in options})
        per_workload.append(minimal_vectors(options, w.request_rate_per_s))
    best = None
    for combo in itertools.product(*per_workload):
        total: dict[str, int] = {}
        for vec in combo:
            for o, n in vec.items():
                total[o] = total.get(o, 0) + n
        cost = sum(attrs[o]["price"] * n for o, n in total.items())
        if best is not None and cost >= best:
            continue
        ok = True
        for q in sc.quotas:
            match = [o for o in total if all(getattr(q, key) in (None, attrs[o][key])
                                             for key in ("instance_type", "region", "cloud", "gpu", "pricing"))]
            used = sum(total[o] * (attrs[o]["gpu_count"] if q.max_gpus is not None else 1) for o in match)
            ok &= used <= (q.max_gpus if q.max_gpus is not None else q.max_instances)
        if sc.budget_usd_per_hour is not None:
            ok &= cost <= sc.budget_usd_per_hour * (1 + 1e-9)
        if sc.max_instance_types is not None:
            ok &= len({attrs[o]["instance_type"] for o in total}) <= sc.max_instance_types
        if ok:
            best = cost
    return best


def solve_or_none(sc: Scenario, **kw):
    try:
        return plan(sc, **kw)
    except (InfeasibleError, NoCandidatesError):
        return None


def with_rates(f: dict, folder: Path):
    """The fleet's scenario with each workload's rate set to factor x its best single-VM rate."""
    catalog = write_catalog(folder, f["rows"])
    probe = make_scenario(f, catalog, None)
    table = best_rates(probe)
    rates = {}
    for w in f["workloads"]:
        mus = [mu for _, mu in table[w["name"]].values()]
        rates[w["name"]] = w["rate_factor"] * max(mus) if mus else 1.0
    return make_scenario(f, catalog, rates), rates, table


@SETTINGS
@given(fleets())
def test_milp_matches_brute_force_and_backends_agree(f):
    with tempfile.TemporaryDirectory() as tmp:
        sc, _rates, table = with_rates(f, Path(tmp))
        expected = brute_force(sc, table)
        results = {b: solve_or_none(sc, solver=b) for b in ("highs", "cbc", "ortools")}
        if expected is None:
            assert all(p is None for p in results.values()), {b: p and p.objective for b, p in results.items()}
            return
        resolved = resolve(sc)
        for backend, p in results.items():
            assert p is not None, f"{backend} found no plan; brute force costs {expected}"
            assert p.objective == pytest.approx(expected, rel=1e-6, abs=1e-9), backend
            assert verify(resolved, p) == []
            assert verify(resolved, p.model_dump()) == []


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.sampled_from([1.0, 1.3, 2.0, 4.0]))
def test_more_demand_never_costs_less(f, growth):
    with tempfile.TemporaryDirectory() as tmp:
        sc, rates, _ = with_rates(f, Path(tmp))
        base = solve_or_none(sc)
        bigger = make_scenario(f, Path(sc.catalogs[0]), {k: v * growth for k, v in rates.items()})
        more = solve_or_none(bigger)
        if base is None:
            assert more is None  # growing demand cannot make an infeasible fleet feasible
        elif more is not None:
            assert more.objective >= base.objective * (1 - 1e-9)


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(), st.sampled_from([0.5, 2.0, 3.0, 10.0]))
def test_scaling_prices_scales_the_objective(f, k):
    with tempfile.TemporaryDirectory() as tmp:
        sc, rates, _ = with_rates(f, Path(tmp))
        base = solve_or_none(sc)
        scaled_catalog = write_catalog(Path(tmp), f["rows"], k)
        scaled = solve_or_none(make_scenario(f, scaled_catalog, rates, k=k))
        assert (base is None) == (scaled is None)
        if base is not None:
            assert scaled.objective == pytest.approx(k * base.objective, rel=1e-6)
