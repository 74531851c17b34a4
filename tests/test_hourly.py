"""Fleets over time (rate profiles): committed base + hourly burst, one toy per constraint family of
``solver/milp_hourly.py``, the bundled ``daily_profile`` scenario, schema errors, the verifier and a property.

Toys run on tests/data/tiny.csv (l4.small in r1 at 0.8 USD/h), uncalibrated, over a 24 h horizon; ``mu`` is the
requests/s one l4.small sustains, so a rate of k * mu needs ceil(k) VMs in that hour.
"""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SCENARIOS, examples, tiny_scenario, vm_rate, write_yaml
from solver.errors import InfeasibleError, ScenarioError
from solver.htmlreport import plan_report
from solver.plan import plan
from solver.planfile import PlanView
from solver.report import plan_payload, plan_text
from solver.scenario import load_scenario
from solver.schema import Scenario
from solver.sweep.axes import apply_point
from solver.verify import verify

SMALL, L4_PRICE, IN, OUT, BATCH = "llama-3.2-1b", 0.8, 512, 128, 8


@pytest.fixture(scope="module")
def mu() -> float:
    return vm_rate(SMALL, "L4", BATCH, IN, OUT)


def day(mu: float, needs: list[float]) -> list[float]:
    """A profile whose hour h needs needs[h] VMs' worth of load (just under, so ceil gives the integer)."""
    return [0.999 * k * mu for k in needs]


def toy(profile: list[float], **extra) -> Scenario:
    w = {"name": "a", "model": SMALL, "input_tokens": IN, "output_tokens": OUT, "rate_profile": profile,
         "batch_sizes": [BATCH]}
    return Scenario(**(tiny_scenario([w], instance_types=["l4.small"], regions=["r1"]) | {"horizon_hours": 24}
                       | extra))


def _resolved(sc: Scenario):
    from solver.scenario import resolve

    return resolve(sc)


def only_pool(p):
    assert p.hourly is not None and len(p.hourly.pools) == 1
    return p.hourly.pools[0]


# ---- one toy per family ------------------------------------------------------------------------------------


def test_hourly_capacity_buys_burst_vms_per_hour(mu):
    # (hourly capacity) without a commitment price: 3 VMs for 12 h, 1 VM for 12 h, all on demand
    p = plan(toy(day(mu, [3] * 12 + [1] * 12)))
    q = only_pool(p)
    assert q.base == 0 and q.burst == [3] * 12 + [1] * 12
    assert p.objective == pytest.approx((3 * 12 + 12) * L4_PRICE, rel=1e-9)  # 38.4, not 3 x 24 x 0.8 = 57.6
    assert p.pools[0].count == 3 and verify(_resolved(toy(day(mu, [3] * 12 + [1] * 12))), p) == []


def test_commitment_holds_the_base_and_bursts_the_peak(mu):
    # commitment at 50 % off (0.4 USD/h, 9.6 USD a day): need 3 VMs for 6 h, 1 VM for 18 h.
    # base 0: 36 VM-h x 0.8 = 28.8; base 1: 9.6 + 12 x 0.8 = 19.2; base 2: 19.2 + 6 x 0.8 = 24.0
    sc = toy(day(mu, [1] * 10 + [3] * 6 + [1] * 8), commitment_discount=0.5)
    p = plan(sc)
    q = only_pool(p)
    assert q.base == 1 and q.burst == [0] * 10 + [2] * 6 + [0] * 8
    assert q.reserved_usd_per_hour == pytest.approx(0.4)
    assert p.objective == pytest.approx(19.2, rel=1e-9)
    assert p.hourly.commitment_usd == pytest.approx(9.6) and p.hourly.burst_usd == pytest.approx(9.6)
    assert verify(_resolved(sc), p) == []


def test_commitment_price_scale_moves_the_split(mu):
    # commitments priced x2 (0.8 USD/h, the on-demand price): no VM is worth committing
    sc = toy(day(mu, [1] * 10 + [3] * 6 + [1] * 8), commitment_discount=0.5, commitment_price_scale=2.0)
    q = only_pool(plan(sc))
    assert q.base == 0 and q.burst == [1] * 10 + [3] * 6 + [1] * 8


def test_hourly_demand_rows_skip_idle_hours_and_sum_to_one(mu):
    # (hourly demand) every hour with traffic is served in full; hours with rate 0 need no VM
    sc = toy(day(mu, [0] * 6 + [2] * 12 + [0] * 6))
    p = plan(sc)
    assert only_pool(p).burst == [0] * 6 + [2] * 12 + [0] * 6
    for h in range(24):
        total = sum(s.shares[h] for s in p.hourly.shares)
        assert total == pytest.approx(1.0 if 6 <= h < 18 else 0.0, abs=1e-7)
    assert p.objective == pytest.approx(2 * 12 * L4_PRICE, rel=1e-9)


