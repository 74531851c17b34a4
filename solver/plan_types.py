"""The plan a solve produces: frozen pydantic models, the JSON schema of ``infersave plan --format json``.

Money fields say what they price: ``unit_usd_per_hour`` one VM, ``pool_usd_per_hour`` a pool's VMs together,
``share_usd_per_hour`` the part of a pool an assignment's load uses (apportioned by load).
"""
from __future__ import annotations

from typing import Any

from .schema import Frozen


class Assignment(Frozen):
    """A demand's share on one pool."""

    workload: str
    demand: str
    model: str
    pool: str
    cloud: str
    instance_type: str
    region: str
    pricing: str
    gpu: str
    gpu_count: int
    tensor_parallel: int
    count: int
    share: float
    batch_size: int
    offload_ratio: float
    input_tokens: int
    output_tokens: int
    ttft_s: float
    tpot_s: float
    e2e_s: float
    tokens_per_s: float
    requests_per_s_per_vm: float
    share_usd_per_hour: float


class Pool(Frozen):
    """Identical VMs running one model in one configuration (tp, batch, offload) on one offering."""

    pool: str
    mode: str
    cloud: str
    instance_type: str
    region: str
    pricing: str
    gpu: str
    gpu_count: int
    tensor_parallel: int
    batch_size: int
    offload_ratio: float
    count: int
    vm_hours: float | None
    unit_usd_per_hour: float
    pool_usd_per_hour: float
    usd: float


class SolverStats(Frozen):
    backend: str
    variables: int
    integer_variables: int
    constraints: int
    wall_s: float | None
    note: str = ""


class SLOPromise(Frozen):
    """One SLO bound of one workload as the plan keeps it: the model's prediction at the planned load (worst
    over the pools serving the workload), the margin to the bound, and the probability that the bound holds given
    the model's held-out error (None without error quantiles in the calibration)."""

    workload: str
    metric: str  # ttft | tpot | e2e
    statistic: str  # mean | p50 | p90 | p95 | p99
    bound_s: float
    predicted_s: float
    margin: float  # bound / predicted - 1
    probability: float | None


class Plan(Frozen):
    """A fleet plan. ``status``: ``optimal``, or ``feasible`` (a time-limited incumbent; see ``gap``)."""

    scenario: str
    status: str
    objective: float
    bound: float | None
    gap: float | None
    horizon_hours: float
    online_usd_per_hour: float
    offline_usd: float
    assignments: list[Assignment]
    pools: list[Pool]
    solver: SolverStats
    pruning: dict[str, int]
    calibration: str
    slo_report: list[SLOPromise] = []  # per online workload and bound: prediction at the planned load
    provenance: dict[str, Any] | None = None  # package version, catalog dates, calibration id
