"""``infersave plot``: PNGs from a small sweep results table (Parquet or CSV), with and without SLO/price axes."""
from __future__ import annotations

import pytest

from conftest import SCENARIOS, run_cli
from solver.plots import pareto_front, plot_all
from solver.scenario import load_scenario
from solver.sweep import make_sweep, run_sweep, write_results

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A 4-point sweep (H100 price x SLO scale, one point infeasible-free) written as Parquet and CSV."""
    base = load_scenario(SCENARIOS / "sweep_base.yaml")
    df = run_sweep(make_sweep(base, {"price.gpu.H100": [0.5, 2.0], "slo_scale": [1.0, 2.0]}), workers=1,
                   progress=False)
    out = tmp_path_factory.mktemp("results")
    write_results(df, out / "r.parquet")
    write_results(df, out / "r.csv")
    return df, out


def assert_png(path, min_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert len(data) >= min_bytes, (path, len(data))


@pytest.mark.parametrize("name", ["r.parquet", "r.csv"])
def test_cli_plot_writes_three_pngs(results, tmp_path, name):
    _, folder = results
    r = run_cli(["plot", folder / name, "--out", tmp_path / "plots"])
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "plots").glob("*.png"))
    assert [p.name for p in pngs] == ["cost_vs_price.png", "cost_vs_slo.png", "fleet_composition.png"]
    for p in pngs:
        assert_png(p)
    assert not list((tmp_path / "plots").glob(".*.tmp"))  # atomic writes leave no temporary files


def test_plots_without_slo_or_price_axis(tmp_path):
    base = load_scenario(SCENARIOS / "sweep_base.yaml")
    df = run_sweep(make_sweep(base, {"pricing": ["on_demand", "both"], "slo_scale": [0.0005]}), workers=1,
                   progress=False)
    assert set(df["status"]) == {"infeasible"}
    written, skipped = plot_all(df, tmp_path / "none")
    assert [p.name for p in written] == ["fleet_composition.png"]  # composition is always drawn
    assert set(skipped) == {"cost_vs_slo.png", "cost_vs_price.png", "cost_vs_confidence.png"}
    df = run_sweep(make_sweep(base, {"demand_growth": [1.0, 2.0]}), workers=1, progress=False)
    written, skipped = plot_all(df, tmp_path / "tpot")  # no slo axis: cost against each plan's worst TPOT
    assert {p.name for p in written} == {"fleet_composition.png", "cost_vs_slo.png"}
    assert set(skipped) == {"cost_vs_price.png", "cost_vs_confidence.png"}  # no price or confidence axis
    for p in written:
        assert_png(p)


def test_pareto_front():
    import numpy as np

    x = np.array([0.5, 1.0, 1.0, 2.0, 2.0, 4.0])
    y = np.array([300, 200, 250, 200, 100, 150.0])
    assert pareto_front(x, y).tolist() == [0, 1, 4]


def test_plot_bad_input(tmp_path):
    r = run_cli(["plot", tmp_path / "missing.parquet", "--out", tmp_path])
    assert r.exit_code == 2 and "not found" in r.stderr
    (tmp_path / "x.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    r = run_cli(["plot", tmp_path / "x.csv", "--out", tmp_path])
    assert r.exit_code == 2 and "not a sweep results table" in r.stderr


def test_composition_weighted_by_gpus_and_base_point(results):
    from solver.plots import _composition, base_point
    from solver.sweep import axis_columns, summary_table

    df, _ = results
    comp = _composition(df)
    summary = summary_table(df).set_index("point")
    for point, row in comp["gpus"].iterrows():  # an 8-GPU VM counts 8 (offline pools billed 0 h excluded)
        assert row.sum() <= summary.loc[point, "gpus"] + 1e-9
        assert row.sum() > 0
    base = base_point(summary_table(df), axis_columns(df))
    assert base["axis.slo_scale"] == 1.0


def test_sweep_parquet_carries_provenance(tmp_path, results):
    from solver.provenance import provenance, read_parquet_provenance
    from solver.sweep import read_results, write_results

    df, _ = results
    write_results(df, tmp_path / "p.parquet", provenance())
    meta = read_parquet_provenance(tmp_path / "p.parquet")
    assert meta["catalog_retrieved"] == "2026-11-25" and meta["infersave_version"]
    back = read_results(tmp_path / "p.parquet")
    assert set(back["provenance.catalog_retrieved"]) == {"2026-11-25"}
    assert back["provenance.calibration_id"].iloc[0] == meta["calibration"]["id"]


def test_plot_failure_leaves_no_folder_or_png(results, tmp_path, monkeypatch):
    """The --out folder is created by the first PNG written; if a later plot fails, the PNGs written and the
    folders created are removed again (a folder that was there before is kept)."""
    import solver.plots as plots

    df, _ = results

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setitem(plots.PLOTS, "cost_vs_confidence.png", broken)  # the last one: others are written first
    with pytest.raises(RuntimeError):
        plot_all(df, tmp_path / "new" / "plots")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        plot_all(df, tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []
