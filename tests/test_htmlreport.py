"""``infersave report``: a self-contained HTML page whose tables agree with the plan (parsed with html.parser)."""
from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from conftest import SCENARIOS, run_cli


class Tables(HTMLParser):
    """Collect every <table id=...> as a list of rows of cell texts; note external resources."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.external: list[str] = []
        self.images = 0
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith("data:"):
                self.external.append(a[key])
        if tag == "img":
            self.images += 1
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path) -> Tables:
    p = Tables()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def num(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.fixture(scope="module")
def plan_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("rep") / "plan.json"
    r = run_cli(["plan", SCENARIOS / "mixed_spot_quota.yaml", "-f", "json", "--no-timings", "--out", path])
    assert r.exit_code == 0, r.output
    return path


def test_plan_report_tables_match_plan(plan_json, tmp_path):
    out = tmp_path / "report.html"
    r = run_cli(["report", plan_json, "--scenario", SCENARIOS / "mixed_spot_quota.yaml", "--out", out])
    assert r.exit_code == 0, r.output
    page = parse(out)
    assert not page.external and page.images >= 1  # self-contained: inline CSS and base64 images only
    plan = json.loads(plan_json.read_text())
    summary = {row[0]: row[1] for row in page.tables["summary"][1:]}
    assert num(summary["run-rate, online (USD/h)"]) == pytest.approx(plan["online_usd_per_hour"], abs=0.01)
    assert num(summary["one-off, offline jobs (USD)"]) == pytest.approx(plan["offline_usd"], abs=0.01)
    assert num(summary["plan objective (USD)"]) == pytest.approx(plan["objective"], abs=0.01)
    used = {a["pool"] for a in plan["assignments"]}
    pools = {p["pool"]: p for p in plan["pools"] if p["pool"] in used}
    header, *rows = page.tables["pools"]
    assert {row[0] for row in rows} == set(pools)
    col = {h: i for i, h in enumerate(header)}
    for row in rows:
        p = pools[row[0]]
        assert (row[col["instance"]], row[col["pricing"]], int(row[col["VMs"]])) == (p["instance_type"], p["pricing"],
                                                                                     p["count"])
        assert int(row[col["GPUs"]]) == p["count"] * p["gpu_count"]
        if p["mode"] == "online":
            assert num(row[col["run-rate USD/h"]]) == pytest.approx(p["pool_usd_per_hour"], abs=0.01)
            assert row[col["one-off USD"]] == "–"
        else:
            assert num(row[col["one-off USD"]]) == pytest.approx(p["usd"], abs=0.01)
            assert row[col["run-rate USD/h"]] == "–"
    # run-rate and one-off are separate tables whose totals are the plan's two figures
    assert num(page.tables["run-rate"][-1][-1]) == pytest.approx(plan["online_usd_per_hour"], abs=0.01)
    assert num(page.tables["one-off"][-1][-1]) == pytest.approx(plan["offline_usd"], abs=0.01)
    # SLO margins: bound from the scenario, predicted from the plan, margin = share of the bound left
    slo = page.tables["slo"][1:]
    chat = [r for r in slo if r[0] == "chat-8b" and r[2] == "TPOT (ms)"]
    a = next(a for a in plan["assignments"] if a["workload"] == "chat-8b")
    assert chat and num(chat[0][3]) == pytest.approx(50.0)
    assert any(num(r[4]) == pytest.approx(a["tpot_s"] * 1e3, abs=0.01) for r in chat)
    assert all(num(r[5]) >= -1e-6 for r in slo)  # a verified plan meets every bound
    assert "prices retrieved 2026-11-25" in out.read_text()


def test_results_report(tmp_path):
    from solver.provenance import provenance
    from solver.scenario import load_scenario
    from solver.sweep import make_sweep, run_sweep, write_results

    df = run_sweep(make_sweep(load_scenario(SCENARIOS / "sweep_base.yaml"), {"price.gpu.H100": [1.0, 2.0]}),
                   workers=1, progress=False)
    write_results(df, tmp_path / "r.parquet", provenance())
    out = tmp_path / "r.html"
    r = run_cli(["report", tmp_path / "r.parquet", "--out", out])
    assert r.exit_code == 0, r.output
    page = parse(out)
    assert not page.external and page.images >= 2
    rows = page.tables["points"][1:]
    assert len(rows) == 2 and {row[2] for row in rows} == {"optimal"}
    assert "prices retrieved 2026-11-25" in out.read_text()


def test_report_bad_input(tmp_path):
    bad = tmp_path / "plan.json"
    bad.write_text('{"status": "optimal"}')
    r = run_cli(["report", bad, "--out", tmp_path / "x.html"])
    assert r.exit_code == 2 and "plan.json" in r.stderr
    assert not (tmp_path / "x.html").exists()
