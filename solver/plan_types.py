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


class HourlyPool(Frozen):
    """An online pool's fleet over the day: ``base`` committed VMs held every hour plus ``burst[h]`` on-demand (or
    spot) VMs in hour h. ``reserved_usd_per_hour``: one committed VM's price (None: no commitment offered)."""

    pool: str
    pricing: str
    unit_usd_per_hour: float
    reserved_usd_per_hour: float | None
    base: int
    burst: list[int]
    commitment_usd: float  # base VMs over the horizon
    burst_usd: float  # burst VM-hours over the horizon


class HourlyShare(Frozen):
    """A demand's share on a pool in each hour (0 where it sends nothing there), with the requests/s one VM of
    the pool sustains for it (as in its ``Assignment``)."""

    demand: str
    pool: str
    shares: list[float]
    requests_per_s_per_vm: float


class Hourly(Frozen):
    """The hourly plan of a scenario with rate profiles: a day of 24 hours repeated over the horizon."""

    days: float  # horizon_hours / 24
    rate_per_s: dict[str, list[float]]  # planned rate per workload and hour (profile x peak factor)
    pools: list[HourlyPool]
    shares: list[HourlyShare]
    commitment_usd: float
    burst_usd: float


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
    hourly: Hourly | None = None  # base + burst VMs per hour (only when a workload gives a rate profile)
