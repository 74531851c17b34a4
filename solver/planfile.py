"""Read a plan JSON file (``infersave plan --format json``) for the tools downstream of the planner.

The plan's own model (``solver.plan.Plan``) is strict and is being reshaped; exporters, reports and the Airflow
operator only need a stable subset, so they read the file through this lenient view. It accepts both key
spellings of the plan format:

=========================  ===========================================================================
old                        new
=========================  ===========================================================================
``tp``                     ``tensor_parallel``
assignment ``usd_per_hour``  ``share_usd_per_hour`` (the pool cost apportioned to this assignment)
pool ``usd_per_hour``      ``pool_usd_per_hour`` (count x instance price); ``unit_usd_per_hour`` stays
=========================  ===========================================================================

Unknown keys are ignored (a newer plan may carry more), missing required keys are bad input (exit 2).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InputError, first_problem
from .field_checks import MAX_BATCH, MAX_TENSOR_PARALLEL, MAX_VMS_PER_POOL
from .io import read_json
from .plan_types import Plan
from .schema import Instance

if TYPE_CHECKING:  # planfile stays light: export and report load the scenario themselves
    from .scenario import Resolved


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)


def _rename(data: Any, renames: dict[str, str]) -> Any:
    """Map old key names to new ones; the new name wins when both are present."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for old, new in renames.items():
        if old in out:
            value = out.pop(old)
            out.setdefault(new, value)
    return out


class AssignmentView(_View):
    workload: str
    demand: str = ""
    model: str
    pool: str
    cloud: str
    instance_type: str
    region: str
    pricing: str
    gpu: str
    gpu_count: int = Field(gt=0, le=MAX_TENSOR_PARALLEL)
    tensor_parallel: int = Field(gt=0, le=MAX_TENSOR_PARALLEL)
    count: int = Field(ge=0, le=MAX_VMS_PER_POOL)
    share: float = Field(ge=0, le=1)
    batch_size: int = Field(gt=0, le=MAX_BATCH)
    offload_ratio: float = Field(ge=0, le=1)
    ttft_s: float
    tpot_s: float
    e2e_s: float
    tokens_per_s: float
    requests_per_s_per_vm: float = 0.0
    share_usd_per_hour: float = 0.0
    input_tokens: int | None = None  # in plans since the serving model; derived for older (static-batch) plans
    output_tokens: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _rename(data, {"tp": "tensor_parallel", "usd_per_hour": "share_usd_per_hour"})

    @property
    def context_tokens(self) -> int:
        """Input + output tokens of one request: given by the plan, or TPS x E2E / batch (the model's TPS counts
        input and output tokens of the whole batch over one end-to-end time)."""
        if self.input_tokens is not None and self.output_tokens is not None:
            return self.input_tokens + self.output_tokens
        if self.e2e_s > 0 and math.isfinite(self.tokens_per_s):
            return max(1, math.ceil(self.tokens_per_s * self.e2e_s / self.batch_size - 1e-6))
        return 0


class PoolView(_View):
    pool: str
    mode: str
    cloud: str
    instance_type: str
    region: str
    pricing: str
    gpu: str
    gpu_count: int = Field(gt=0, le=MAX_TENSOR_PARALLEL)
    count: int = Field(ge=0, le=MAX_VMS_PER_POOL)
    vm_hours: float | None = None
    unit_usd_per_hour: float = Field(ge=0)
    pool_usd_per_hour: float = Field(ge=0)
    usd: float = Field(ge=0)

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        return _rename(data, {"usd_per_hour": "pool_usd_per_hour"})

    @property
    def gpus(self) -> int:
        return self.gpu_count * self.count


class PlanView(_View):
    scenario: str
    status: str
    objective: float
    gap: float | None = None
    horizon_hours: float = 24.0
    online_usd_per_hour: float = 0.0
    offline_usd: float = 0.0
    assignments: list[AssignmentView]
    pools: list[PoolView]
    calibration: str = ""
    provenance: dict[str, Any] | None = None
    hourly: dict[str, Any] | None = None  # the plan's hourly section (base + burst VMs per hour), if any

    def pool_assignments(self, pool: str) -> list[AssignmentView]:
        return [a for a in self.assignments if a.pool == pool]

    @property
    def online_usd(self) -> float:
        """The online run-rate over the horizon (USD)."""
        return self.online_usd_per_hour * self.horizon_hours


CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")  # line breaks and other control characters


