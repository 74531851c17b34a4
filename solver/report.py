"""Presentation only: plans, recommendations, predictions and sweep summaries as rich tables, JSON or CSV text."""
from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from .io import csv_safe
from .plan_types import Plan
from .predict import Prediction
from .recommend import COLUMNS, Pick, Recommendation
from .sweep import AXIS_PREFIX, SOLVED
from .table import rejection_text

CANDIDATE_FIELDS = ["instance_type", "region", "pricing", "gpu", "gpu_count", "tensor_parallel", "batch_size",
                    "offload_ratio", "ttft_s", "tpot_s", "tokens_per_s", "gpu_mem_gib", "unit_usd_per_hour", "vms",
                    "total_usd", "meets_slo", "reason"]


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 9)
    if hasattr(value, "item"):
        return _clean(value.item())
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(payload: dict[str, Any]) -> str:
    return json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n"


def render_text(console_text: Table | str, width: int = 160) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(console_text)
    return buf.getvalue()


# ---- recommend ---------------------------------------------------------------------------------------------


def _reasons(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with a ``reason`` text column rendered from its structured rejection."""
    return frame.assign(reason=[rejection_text(c, b) for c, b in zip(frame["rejection"], frame["rejection_bound"])])


def _pick_payload(pick: Pick | None) -> dict[str, Any] | None:
    if pick is None:
        return None
    out = {k: v for k, v in pick.items() if k not in ("rejection", "rejection_bound")}
    return out | {"reason": rejection_text(pick["rejection"], pick["rejection_bound"])}


def recommendation_payload(rec: Recommendation) -> dict[str, Any]:
    cands = _reasons(rec.candidates)
    return {"status": rec.status, "workload": rec.workload, "choice": _pick_payload(rec.choice),
            "baselines": {k: _pick_payload(v) for k, v in rec.baselines.items()},
            "candidates": cands[[c for c in CANDIDATE_FIELDS if c in cands]].to_dict(orient="records")}


def recommendation_text(rec: Recommendation) -> str:
    table = Table(title=f"InferSave: instances for workload {rec.workload!r}", show_lines=False)
    for col in ("instance", "gpu", "tp", "batch", "offload", "TTFT ms", "TPOT ms", "TPS", "GPU GiB", "$/h", "VMs",
                "total $", "SLO"):
        table.add_column(col, justify="right" if col not in ("instance", "gpu", "SLO") else "left")
    for r in _reasons(rec.candidates).itertuples():
        table.add_row(r.instance_type, f"{r.gpu_count}x{r.gpu}", str(r.tensor_parallel), str(r.batch_size),
                      f"{r.offload_ratio:.0%}", f"{r.ttft_s * 1e3:.1f}", f"{r.tpot_s * 1e3:.2f}",
                      f"{r.vm_tokens_per_s:.0f}", f"{r.gpu_mem_gib:.1f}", f"{r.unit_usd_per_hour:.3f}", str(r.vms),
                      f"{r.total_usd:.2f}", "meets" if r.meets_slo else f"no: {r.reason}")
    lines = [render_text(table)]
    for name, pick in rec.baselines.items():
        if pick:
            lines.append(f"{name:<27} {pick['instance_type']:<22} offload {pick['offload_ratio']:.0%}  "
                         f"{pick['total_usd']:.3f} USD")
        else:
            lines.append(f"{name:<27} (none)")
    return "\n".join(lines) + "\n"


def recommendation_csv(rec: Recommendation) -> str:
    cands = _reasons(rec.candidates)
    columns = [c for c in COLUMNS if c not in ("rejection", "rejection_bound")] + ["reason"]
    return csv_safe(cands[[c for c in columns if c in cands]]).to_csv(index=False)


# ---- plan --------------------------------------------------------------------------------------------------


def plan_payload(plan: Plan) -> dict[str, Any]:
    payload = plan.model_dump()
    if payload.get("hourly") is None:  # plans without rate profiles keep their JSON as before
        payload.pop("hourly", None)
    return payload


def plan_text(plan: Plan) -> str:
    table = Table(title=f"Fleet plan for {plan.scenario!r}: {plan.status}, {plan.objective:,.2f} USD "
                        f"({plan.online_usd_per_hour:,.2f} USD/h online x {plan.horizon_hours:g} h "
                        f"+ {plan.offline_usd:,.2f} USD offline)")
    # latencies and TPS in the table are each configuration's at its SLO capacity (the most it may carry);
    # the promises below are predicted at the load the plan actually puts on each pool
    for col in ("workload", "model", "instance", "region", "price", "VMs", "tp", "batch", "offload", "share",
                "TTFT@cap ms", "TPOT@cap ms", "TPS@cap", "$/h"):
        table.add_column(col, justify="left" if col in ("workload", "model", "instance", "region", "price")
                         else "right")
    shown: set[str] = set()  # a pool shared by several demands is counted on its first row only
    for a in plan.assignments:
        vms = "" if a.pool in shown else str(a.count)
        shown.add(a.pool)
        table.add_row(a.demand, a.model, a.instance_type, a.region, a.pricing.replace("_", "-"), vms,
                      str(a.tensor_parallel), str(a.batch_size), f"{a.offload_ratio:.0%}", f"{a.share:.0%}",
                      f"{a.ttft_s * 1e3:.1f}", f"{a.tpot_s * 1e3:.2f}", f"{a.tokens_per_s:.0f}",
                      f"{a.share_usd_per_hour:.2f}")
    gap = "n/a" if plan.gap is None else f"{plan.gap:.2e}"
    s = plan.solver
    fleet = sum(p.count for p in plan.pools)
    gpus = sum(p.count * p.gpu_count for p in plan.pools)
    footer = (f"fleet: {fleet} VMs ({gpus} GPUs) in {len(plan.pools)} pools\n"
              f"solver {s.backend}: {s.variables} variables ({s.integer_variables} integer), {s.constraints} "
              f"constraints, gap {gap}" + (f", {s.wall_s:.2f} s" if s.wall_s is not None else "") +
              f"; pruning {plan.pruning}" + (f"\nnote: {s.note}" if s.note else ""))
    text = render_text(table)
    if plan.hourly is not None:
        text += hourly_text(plan.hourly.model_dump())
    return text + _promises_text(plan) + footer + "\n"


def _short(pool: str) -> str:
    """``model|cloud:region:type:pricing|...`` -> ``model type`` (the hourly tables' column names)."""
    parts = pool.split("|")
    where = parts[1].split(":") if len(parts) > 1 else [pool]
    return f"{parts[0]} {where[2] if len(where) > 2 else where[-1]}"


def hourly_tables(hourly: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str], list[list[Any]]]:
    """The base + burst split per pool and the fleet per hour (base + burst VMs), as headers and rows, for the
    text and HTML reports. ``hourly`` is a plan's ``hourly`` section as JSON."""
    split_head = ["pool", "pricing", "committed VMs", "commit USD/h per VM", "peak VMs", "burst VM-h/day",
                  "commitment USD", "burst USD"]
    split = [[_short(p["pool"]), p["pricing"], p["base"], p["reserved_usd_per_hour"], p["base"] + max(p["burst"]),
              sum(p["burst"]), p["commitment_usd"], p["burst_usd"]] for p in hourly["pools"]]
    split.append(["total", "", sum(p["base"] for p in hourly["pools"]), None, None,
                  sum(sum(p["burst"]) for p in hourly["pools"]), hourly["commitment_usd"], hourly["burst_usd"]])
    fleet_head = ["hour", *(f"{w} req/s" for w in hourly["rate_per_s"]), *(_short(p["pool"]) for p in hourly["pools"]),
                  "VMs"]
    fleet = [[f"{h:02d}", *(r[h] for r in hourly["rate_per_s"].values()),
              *(f"{p['base']}+{p['burst'][h]}" for p in hourly["pools"]),
              sum(p["base"] + p["burst"][h] for p in hourly["pools"])] for h in range(24)]
    return split_head, split, fleet_head, fleet


def hourly_text(hourly: dict[str, Any]) -> str:
    """The hourly plan as two text tables: committed base vs burst per pool, and the fleet per hour."""
    split_head, split, fleet_head, fleet = hourly_tables(hourly)
    out = ""
    for title, head, rows in ((f"Committed base + burst over {hourly['days']:g} day(s) (USD)", split_head, split),
                              ("Fleet per hour (committed + burst VMs per pool)", fleet_head, fleet)):
        table = Table(title=title)
        for col in head:
            table.add_column(col, justify="left" if col in ("pool", "pricing", "hour") else "right")
        for row in rows:
            table.add_row(*("" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row))
        out += render_text(table)
    return out


def _promises_text(plan: Plan) -> str:
    """One line per SLO bound: the statistic predicted at the planned load, its margin and its probability."""
    if not plan.slo_report:
        return ""
    lines = ["SLO promises at the planned load (probability from the model's held-out error):"]
    for p in plan.slo_report:
        prob = "n/a" if p.probability is None else f"{p.probability:.0%}"
        lines.append(f"  {p.workload:<16} {p.metric.upper():<4} {p.statistic:<4} {p.predicted_s * 1e3:10.1f} ms "
                     f"<= {p.bound_s * 1e3:.1f} ms  margin {p.margin:+.0%}  P(holds) {prob}")
    return "\n".join(lines) + "\n"


def plan_csv(plan: Plan) -> str:
    return csv_safe(pd.DataFrame([a.model_dump() for a in plan.assignments])).to_csv(index=False)


# ---- predict -----------------------------------------------------------------------------------------------


def prediction_text(p: Prediction) -> str:
    table = Table(title=f"{p.model} on {p.gpu_count}x{p.gpu}, batch {p.batch_size}, {p.input_tokens} in / "
                        f"{p.output_tokens} out, {p.dtype}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in p.model_dump().items():
        table.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    return render_text(table)


def prediction_csv(p: Prediction) -> str:
    return csv_safe(pd.DataFrame([p.model_dump()])).to_csv(index=False)


# ---- sweep -------------------------------------------------------------------------------------------------


def summary_text(summary: pd.DataFrame, title: str = "sweep") -> str:
    """The per-point summary as a plain-text table (the ``infersave sweep`` stdout)."""
    axes = [c for c in summary.columns if c.startswith(AXIS_PREFIX)]
    n_ok = int(summary["status"].isin(SOLVED).sum())
    table = Table(title=f"Sweep {title!r}: {n_ok} of {len(summary)} points have a plan")
    for col in ["point", *(c.removeprefix(AXIS_PREFIX) for c in axes), "status", "total USD", "online $/h",
                "offline USD", "VMs", "GPUs", "instance types"]:
        table.add_column(col, justify="left" if col in ("status", "instance types", "pricing", "regions") else "right")
    for row in summary.to_dict(orient="records"):
        cells = [str(row["point"])]
        cells += [f"{row[c]:g}" if isinstance(row[c], float) else str(row[c]) for c in axes]
        ok = row["status"] in SOLVED
        cells += [row["status"], f"{row['objective']:,.2f}" if ok else "-",
                  f"{row['online_usd_per_hour']:,.2f}" if ok else "-", f"{row['offline_usd']:,.2f}" if ok else "-",
                  str(row["vms"]) if ok else "-", str(row["gpus"]) if ok else "-", row["instance_types"] or "-"]
        table.add_row(*cells)
    text = render_text(table)
    bad = summary[~summary["status"].isin(SOLVED)]
    for r in bad.itertuples(index=False):
        text += f"point {r.point}: {r.status}: {r.message}\n"
    return text
