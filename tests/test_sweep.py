"""Sweeps: axis transforms, the tidy results table, monotone price shocks, infeasible points, CLI exit codes,
and local process pool / Dask distributed runs giving the same table as an in-process run.

Solved sweeps are tiny (2-6 points on scenarios/sweep_base.yaml, each a sub-second MILP) and shared per module.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from conftest import SCENARIOS, run_cli, write_yaml
from solver.errors import ScenarioError
from solver.scenario import load_scenario
from solver.sweep import (AXIS_PREFIX, TABLE_FIELDS, apply_point, exit_code, load_sweep, make_sweep, read_results,
                          run_sweep, summary_table, write_results)

BASE = SCENARIOS / "sweep_base.yaml"
BUNDLED = SCENARIOS / "sweep_price_shock.yaml"
TINY_AXES = {"price.gpu.H100": [0.5, 2.0], "slo_scale": [1.0, 2.0]}


@pytest.fixture(scope="module")
def base():
    return load_scenario(BASE)


@pytest.fixture(scope="module")
def tiny(base):
    """A 4-point sweep solved in process: (LoadedSweep, results table)."""
    loaded = make_sweep(base, TINY_AXES, name="tiny")
    return loaded, run_sweep(loaded, workers=1, progress=False)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["wall_s"]).reset_index(drop=True)


# ---- loading and validation --------------------------------------------------------------------------------


def test_bundled_sweep_is_small_and_valid():
    loaded = load_sweep(BUNDLED)
    assert "axes" in BUNDLED.read_text(encoding="utf-8")
    assert 1 < loaded.sweep.n_points <= 24
    points = list(loaded.points())
    assert [i for i, _ in points] == list(range(loaded.sweep.n_points))
    assert len({tuple(map(repr, v.values())) for _, v in points}) == len(points)  # Cartesian product, no repeats


@pytest.mark.parametrize("axes, message", [
    ({"price.gpu.H1OO": [1.0]}, "no instance"),
    ({"price.colour.red": [1.0]}, "price.<gpu|cloud|family|type>"),
    ({"slo_scael": [1.0]}, "unknown axis"),
    ({"slo_scale": [0, 1]}, "positive factor"),
    ({"slo_scale": []}, "at least 1"),
    ({"reserved_discount": [1.0]}, "0 <= d < 1"),
    ({"pricing": ["reserved"]}, "on_demand, spot, both"),
    ({"regions": [["us-east-9"]]}, "unknown region"),
    ({"regions": ["us-east-1"]}, "list of region names"),
    ({"demand_growth": [1, 1]}, "repeated value"),
])
def test_bad_axes_are_input_errors_with_line(tmp_path, axes, message):
    path = write_yaml(tmp_path / "sweep.yaml", {"base": str(BASE), "axes": axes})
    with pytest.raises(ScenarioError, match="sweep.yaml") as err:
        load_sweep(path)
    assert message in str(err.value)
    assert err.value.exit_code == 2


def test_sweep_file_fields_are_strict(tmp_path):
    path = write_yaml(tmp_path / "sweep.yaml", {"base": str(BASE), "axes": {"slo_scale": [1]}, "axis": {}})
    with pytest.raises(ScenarioError, match="unknown field"):
        load_sweep(path)
    with pytest.raises(ScenarioError, match="not found"):
        load_sweep(write_yaml(tmp_path / "s2.yaml", {"base": "missing.yaml", "axes": {"slo_scale": [1]}}))


# ---- transforms --------------------------------------------------------------------------------------------


def prices(resolved, match):
    return {(i.instance_type, i.region): (i.usd_per_hour, i.spot_usd_per_hour)
            for i in resolved.instances if match(i)}


def test_price_axes_touch_only_matching_instances(base):
    changed = apply_point(base, {"price.family.g6e": 2.0, "price.cloud.gcp": 0.5})
    before, after = {(i.cloud, i.instance_type, i.region): i for i in base.instances}, \
        {(i.cloud, i.instance_type, i.region): i for i in changed.instances}
    assert before.keys() == after.keys()
    for key, old in before.items():
        new = after[key]
        factor = (2.0 if old.instance_type.startswith("g6e.") else 1.0) * (0.5 if old.cloud == "gcp" else 1.0)
        assert new.usd_per_hour == pytest.approx(old.usd_per_hour * factor)
        if old.spot_usd_per_hour is not None:
            assert new.spot_usd_per_hour == pytest.approx(old.spot_usd_per_hour * factor)
    assert changed.scenario == base.scenario  # prices live in the catalog, not the scenario


def test_reserved_discount_and_gpu_axis(base):
    changed = apply_point(base, {"reserved_discount": 0.3, "price.gpu.H100": 1.5})
    for old, new in zip(base.instances, changed.instances):
        f = 1.5 if old.gpu == "H100" else 1.0
        assert new.usd_per_hour == pytest.approx(old.usd_per_hour * 0.7 * f)
        assert new.spot_usd_per_hour == (None if old.spot_usd_per_hour is None
                                         else pytest.approx(old.spot_usd_per_hour * f))


def test_scenario_axes(base):
    changed = apply_point(base, {"slo_scale": 2.0, "demand_growth": 1.5, "pricing": "both",
                                 "regions": ["us-east-1", "us-west-2"]})
    sc, old = changed.scenario, base.scenario
    assert sc.pricing == "both" and sc.regions == ["us-east-1", "us-west-2"]
    for w, w0 in zip(sc.workloads, old.workloads):
        for key in ("max_ttft_s", "max_tpot_s", "max_e2e_s"):
            v0 = getattr(w0.slo, key)
            assert getattr(w.slo, key) == (None if v0 is None else pytest.approx(2 * v0))
        if w0.request_rate_per_s is not None:
            assert w.request_rate_per_s == pytest.approx(1.5 * w0.request_rate_per_s)
        if w0.num_requests is not None:
            assert w.num_requests == round(1.5 * w0.num_requests)
        assert w.deadline_hours == w0.deadline_hours  # a deadline is not a latency bound
    tps = base.scenario.workloads[0].model_copy(update={"slo": base.scenario.workloads[0].slo.model_copy(
        update={"min_tokens_per_s": 100.0})})
    b2 = apply_point(base.__class__(base.scenario.model_copy(update={"workloads": [tps]}), base.models,
                                    base.instances, base.calibration, base.path), {"slo_scale": 2.0})
    assert b2.scenario.workloads[0].slo.min_tokens_per_s == pytest.approx(50.0)  # looser SLO: lower min TPS


# ---- results -----------------------------------------------------------------------------------------------


def test_tidy_table_rows_and_columns(tiny):
    loaded, df = tiny
    axis_cols = [AXIS_PREFIX + a for a in TINY_AXES]
    for col in ["point", *axis_cols, "status", "objective", "online_usd_per_hour", "offline_usd", *TABLE_FIELDS]:
        assert col in df.columns, col
    assert sorted(df["point"].unique()) == [0, 1, 2, 3]
    assert set(df["status"]) == {"optimal"}
    # one row per point x assignment: every workload of the base is served at every point
    workloads = {w.name for w in loaded.base.scenario.workloads}
    for _, g in df.groupby("point"):
        assert set(g["workload"]) == workloads
        assert g["share"].groupby(g["demand"]).sum().round(6).eq(1.0).all()
        assert g["objective"].nunique() == 1
        pools = g.drop_duplicates("pool")
        assert pools["pool_usd"].sum() == pytest.approx(g["objective"].iloc[0], rel=1e-6)
    # axis values as columns, Cartesian product in order (last axis fastest)
    s = summary_table(df)
    assert s[axis_cols].values.tolist() == [[0.5, 1.0], [0.5, 2.0], [2.0, 1.0], [2.0, 2.0]]
    assert exit_code(df) == 0


def test_higher_prices_never_cheaper(tiny):
    _, df = tiny
    s = summary_table(df)
    for _, g in s.groupby(AXIS_PREFIX + "slo_scale"):
        costs = g.sort_values(AXIS_PREFIX + "price.gpu.H100")["objective"].to_numpy()
        assert all(b >= a - 1e-6 for a, b in zip(costs, costs[1:])), costs
    for _, g in s.groupby(AXIS_PREFIX + "price.gpu.H100"):  # a looser SLO never costs more
        costs = g.sort_values(AXIS_PREFIX + "slo_scale")["objective"].to_numpy()
        assert all(b <= a + 1e-6 for a, b in zip(costs, costs[1:])), costs


def test_uniform_price_multiplier_scales_cost_exactly(base):
    df = run_sweep(make_sweep(base, {"price_multiplier": [1.0, 1.7], "reserved_discount": [0.0]}), workers=1,
                   progress=False)
    s = summary_table(df)
    assert s["objective"].iloc[1] == pytest.approx(1.7 * s["objective"].iloc[0], rel=1e-6)


def test_infeasible_points_are_recorded_not_raised(base, tmp_path):
    loaded = make_sweep(base, {"slo_scale": [0.001, 1.0]})
    df = run_sweep(loaded, workers=1, progress=False)
    s = summary_table(df)
    assert s["status"].tolist() == ["infeasible", "optimal"]
    bad = df[df["point"] == 0]
    assert len(bad) == 1 and math.isnan(bad["objective"].iloc[0]) and pd.isna(bad["instance_type"].iloc[0])
    assert "no instance meets" in bad["message"].iloc[0]
    assert exit_code(df) == 1
    for suffix in ("parquet", "csv"):
        out = tmp_path / f"r.{suffix}"
        write_results(df, out)
        back = read_results(out)
        assert len(back) == len(df) and list(back.columns) == list(df.columns)
        assert back["status"].tolist() == df["status"].tolist()
        assert back["objective"].fillna(-1).tolist() == pytest.approx(df["objective"].fillna(-1).tolist())


# ---- CLI ---------------------------------------------------------------------------------------------------


def test_cli_sweep_exit_codes(tmp_path):
    ok = write_yaml(tmp_path / "ok.yaml", {"base": str(BASE), "axes": {"price.gpu.H100": [1.0, 2.0]}})
    out = tmp_path / "res.csv"
    r = run_cli(["sweep", ok, "--out", out, "--workers", "1", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "2 of 2 points have a plan" in r.stdout and out.is_file()
    bad = write_yaml(tmp_path / "inf.yaml", {"base": str(BASE), "axes": {"slo_scale": [0.001, 1.0]}})
    out = tmp_path / "inf.parquet"
    r = run_cli(["sweep", bad, "--out", out, "--workers", "1", "--quiet"])
    assert r.exit_code == 1 and out.is_file()  # results written even though a point is infeasible
    assert "1 of 2 points have no plan" in r.stderr
    r = run_cli(["sweep", ok, "--out", tmp_path / "res.xlsx", "--quiet"])
    assert r.exit_code == 2 and ".parquet or .csv" in r.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(f"base: {BASE}\naxes:\n  slo_scale: [1]\n  demand_grwoth: [2]\n", encoding="utf-8")
    r = run_cli(["sweep", typo, "--out", tmp_path / "x.csv", "--quiet"])
    assert r.exit_code == 2 and "typo.yaml:line 4:axes.demand_grwoth: unknown axis (did you mean: demand_growth?)" \
        in r.stderr
    assert not (tmp_path / "x.csv").exists()


# ---- executors ---------------------------------------------------------------------------------------------


def test_process_pool_matches_in_process(tiny):
    loaded, df = tiny
    pooled = run_sweep(loaded, workers=2, progress=False)
    pd.testing.assert_frame_equal(comparable(pooled), comparable(df))


def test_dask_distributed_matches_local(tiny):
    distributed = pytest.importorskip("dask.distributed",
                                      reason="Dask extra not installed: pip install -e .[dask]")
    loaded, df = tiny
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) \
            as cluster:
        remote = run_sweep(loaded, scheduler=cluster.scheduler_address, progress=False)
    pd.testing.assert_frame_equal(comparable(remote), comparable(df))


def test_spot_share_axis_bounds_spot_gpu_hours(base):
    from solver.plan import plan

    changed = apply_point(base, {"spot_share": 0.25})
    assert changed.scenario.max_spot_share == 0.25 and changed.scenario.pricing == "both"
    pinned = apply_point(base, {"spot_share": 0.25, "pricing": "spot"})
    assert pinned.scenario.pricing == "spot"
    result = plan(changed)
    horizon = changed.scenario.horizon_hours

    def gpu_hours(p):  # an online VM runs the horizon, an offline one its billed hours
        return p.gpu_count * (p.count * horizon if p.mode == "online" else p.vm_hours)

    spot = sum(gpu_hours(p) for p in result.pools if p.pricing == "spot")
    assert spot <= 0.25 * sum(gpu_hours(p) for p in result.pools) * (1 + 1e-9)
    # an offline job is not split into one-minute on-demand pools to offset spot GPUs (VMs counted whole did that)
    assert all(p.vm_hours >= 0.5 for p in result.pools if p.mode == "offline" and p.pricing == "on_demand")
    # more spot allowed never costs more
    assert plan(apply_point(base, {"spot_share": 1.0})).objective <= result.objective + 1e-9


@pytest.mark.parametrize("column, value, field", [("objective", "inf", "objective"), ("objective", "-5", "objective"),
                                                  ("point", "x", "point"), ("count", "1.5", "count"),
                                                  ("pool", None, "missing columns")])
def test_a_damaged_results_table_is_bad_input(tmp_path, column, value, field):
    """plot, report and --resume read a results table: a missing column, a cell of the wrong kind or a solved
    point's cost that is not a finite cost is one line, exit 2 (was an internal error)."""
    from conftest import run_cli
    from solver.sweep.results import POINT_FIELDS, TABLE_FIELDS, results_table, write_results
    record = {"point": 0, "values": {}, **{k: None for k in POINT_FIELDS}, "status": "optimal", "objective": 1.0,
              "message": "", "assignments": [{k: None for k in TABLE_FIELDS} | {"pool": "p", "count": 1,
                                                                                  "instance_type": "g5.xlarge"}]}
    path = tmp_path / "r.csv"
    write_results(results_table([record], []), path)
    assert run_cli(["plot", path, "--out", tmp_path / "ok"]).exit_code == 0
    import pandas as pd
    df = pd.read_csv(path, dtype=str)
    df = df.drop(columns=[column]) if value is None else df.assign(**{column: value})
    df.to_csv(path, index=False)
    result = run_cli(["plot", path, "--out", tmp_path / "pl"])
    assert result.exit_code == 2, result.output
    assert field in result.stderr and "r.csv" in result.stderr