def refuse_control_characters(data: object, path: str | Path, where: str = "") -> None:
    """A plan's text fields are names and notes on one line: a control character (a line break above all) would
    carry plan text out of the comment lines ``export`` writes into a shell or YAML line of its own, so any is
    ``InputError`` naming the field."""
    if isinstance(data, dict):
        for key, value in data.items():
            refuse_control_characters(value, path, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            refuse_control_characters(value, path, f"{where}.{index}")
    elif isinstance(data, str) and CONTROL.search(data):
        raise InputError("has a line break or other control character; a plan's names and notes are one line of "
                         "text", path=str(path), field=where or None)


def load_plan_view(path: str | Path) -> PlanView:
    """The plan in ``path``, validated; raises ``InputError`` (exit 2) naming the file and field."""
    path = Path(path)

    data = read_json(path, InputError, "plan JSON file")
    refuse_control_characters(data, path)
    if isinstance(data, dict) and data.get("status") == "infeasible":
        raise InputError("the plan is infeasible: there is no fleet to use", path=str(path), field="status")
    try:
        return PlanView.model_validate(data)
    except ValidationError as exc:
        field, msg, _ = first_problem(exc)
        raise InputError(f"not a plan: {msg}", path=str(path), field=field or None) from None


POOL_KEYS = ("cloud", "instance_type", "region", "pricing", "gpu", "gpu_count", "count")  # an assignment repeats
Offers = Mapping[tuple[str, str, str], Instance]


def offers_of(instances: Iterable[Instance]) -> dict[tuple[str, str, str], Instance]:
    """A scenario's catalog instances by (cloud, instance type, region): what a plan's pools must be."""
    return {(i.cloud, i.instance_type, i.region): i for i in instances}


def catalog_instance(pool: Mapping[str, Any], offers: Offers) -> Instance | None:
    """The catalog instance a plan's pool rents: same (cloud, type, region), GPU and GPU count; else None."""
    key = (pool.get("cloud"), pool.get("instance_type"), pool.get("region"))
    inst = offers.get(key) if all(isinstance(k, str) for k in key) else None  # type: ignore[arg-type]
    if inst is None or (pool.get("gpu", inst.gpu), pool.get("gpu_count", inst.gpu_count)) != (inst.gpu, inst.gpu_count):
        return None
    return inst


def check_consistency(path: str | Path, pools: Sequence[Mapping[str, Any]], assignments: Sequence[Mapping[str, Any]],
                      *, workloads: Collection[str] | None = None, offers: Offers | None = None) -> None:
    """The plan's pools and assignments hang together, checked before ``simulate``, ``export`` and ``report`` use
    it (``verify`` reports the same rules among its violations): pool names listed once, each pool renting at
    least one VM (and, given the scenario's catalog ``offers``, being one of its instances), each assignment naming
    a listed pool and repeating its ``POOL_KEYS`` and (given the scenario's ``workloads``) a workload of it. A plan
    without pools (a hand-made replay input) is checked for workloads only. ``InputError`` naming the field."""

    def fail(message: str, field: str) -> InputError:
        return InputError(message, path=str(path), field=field)

    by_name: dict[Any, Mapping[str, Any]] = {}
    for k, pool in enumerate(pools):
        name = pool.get("pool")
        if name in by_name:
            raise fail(f"pool {name!r} is listed twice", f"pools.{k}.pool")
        by_name[name] = pool
        if pool.get("count", 1) < 1:
            raise fail(f"pool {name!r} rents {pool.get('count')} VMs; a plan lists only the pools it rents",
                       f"pools.{k}.count")
        if offers is not None and all(key in pool for key in ("cloud", "instance_type", "region")) \
                and catalog_instance(pool, offers) is None:
            raise fail(f"{pool.get('instance_type')!r} in {pool.get('cloud')}/{pool.get('region')} (with its GPUs) "
                       "is not an instance of the scenario's catalogs; is this the plan of another scenario?",
                       f"pools.{k}.instance_type")
    for k, a in enumerate(assignments):
        if workloads is not None and a.get("workload") not in workloads:
            raise fail(f"workload {a.get('workload')!r} is not in the scenario (workloads: "
                       f"{', '.join(sorted(workloads))}); is this the plan of another scenario?",
                       f"assignments.{k}.workload")
        owner = by_name.get(a.get("pool"))
        if owner is None:
            if pools:
                raise fail(f"pool {a.get('pool')!r} is not among the plan's pools", f"assignments.{k}.pool")
            continue
        for key in POOL_KEYS:
            if key in a and key in owner and a[key] != owner[key]:
                raise fail(f"{key} {a[key]!r} differs from its pool {owner.get('pool')!r}'s {owner[key]!r}",
                           f"assignments.{k}.{key}")


def check_view(view: PlanView, path: str | Path, resolved: Resolved | None = None) -> None:
    """``check_consistency`` of a loaded ``PlanView`` (with the ``resolved`` scenario's workloads and catalog when
    given)."""
    check_consistency(path, [p.model_dump() for p in view.pools], [a.model_dump() for a in view.assignments],
                      workloads=None if resolved is None else {w.name for w in resolved.scenario.workloads},
                      offers=None if resolved is None else offers_of(resolved.instances))


def load_plan(path: str | Path, workloads: set[str], scenario: str | Path) -> Plan:
    """The plan JSON in ``path`` as a ``Plan`` of the scenario whose workloads are ``workloads`` (``verify`` and
    ``simulate``): malformed, too large or too deep JSON, a missing or mistyped field, and a workload the scenario
    does not have are each ``InputError`` (exit 2) naming the file and field."""
    data = read_json(path, InputError, "plan JSON")
    refuse_control_characters(data, path)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        field, msg, _ = first_problem(exc)
        raise InputError(f"not a plan: {msg}", path=str(path), field=field or None) from None
    foreign = sorted({a.workload for a in plan.assignments} - workloads)
    if foreign:
        raise InputError(f"workload {foreign[0]!r} of the plan is not in {scenario} (workloads: "
                         f"{', '.join(sorted(workloads))}); is this the plan of another scenario?", path=str(path),
                         field="assignments.workload")
    return plan


__all__ = ["AssignmentView", "PlanView", "PoolView", "catalog_instance", "check_consistency", "check_view", "load_plan",
           "load_plan_view", "offers_of"]
