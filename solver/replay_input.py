"""What ``infersave simulate`` reads, checked before any request is replayed: the arrival process (``--arrivals``),
a trace file, and the fields of the plan JSON the replay uses. Every problem is an ``InputError`` (exit 2) naming
the file, line or field: a replay of a nonsense plan would either fail deep in the simulator or run for ever.

A plan here is what the replay needs of one (``infersave plan`` writes more; a hand-made plan may carry only these
fields): each assignment's workload, pool, GPU, tensor parallelism, VM count, share, batch size and offload."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from .catalog import find_gpu
from .engines import find_engine
from .errors import InputError, PlannerError, first_problem
from .field_checks import MAX_TENSOR_PARALLEL, MAX_VMS_PER_POOL, parse_number
from .io import MAX_JSON_BYTES, read_json, read_text
from .planfile import Offers, check_consistency, refuse_control_characters

MAX_REPLAY_SEQS = 16_384  # concurrent sequences of one replica
GAMMA_CV = (0.05, 20.0)  # coefficient of variation of gamma inter-arrival times
MAX_TRACE_SECONDS = 1e9  # ~32 years: a timestamp beyond is a unit slip (milliseconds, epoch nanoseconds)


def _number(**bounds: Any) -> Any:
    return Field(strict=True, **bounds)


class ReplayAssignment(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, populate_by_name=True)

    workload: str = Field(min_length=1)
    pool: str = Field(min_length=1)
    demand: Optional[str] = None
    gpu: str = Field(min_length=1)
    tensor_parallel: int = _number(default=1, ge=1, le=MAX_TENSOR_PARALLEL,
                                   validation_alias=AliasChoices("tensor_parallel", "tp"))
    gpu_count: Optional[int] = _number(default=None, ge=1, le=MAX_TENSOR_PARALLEL)
    count: int = _number(default=1, ge=0, le=MAX_VMS_PER_POOL)
    share: float = _number(default=1.0, gt=0.0, le=1.0)
    batch_size: Optional[int] = _number(default=None, ge=1, le=MAX_REPLAY_SEQS,
                                        validation_alias=AliasChoices("max_num_seqs", "batch_size"))
    offload_ratio: float = _number(default=0.0, ge=0.0, le=1.0)
    engine: Optional[str] = None


class ReplayPool(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    pool: str = Field(min_length=1)
    count: int = _number(default=1, ge=0, le=MAX_VMS_PER_POOL)


class ReplayPlan(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    status: Optional[str] = None
    assignments: list[ReplayAssignment] = Field(min_length=1)
    pools: list[ReplayPool] = Field(default_factory=list)


def check_replay_plan(path: str | Path, workloads: set[str], offers: Offers | None = None) -> dict[str, Any]:
    """The plan JSON in ``path`` (as a dict, unchanged) once the fields the replay reads hold: known workloads and
    GPUs, a tensor parallelism dividing the GPUs, counts, shares, batch sizes and offload in range, and its pools
    and assignments hang together (``planfile.check_consistency``, with the scenario's catalog ``offers``)."""
    data = read_json(path, InputError, "plan JSON")
    refuse_control_characters(data, path)
    if not isinstance(data, dict):
        raise InputError("not a plan: expected a JSON object", path=str(path))
    if data.get("status") == "infeasible":
        raise InputError("the plan is infeasible: there is no fleet to replay", path=str(path), field="status")
    try:
        plan = ReplayPlan.model_validate(data)
    except ValidationError as exc:
        field, msg, _ = first_problem(exc)
        raise InputError(f"not a plan to replay: {msg}", path=str(path), field=field or None) from None
    for k, a in enumerate(plan.assignments):
        where = f"assignments.{k}"
        if a.workload not in workloads:
            raise InputError(f"workload {a.workload!r} is not in the scenario (workloads: "
                             f"{', '.join(sorted(workloads))}); is this the plan of another scenario?",
                             path=str(path), field=f"{where}.workload")
        try:
            find_gpu(a.gpu)
        except PlannerError as exc:
            raise InputError(str(exc).splitlines()[0], path=str(path), field=f"{where}.gpu") from None
        if a.engine is not None:
            try:
                find_engine(a.engine)
            except PlannerError as exc:
                raise InputError(str(exc).splitlines()[0], path=str(path), field=f"{where}.engine") from None
        if a.gpu_count is not None and a.gpu_count % a.tensor_parallel:
            raise InputError(f"tensor parallelism {a.tensor_parallel} does not divide the VM's {a.gpu_count} GPUs",
                             path=str(path), field=f"{where}.tensor_parallel")
    check_consistency(path, data.get("pools") or [], data["assignments"], offers=offers)
    return data


def check_arrivals(kind: str) -> list[float] | None:
    """``--arrivals`` checked before a replay: ``poisson``, ``gamma:CV`` with a finite CV in ``GAMMA_CV``
    (``gamma_cv``), or ``trace:FILE``, whose timestamps it returns (``read_trace``, read once here); None but for a
    trace."""
    if kind == "poisson":
        return None
    if kind.startswith("gamma:"):
        gamma_cv(kind)
        return None
    if kind.startswith("trace:"):
        return read_trace(kind.split(":", 1)[1])
    raise InputError(f"unknown arrival process {kind!r} (poisson, gamma:CV or trace:FILE)", field="--arrivals")


def gamma_cv(kind: str) -> float:
    """The coefficient of variation of ``gamma:CV``: a finite number in ``GAMMA_CV`` (``gamma:nan`` or ``gamma:0``
    would make a replay that never advances)."""
    text = kind.split(":", 1)[1]
    try:
        cv = parse_number(text)
    except ValueError:
        cv = math.nan
    lo, hi = GAMMA_CV
    if not (math.isfinite(cv) and lo <= cv <= hi):
        raise InputError(f"gamma:CV needs a coefficient of variation between {lo:g} and {hi:g}, got {text!r}",
                         field="--arrivals")
    return cv


def read_trace(path: str) -> list[float]:
    """Timestamps in seconds from the first column of a CSV/text file: a header line (text) is skipped; any other
    line must hold a finite number within ``MAX_TRACE_SECONDS``; at least two distinct timestamps."""
    if not path:
        raise InputError("trace:FILE needs a file name", field="--arrivals")
    text = read_text(path, MAX_JSON_BYTES, InputError, "trace")
    out: list[float] = []
    for number, line in enumerate(text.splitlines(), start=1):
        field = line.split(",", 1)[0]
        if not field.strip():
            continue
        try:
            value = parse_number(field)
        except ValueError:
            if out or number > 1:
                raise InputError(f"timestamp {field[:40]!r} is not a number", path=path,
                                 where=f"line {number}") from None
            continue  # the header
        if not (math.isfinite(value) and abs(value) <= MAX_TRACE_SECONDS):
            raise InputError(f"timestamp {field[:40]!r} is not a finite number of seconds within "
                             f"{MAX_TRACE_SECONDS:g}", path=path, where=f"line {number}")
        out.append(value)
    if len(out) < 2 or max(out) <= min(out):
        raise InputError("a trace needs at least two different timestamps (seconds, first column)", path=path)
    return out


__all__ = ["MAX_REPLAY_SEQS", "check_arrivals", "check_replay_plan", "gamma_cv", "read_trace"]