def test_peak_rows_bind_the_quota_at_the_peak_hour(mu):
    # (peak) n_p >= base + burst_h: a quota of 2 VMs cannot cover an hour needing 3
    sc = toy(day(mu, [1] * 23 + [3]), quotas=[{"instance_type": "l4.small", "max_instances": 2}])
    with pytest.raises(InfeasibleError, match="quota"):
        plan(sc)
    ok = plan(toy(day(mu, [1] * 23 + [2]), quotas=[{"instance_type": "l4.small", "max_instances": 2}]))
    assert ok.pools[0].count == 2


def test_no_profile_no_hourly_model(mu):
    w = {"name": "a", "model": SMALL, "input_tokens": IN, "output_tokens": OUT, "request_rate_per_s": mu,
         "batch_sizes": [BATCH]}
    p = plan(Scenario(**tiny_scenario([w], instance_types=["l4.small"], regions=["r1"])))
    assert p.hourly is None and "hourly" not in plan_payload(p)


# ---- bundled scenario, report, sweep axis --------------------------------------------------------------------


def peak_sized(resolved):
    """The same scenario with every profile replaced by its peak rate: today's formulation, peak every hour."""
    ws = [w.model_copy(update={"rate_profile": None, "rate_profile_csv": None}) for w in resolved.scenario.workloads]
    return dataclasses.replace(resolved, scenario=resolved.scenario.model_copy(update={"workloads": ws}))


def test_daily_profile_is_cheaper_than_sizing_every_hour_for_the_peak():
    resolved = load_scenario(SCENARIOS / "daily_profile.yaml")
    hourly, flat = plan(resolved), plan(peak_sized(resolved))
    assert flat.hourly is None and hourly.hourly is not None
    assert hourly.objective < flat.objective - 1.0  # strictly cheaper on the bundled day curve
    assert verify(resolved, hourly) == [] and hourly.hourly.commitment_usd > 0
    text = plan_text(hourly)
    assert "Committed base + burst" in text and "Fleet per hour" in text
    page = plan_report(PlanView.model_validate(plan_payload(hourly)))
    assert 'id="hourly"' in page and 'id="hourly-fleet"' in page


def test_commitment_discount_axis_scales_commitment_prices():
    resolved = load_scenario(SCENARIOS / "daily_profile.yaml")
    cheap = apply_point(resolved, {"commitment_discount": 0.5})
    assert cheap.scenario.commitment_price_scale == 0.5
    assert plan(cheap).objective <= plan(resolved).objective + 1e-6


# ---- verifier -------------------------------------------------------------------------------------------------


def test_verify_recomputes_hourly_capacity_and_cost(mu):
    sc = toy(day(mu, [1] * 10 + [3] * 6 + [1] * 8), commitment_discount=0.5)
    p = plan(sc)
    data = plan_payload(p)
    data["hourly"]["pools"][0]["burst"][12] = 1  # 2 VMs in an hour that needs 3
    assert any(v.startswith("hourly_capacity[") for v in verify(_resolved(sc), data))
    data = plan_payload(p)
    data["hourly"]["pools"][0]["base"] = 2  # costs no longer add up
    assert any(v.startswith("hourly_cost[") for v in verify(_resolved(sc), data))
    data = plan_payload(p)
    data["hourly"]["shares"][0]["shares"][3] = 0.5
    assert any(v.startswith("hourly_demand[") for v in verify(_resolved(sc), data))


# ---- schema and CSV errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile, match", [([1.0] * 23, "expected 24 hourly rates"),
                                            ([1.0] * 23 + [-1.0], "hour 23"),
                                            ([0.0] * 24, "positive peak")])
def test_profile_values_are_checked(profile, match):
    with pytest.raises(ValueError, match=match):
        toy(profile)


def test_profile_and_a_different_rate_conflict():
    with pytest.raises(ValueError, match="differs from the rate_profile's peak"):
        Scenario(**tiny_scenario([{"name": "a", "model": SMALL, "input_tokens": IN, "output_tokens": OUT,
                                   "rate_profile": [1.0] * 24, "request_rate_per_s": 2.0}]))


@pytest.mark.parametrize("rows, match", [
    ("hour,rate_per_s\n" + "".join(f"{h},1\n" for h in range(23)), "hours \\[23\\] have no rate"),
    ("hour,rate_per_s\n0,1\n0,2\n", "line 3:hour: hour 0 is repeated"),
    ("hour,rate_per_s\n0,abc\n", "line 2:rate_per_s"),
    ("h,rate\n0,1\n", "line 1: expected the header"),
    ("hour,rate_per_s\n0,1_0\n", "line 2:rate_per_s"),  # float() would read 10
    ("hour,rate_per_s\n\u0661,1\n", "line 2:hour"),  # int() would read Arabic-Indic digits
    ("hour,rate_per_s\n 0,1\n", "line 2:hour"),
    ("hour,rate_per_s\n0,1 \n", "line 2:rate_per_s"),
    ("hour,rate_per_s\n0\n", "line 2: has 1 cells, the header has 2"),  # a missing cell
    ("hour,rate_per_s\n0,1,2\n", "line 2: has 3 cells, the header has 2"),  # an extra one
    (b"hour,rate_per_s\n0,\xff\n", "cannot read rate profile CSV")])
