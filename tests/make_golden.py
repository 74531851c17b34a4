"""Regenerate tests/golden/<scenario>.json from the bundled scenarios (``python tests/make_golden.py``).

A golden file holds what must not change when the engine is refactored: status, objective, bound and the pools
of the plan (HiGHS, shipped calibration, pruning on, no timings). Scenarios without a plan record the error
class and message instead. ``tests/test_golden.py`` compares against these files with a tolerance.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from typing import Any

import solver
from solver.errors import PlannerError

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
GOLDEN = Path(__file__).resolve().parent / "golden"
MELANGE = Path(__file__).resolve().parent / "data" / "melange" / "readme_example.json"


def bundled() -> list[Path]:
    """Every plannable scenario shipped in scenarios/ (sweep files are not scenarios)."""
    return sorted(p for p in SCENARIOS.rglob("*.yaml") if "axes" not in yaml.safe_load(p.read_text(encoding="utf-8")))


def golden_name(path: Path) -> str:
    return path.relative_to(SCENARIOS).with_suffix("").as_posix().replace("/", "__")


def plan_record(plan: Any) -> dict[str, Any]:
    data = plan.model_dump()
    return {"scenario": data["scenario"], "status": data["status"], "objective": data["objective"],
            "bound": data["bound"], "online_usd_per_hour": data["online_usd_per_hour"],
            "offline_usd": data["offline_usd"], "pools": data["pools"]} | (
        {"hourly": {"pools": data["hourly"]["pools"], "commitment_usd": data["hourly"]["commitment_usd"],
                    "burst_usd": data["hourly"]["burst_usd"]}} if data.get("hourly") else {})


def golden_record(path: Path) -> dict[str, Any]:
    try:
        return plan_record(solver.plan(path, solver="highs", timings=False))
    except PlannerError as exc:
        return {"scenario": golden_name(path), "status": "no_plan", "error": type(exc).__name__,
                "message": str(exc).replace(f"{ROOT}/", "")}


def melange_record() -> dict[str, Any]:
    from solver.melange import solve_melange

    return plan_record(solve_melange(MELANGE, solver="highs", timings=False))


def dump(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def main() -> int:
    GOLDEN.mkdir(exist_ok=True)
    for path in bundled():
        record = golden_record(path)
        (GOLDEN / f"{golden_name(path)}.json").write_text(dump(record), encoding="utf-8")
        print(f"{golden_name(path)}: {record['status']} {record.get('objective')}")
    (GOLDEN / "melange__readme_example.json").write_text(dump(melange_record()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
