"""``infersave report``: one self-contained HTML page (inline CSS, plots as base64 PNG, no network) for a plan
JSON or a sweep results table.

Run-rate costs (USD/h of online pools) and one-off costs (USD of offline jobs) are kept in separate tables and
panels: adding a daily run-rate to a one-off batch bill gives a number nobody can budget with. Tables carry
``id`` attributes (``summary``, ``pools``, ``run-rate``, ``one-off``, ``slo``, ``points``) so tests and scripts
can read them back.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Callable, Iterable

from .io import atomic_write_text
from .planfile import PlanView, check_view, load_plan_view
from .plots import PLOTS
from .provenance import caption, table_provenance
from .report import hourly_tables
from .scenario import load_scenario
from .sweep import AXIS_PREFIX, read_results, summary_table

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f3f3f3;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#777;font-size:.85em}
.bad{color:#b00}.ok{color:#070}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
"""

Cell = tuple[str, bool]  # (text, numeric)


def _fmt(value: Any, spec: str = ",.2f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def table(table_id: str, headers: list[str], rows: Iterable[list[Any]]) -> str:
    """An HTML table; numbers (int/float cells) right-aligned, everything escaped."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for v in row:
            numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
            text = _fmt(v, ",d" if isinstance(v, int) and not isinstance(v, bool) else ",.2f") if numeric else \
                _fmt(v)
            cells.append(f'<td class="n">{text}</td>' if numeric else f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def png_tag(fig: Any, alt: str) -> str:
    """A matplotlib Figure as an inline ``<img>`` (base64 PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: list[str], caption: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
            f'<p class="muted" id="provenance">{html.escape(caption)}</p>' + "\n".join(sections) + "</body></html>\n")


# ---- plan --------------------------------------------------------------------------------------------------


def _slo_rows(plan: PlanView, scenario: Any | None) -> list[list[Any]]:
    """Per assignment and bound: bound, predicted, margin (% of the bound left; negative = violated)."""
    slos = {w.name: w.slo for w in scenario.workloads} if scenario is not None else {}
    rows = []
    for a in plan.assignments:
        slo = slos.get(a.workload)
        checks = [("TTFT (ms)", a.ttft_s * 1e3, slo and slo.max_ttft_s and slo.max_ttft_s * 1e3, False),
                  ("TPOT (ms)", a.tpot_s * 1e3, slo and slo.max_tpot_s and slo.max_tpot_s * 1e3, False),
                  ("E2E (s)", a.e2e_s, slo and slo.max_e2e_s, False),
                  ("TPS (tokens/s)", a.tokens_per_s, slo and slo.min_tokens_per_s, True)]
        for label, predicted, bound, at_least in checks:
            if scenario is not None and not bound:
                continue
            margin = None if not bound else 100.0 * ((predicted - bound) if at_least else (bound - predicted)) / bound
            rows.append([a.demand or a.workload, a.instance_type, label, bound, predicted, margin])
    return rows


def plan_figure(plan: PlanView) -> Any:
    """Two panels: run-rate USD/h per online pool, one-off USD per offline pool (spot hatched)."""
    from matplotlib.figure import Figure

    online = [p for p in plan.pools if p.mode == "online" and p.count > 0]
    offline = [p for p in plan.pools if p.mode == "offline" and p.usd > 0]
    fig = Figure(figsize=(11, 0.5 + 0.45 * max(len(online), len(offline), 2)), layout="constrained")
    left, right = fig.subplots(1, 2)
    value: Callable[[Any], float]
    for ax, pools, value, title in ((left, online, lambda p: p.pool_usd_per_hour, "run-rate (USD/h), online pools"),
                                    (right, offline, lambda p: p.usd, "one-off cost (USD), offline jobs")):
        labels = [f"{p.count}x {p.instance_type} ({p.region})" for p in pools]
        ax.barh(range(len(pools)), [value(p) for p in pools], color="tab:blue",
                hatch=None, edgecolor="white")
        for i, p in enumerate(pools):
            if p.pricing == "spot":
                ax.patches[i].set_hatch("///")
        ax.set_yticks(range(len(pools)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
        if not pools:
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle("hatched = spot", fontsize=8, x=0.99, ha="right")
    return fig


def _hourly_sections(plan: PlanView) -> list[str]:
    """With rate profiles: the committed base vs burst per pool (table ``hourly``) and the fleet per hour
    (table ``hourly-fleet``)."""
    if plan.hourly is None:
        return []
    split_head, split, fleet_head, fleet = hourly_tables(plan.hourly)
    return ["<h2>Committed base + hourly burst</h2><p>Committed (reserved) VMs are paid every hour at the commitment "
            "price; burst VMs are on-demand (or spot) and paid only in the hours they run.</p>",
            table("hourly", split_head, split), "<h3>Fleet per hour (committed + burst VMs)</h3>",
            table("hourly-fleet", fleet_head, fleet)]


def plan_report(plan: PlanView, *, scenario: Any | None = None, source: str = "") -> str:
    """The HTML page of one plan. ``scenario`` (a ``Scenario``) adds the SLO bounds to the margins table."""

    used = [p for p in plan.pools if p.count > 0 and (p.mode == "online" or (p.vm_hours or 0) > 0)]
    work = {p.pool: sorted({a.workload for a in plan.pool_assignments(p.pool)}) for p in used}
    summary = table("summary", ["quantity", "value"], [
        ["status", plan.status], ["pools", len(used)], ["VMs", sum(p.count for p in used)],
        ["GPUs", sum(p.gpus for p in used)], ["run-rate, online (USD/h)", plan.online_usd_per_hour],
        [f"online over the {plan.horizon_hours:g} h horizon (USD)", plan.online_usd],
        ["one-off, offline jobs (USD)", plan.offline_usd], ["plan objective (USD)", plan.objective]])
    pools = table("pools", ["pool", "mode", "instance", "cloud/region", "pricing", "GPUs per VM", "VMs", "GPUs",
                            "USD/h per VM", "run-rate USD/h", "VM-hours", "one-off USD", "workloads"],
                  [[p.pool, p.mode, p.instance_type, f"{p.cloud}/{p.region}", p.pricing, f"{p.gpu_count}x{p.gpu}",
                    p.count, p.gpus, p.unit_usd_per_hour, p.pool_usd_per_hour if p.mode == "online" else None,
                    p.vm_hours, p.usd if p.mode == "offline" else None, ", ".join(work[p.pool])] for p in used])
    online = [p for p in used if p.mode == "online"]
    offline = [p for p in used if p.mode == "offline"]
    run_rate = table("run-rate", ["instance", "pricing", "VMs", "USD/h"],
                     [[p.instance_type, p.pricing, p.count, p.pool_usd_per_hour] for p in online]
                     + [["total", "", sum(p.count for p in online), plan.online_usd_per_hour]])
    one_off = table("one-off", ["job", "instance", "pricing", "VM-hours", "USD"],
                    [[", ".join(work[p.pool]), p.instance_type, p.pricing, p.vm_hours, p.usd] for p in offline]
                    + [["total", "", "", sum(p.vm_hours or 0 for p in offline), plan.offline_usd]])
    slo_note = "" if scenario is not None else \
        '<p class="muted">Bounds need the scenario: <code>infersave report PLAN.json --scenario S.yaml</code>.</p>'
    slo = table("slo", ["workload", "instance", "metric", "bound", "predicted", "margin %"],
                _slo_rows(plan, scenario))
    sections = [f'<p class="muted">source: {html.escape(source)}</p>' if source else "",
                "<h2>Fleet summary</h2>", summary, "<h2>Pools</h2>", pools,
                "<h2>Cost breakdown</h2><p>Run-rate (online, USD per hour) and one-off (offline jobs, USD) are "
                "different kinds of money and are not added here; the plan objective adds them over the horizon.</p>",
                "<h3>Run-rate (USD/h)</h3>", run_rate, "<h3>One-off (USD)</h3>", one_off,
                *_hourly_sections(plan),
                "<h2>SLO margins</h2>", slo_note, slo, "<h2>Plots</h2>", png_tag(plan_figure(plan), "cost breakdown")]
    return page(f"InferSave plan: {plan.scenario}", sections, caption(plan.provenance))


# ---- sweep results -----------------------------------------------------------------------------------------


def results_report(df: Any, *, source: str = "", prov: dict[str, Any] | None = None) -> str:
    """The HTML page of a sweep results table: per-point summary and every plot ``plots.py`` can draw."""
    import tempfile


    summary = summary_table(df)
    axes = [c for c in summary.columns if c.startswith(AXIS_PREFIX)]
    rows = [[int(r["point"]), *[str(r[a]) for a in axes], r["status"], r["online_usd_per_hour"], r["offline_usd"],
             r["objective"], int(r["vms"]), int(r["gpus"]), r["instance_types"]] for _, r in summary.iterrows()]
    points = table("points", ["point", *(a.removeprefix(AXIS_PREFIX) for a in axes), "status", "run-rate USD/h",
                              "one-off USD", "objective USD", "VMs", "GPUs", "instance types"], rows)
    imgs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in PLOTS.items():
            path = fn(df, Path(tmp) / name, prov=prov)
            if path is not None:
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                imgs.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    sections = [f'<p class="muted">source: {html.escape(source)}</p>' if source else "",
                "<h2>Sweep points</h2>", points, "<h2>Plots</h2>", *imgs]
    return page("InferSave sweep report", sections, caption(prov))


def write_report(target: str | Path, out: str | Path, scenario: str | Path | None = None) -> Path:
    """Render ``target`` (plan ``.json``, or results ``.parquet``/``.csv``) to ``out`` atomically."""

    target = Path(target)
    if target.suffix.lower() == ".json":

        view = load_plan_view(target)
        resolved = None if scenario is None else load_scenario(scenario)
        check_view(view, target, resolved)
        text = plan_report(view, scenario=None if resolved is None else resolved.scenario, source=str(target))
    else:

        df = read_results(target)
        text = results_report(df, source=str(target), prov=table_provenance(df, target))
    atomic_write_text(out, text)
    return Path(out)


__all__ = ["page", "plan_figure", "plan_report", "png_tag", "results_report", "table", "write_report"]