def test_profile_csv_errors_name_file_and_line(tmp_path, rows, match):
    if isinstance(rows, bytes):  # not UTF-8
        (tmp_path / "day.csv").write_bytes(rows)
    else:
        (tmp_path / "day.csv").write_text(rows, encoding="utf-8")
    sc = tiny_scenario([{"name": "a", "model": SMALL, "input_tokens": IN, "output_tokens": OUT,
                         "rate_profile_csv": "day.csv"}])
    with pytest.raises(ScenarioError, match=f"day.csv:{match}" if "line" in match else match):
        load_scenario(write_yaml(tmp_path / "s.yaml", sc))


def test_profile_csv_is_read_relative_to_the_scenario(tmp_path):
    # a spreadsheet's byte-order mark before the header is not part of it
    (tmp_path / "day.csv").write_text("\ufeffhour,rate_per_s\n" + "".join(f"{h},{h % 3}\n" for h in range(24)),
                                      encoding="utf-8")
    sc = tiny_scenario([{"name": "a", "model": SMALL, "input_tokens": IN, "output_tokens": OUT,
                         "rate_profile_csv": "day.csv"}])
    w = load_scenario(write_yaml(tmp_path / "s.yaml", sc)).scenario.workloads[0]
    assert w.rate_profile == [h % 3 for h in range(24)] and w.request_rate_per_s == 2.0


def test_profiles_refuse_replica_floors():
    with pytest.raises(ValueError, match="does not combine"):
        toy([1.0] * 24, max_spot_share=0.5)


# ---- property -------------------------------------------------------------------------------------------------


@settings(max_examples=examples(8))
@given(needs=st.lists(st.floats(0.0, 3.0), min_size=24, max_size=24).filter(lambda v: max(v) > 0.05),
       scale=st.floats(0.1, 1.0), discount=st.sampled_from([None, 0.4]))
def test_scaling_the_profile_down_never_costs_more(mu, needs, scale, discount):
    full = plan(toy(day(mu, needs), commitment_discount=discount))
    less = plan(toy([v * scale for v in day(mu, needs)], commitment_discount=discount))
    assert less.objective <= full.objective * (1 + 1e-9) + 1e-9


def test_shipped_commitment_table_loads():
    from solver.profiles import COMMITMENT_COLUMNS, load_commitments

    table = load_commitments()
    assert list(table.columns)[:len(COMMITMENT_COLUMNS)] == list(COMMITMENT_COLUMNS)
    assert ((table["discount"] >= 0) & (table["discount"] < 1)).all()
    assert table["source"].str.startswith("https://").all() and (table["retrieved"] != "").all()


def test_simulate_replays_the_busiest_hour(mu):
    from solver.simulate_report import busiest_hour, simulate_plan

    sc = toy(day(mu, [1] * 10 + [3] * 6 + [1] * 8), commitment_discount=0.5)
    data = plan_payload(plan(sc))
    hour_plan, rates, hour = busiest_hour(data)
    assert hour == 10 and hour_plan["pools"][0]["count"] == 3 and rates["a"] == pytest.approx(0.999 * 3 * mu)
    report = simulate_plan(_resolved(sc), data, requests=500)
    assert any("hour 10 replayed" in n for n in report.notes)


def test_spot_capacity_is_never_committed(mu):
    # spot at 0.3 USD/h beats a 0.4 USD/h commitment in every hour: all burst, on spot (36 VM-h x 0.3)
    sc = toy(day(mu, [1] * 10 + [3] * 6 + [1] * 8), commitment_discount=0.5, pricing="both")
    p = plan(sc)
    q = only_pool(p)
    assert q.pricing == "spot" and q.base == 0 and q.reserved_usd_per_hour is None
    assert p.objective == pytest.approx(36 * 0.3, rel=1e-9) and verify(_resolved(sc), p) == []


def test_min_run_hours_keeps_started_vms_running(mu):
    # (min run) one VM's load in hours 3 and 9 only, no commitment: without a minimum run 2 VM-h; with
    # min_run_hours 4 two runs of 4 h (hours 3-6, 9-12) cost 8 VM-h, one run through hours 3-9 costs 7
    needs = [0] * 24
    needs[3] = needs[9] = 1
    assert sum(only_pool(plan(toy(day(mu, needs)))).burst) == 2
    sc = toy(day(mu, needs), min_run_hours=4)
    p = plan(sc)
    q = only_pool(p)
    assert q.burst == [0] * 3 + [1] * 7 + [0] * 14 and p.objective == pytest.approx(7 * L4_PRICE, rel=1e-9)
    assert verify(_resolved(sc), p) == []
    data = plan_payload(p)
    data["hourly"]["pools"][0]["burst"][5:9] = [0, 0, 0, 0]  # a 2 h run, then a 2 h run
    assert any(v.startswith("min_run[") for v in verify(_resolved(sc), data))
