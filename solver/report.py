"""Presentation only: plans, recommendations and predictions as rich tables, JSON or CSV text."""
from __future__ import annotations

import io
import json
import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from .plan import Plan
from .recommend import COLUMNS, Recommendation

CANDIDATE_FIELDS = ["instance_type", "region", "pricing", "gpu", "gpu_count", "tp", "batch_size", "offload_ratio",
                    "ttft_s", "tpot_s", "tokens_per_s", "gpu_mem_gib", "usd_per_hour", "vms", "total_usd",
                    "meets_slo", "reason"]


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


def to_json(payload: dict) -> str:
    return json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n"


def render_text(console_text: Table | str, width: int = 160) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(console_text)
    return buf.getvalue()


# ---- recommend ---------------------------------------------------------------------------------------------


def recommendation_payload(rec: Recommendation) -> dict:
    cands = rec.candidates[[c for c in CANDIDATE_FIELDS if c in rec.candidates]].rename(columns={"tp": "tensor_parallel"})
    return {"status": rec.status, "workload": rec.workload, "choice": rec.choice, "baselines": rec.baselines,
            "candidates": cands.to_dict(orient="records")}


def recommendation_text(rec: Recommendation) -> str:
    table = Table(title=f"InferSave: instances for workload {rec.workload!r}", show_lines=False)
    for col in ("instance", "gpu", "tp", "batch", "offload", "TTFT ms", "TPOT ms", "TPS", "GPU GiB", "$/h", "VMs",
                "total $", "SLO"):
        table.add_column(col, justify="right" if col not in ("instance", "gpu", "SLO") else "left")
    for r in rec.candidates.itertuples():
        table.add_row(r.instance_type, f"{r.gpu_count}x{r.gpu}", str(r.tp), str(r.batch_size),
                      f"{r.offload_ratio:.0%}", f"{r.ttft_s * 1e3:.1f}", f"{r.tpot_s * 1e3:.2f}",
                      f"{r.vm_tokens_per_s:.0f}", f"{r.gpu_mem_gib:.1f}", f"{r.usd_per_hour:.3f}", str(r.vms),
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
    return rec.candidates[[c for c in COLUMNS if c in rec.candidates]].to_csv(index=False)


# ---- plan --------------------------------------------------------------------------------------------------


def plan_payload(plan: Plan) -> dict:
    return plan.model_dump()


def plan_text(plan: Plan) -> str:
    table = Table(title=f"Fleet plan for {plan.scenario!r}: {plan.status}, {plan.objective:,.2f} USD "
                        f"({plan.online_usd_per_hour:,.2f} USD/h online x {plan.horizon_hours:g} h "
                        f"+ {plan.offline_usd:,.2f} USD offline)")
    for col in ("workload", "model", "instance", "region", "price", "VMs", "tp", "batch", "offload", "share",
                "TTFT ms", "TPOT ms", "TPS", "$/h"):
        table.add_column(col, justify="left" if col in ("workload", "model", "instance", "region", "price")
                         else "right")
    for a in plan.assignments:
        table.add_row(a.demand, a.model, a.instance_type, a.region, a.pricing.replace("_", "-"), str(a.count),
                      str(a.tensor_parallel), str(a.batch_size), f"{a.offload_ratio:.0%}", f"{a.share:.0%}",
                      f"{a.ttft_s * 1e3:.1f}", f"{a.tpot_s * 1e3:.2f}", f"{a.tokens_per_s:.0f}",
                      f"{a.usd_per_hour:.2f}")
    gap = "n/a" if plan.gap is None else f"{plan.gap:.2e}"
    s = plan.solver
    footer = (f"solver {s.backend}: {s.variables} variables ({s.integer_variables} integer), {s.constraints} "
              f"constraints, gap {gap}" + (f", {s.wall_s:.2f} s" if s.wall_s is not None else "") +
              f"; pruning {plan.pruning}" + (f"\nnote: {s.note}" if s.note else ""))
    return render_text(table) + footer + "\n"


def plan_csv(plan: Plan) -> str:
    return pd.DataFrame([a.model_dump() for a in plan.assignments]).to_csv(index=False)
