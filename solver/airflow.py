"""Airflow operator for InferSave (``pip install 'infersave[airflow]'``; Airflow 2.9+ and 3.x).

``InferSavePlanOperator`` plans a scenario, optionally writes the plan JSON (atomically), and returns a small
summary that Airflow pushes to XCom (``return_value``)::

    {"scenario", "status", "objective", "online_usd_per_hour", "offline_usd", "horizon_hours", "vms", "gpus",
     "instance_types", "plan_path", "catalog_retrieved", "calibration_id", "infersave_version"}

Templated fields: ``scenario``, ``out``, ``time_limit_s``, ``solver`` (so ``out="/data/plan_{{ ds_nodash }}.json"``
works). An infeasible scenario, a workload no instance can serve, or bad input fails the task **without
retries** (``AirflowFailException``) with the planner's one-line message; a solver failure (time limit without a
plan, back end crash) raises normally and is retried per the task's ``retries``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

try:  # Airflow 3: the task SDK
    from airflow.sdk import BaseOperator
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.9 / 2.10
    try:
        from airflow.exceptions import AirflowFailException  # type: ignore[no-redef, unused-ignore]
        from airflow.models import BaseOperator  # type: ignore[no-redef, unused-ignore]
    except ImportError:
        raise ImportError("solver.airflow needs Apache Airflow: pip install 'infersave[airflow]'") from None

from .errors import InfeasibleError, InputError, NoCandidatesError
from .io import atomic_write_text
from .plan import plan
from .report import plan_payload, to_json

SOLVERS = ("highs", "cbc", "ortools", "highs-pulp")


def plan_summary(plan: Any, plan_path: str | None) -> dict[str, Any]:
    """The XCom payload: the numbers a downstream task (or a Slack message) needs, JSON-serialisable."""
    used = [p for p in plan.pools if p.count > 0 and (p.mode == "online" or (p.vm_hours or 0) > 0)]
    prov = plan.provenance or {}
    return {"scenario": plan.scenario, "status": plan.status, "objective": round(plan.objective, 6),
            "online_usd_per_hour": plan.online_usd_per_hour, "offline_usd": plan.offline_usd,
            "horizon_hours": plan.horizon_hours, "vms": sum(p.count for p in used),
            "gpus": sum(p.count * p.gpu_count for p in used),
            "instance_types": sorted({p.instance_type for p in used}), "plan_path": plan_path,
            "catalog_retrieved": prov.get("catalog_retrieved", ""),
            "calibration_id": (prov.get("calibration") or {}).get("id", ""),
            "infersave_version": prov.get("infersave_version", "")}


class InferSavePlanOperator(BaseOperator):
    """Plan the fleet of ``scenario``; push a summary to XCom; write the plan JSON to ``out`` if given.

    Args:
        scenario: scenario YAML path (templated).
        out: where to write the plan JSON, atomically (templated; optional).
        time_limit_s: solver time limit in seconds (templated; a rendered string is converted).
        solver: MILP back end, one of ``highs``, ``cbc``, ``ortools``, ``highs-pulp`` (templated).
    """

    template_fields: Sequence[str] = ("scenario", "out", "time_limit_s", "solver")
    ui_color = "#e8f4ea"

    def __init__(self, *, scenario: str, out: str | None = None, time_limit_s: float | str | None = 300.0,
                 solver: str = "highs", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.out = out
        self.time_limit_s = time_limit_s
        self.solver = solver

    def _options(self) -> tuple[float | None, str]:
        limit = self.time_limit_s
        try:
            limit_s = None if limit in (None, "", "None") else float(limit)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise AirflowFailException(f"bad input: time_limit_s: expected seconds, got {limit!r}") from None
        if limit_s is not None and not limit_s > 0:
            raise AirflowFailException(f"bad input: time_limit_s: must be > 0, got {limit!r}")
        if self.solver not in SOLVERS:
            raise AirflowFailException(f"bad input: solver: expected one of {', '.join(SOLVERS)}, got {self.solver!r}")
        return limit_s, self.solver

    def execute(self, context: Any) -> dict[str, Any]:

        limit_s, solver = self._options()
        try:
            result = plan(self.scenario, solver=solver, time_limit_s=limit_s, timings=False)
        except (InfeasibleError, NoCandidatesError) as exc:  # a business outcome: retrying cannot help
            raise AirflowFailException(f"infeasible: {exc}") from None
        except InputError as exc:  # the scenario or catalog is wrong: fix the file
            raise AirflowFailException(f"bad input: {exc}") from None
        path = None
        if self.out:

            atomic_write_text(self.out, to_json(plan_payload(result)))
            path = str(Path(self.out))
        summary = plan_summary(result, path)
        self.log.info("plan %s: %s, %.2f USD (%.2f USD/h online, %.2f USD offline) on %d VMs", summary["scenario"],
                      summary["status"], summary["objective"], summary["online_usd_per_hour"],
                      summary["offline_usd"], summary["vms"])
        return summary


__all__ = ["InferSavePlanOperator", "plan_summary"]
