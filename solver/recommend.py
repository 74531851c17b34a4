"""One workload, the paper's way: rank every instance, keep those that meet the SLO, pick the cheapest.

For each offering the best configuration is kept (the batch sizes allowed, the smallest KV offload ratio that
fits, the tensor-parallel degree with the highest throughput per VM). The job's cost is the VMs needed times the
billed hours (hourly billing rounds up, as the paper's Eq. 2-3 do) times the price. The paper's baselines are
computed from the same table: max-performance (highest throughput, whatever the price), cheapest that fits in
GPU memory without offloading, and InferSave without KV offloading.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from .candidates import build_candidates
from .catalog import suggest
from .errors import UnknownNameError
from .scenario import Resolved
from .schema import Frozen, Workload
from .table import Rejection, offload_fits

COLUMNS = ["instance_type", "region", "pricing", "gpu", "gpu_count", "tensor_parallel", "batch_size", "offload_ratio",
           "ttft_s", "tpot_s", "e2e_s", "tokens_per_s", "gpu_mem_gib", "unit_usd_per_hour", "vms", "hours",
           "total_usd", "meets_slo", "rejection", "rejection_bound"]


Pick = dict[str, Any]  # one ranked configuration: the COLUMNS of its row


class Recommendation(Frozen):
    """The ranked table for one workload, the cheapest that meets its SLO, and the paper's baselines."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    workload: str
    status: str
    choice: Pick | None
    baselines: dict[str, Pick | None]
    candidates: pd.DataFrame


def _job_cost(rows: pd.DataFrame, workload: Workload, billing: str) -> pd.DataFrame:
    """VMs, billed hours and USD for the whole job on each row's configuration; a configuration with no
    throughput left (capacity 0 at the SLO, or a row that does not run) is unservable: 0 VMs, infinite cost."""
    vm_tps = (rows["tokens_per_s"] * rows["replicas_per_vm"]).to_numpy(float)
    tokens = (rows["input_tokens"] + rows["output_tokens"]).to_numpy(float)
    rps = rows["requests_per_s_per_vm"].to_numpy(float)
    if workload.request_rate_per_s:
        serves = np.isfinite(rps) & (rps > 0)
        vms = np.ceil(workload.request_rate_per_s / np.where(serves, rps, 1.0) - 1e-9)
        hours = np.ones(len(rows))  # an online fleet is priced per hour
    else:
        serves = np.isfinite(vm_tps) & (vm_tps > 0)
        hours_one = float(workload.num_requests or 1) * tokens / np.where(serves, vm_tps, 1.0) / 3600.0
        vms = np.ones(len(rows))
        if workload.deadline_hours:
            vms = np.ceil(hours_one / workload.deadline_hours - 1e-9)
        vms = np.maximum(vms, 1)
        hours = hours_one / vms
    serves &= np.isfinite(vms) & (vms < np.iinfo(np.int64).max)  # beyond any fleet: unservable as well
    vms = np.where(serves, np.maximum(np.where(serves, vms, 1), 1), 0).astype(int)
    billed = np.ceil(hours - 1e-9) if billing == "hourly" else hours
    total = np.where(serves, rows["unit_usd_per_hour"].to_numpy(float) * vms * billed, np.inf)
    return rows.assign(vm_tokens_per_s=vm_tps, vms=vms, hours=billed, total_usd=total)


def _best_per_offering(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.sort_values(["offer", "total_usd", "vm_tokens_per_s", "offload_ratio", "batch_size"],
                            ascending=[True, True, False, True, True], kind="stable")
    return rows.groupby("offer", sort=False).head(1)


def recommend(resolved: Resolved, workload_name: str | None = None) -> Recommendation:
    """Rank every instance for one workload of the scenario (the first one unless named)."""
    sc = resolved.scenario
    names = [x.name for x in sc.workloads]
    if workload_name is not None and workload_name not in names:
        raise UnknownNameError(f"unknown workload {workload_name!r}{suggest(workload_name, names)} (workloads: "
                               f"{', '.join(names)})", path=resolved.path, field="--workload")
    w = sc.workloads[names.index(workload_name)] if workload_name is not None else sc.workloads[0]
    single = sc.model_copy(update={"workloads": [w], "quotas": []})
    cands = build_candidates(single, resolved.instances, resolved.models, resolved.calibration, prune=False,
                             planning=False)
    frames = [f for f in (cands.table.assign(meets_slo=True, rejection="", rejection_bound=np.nan),
                          cands.rejected.assign(meets_slo=False)) if not f.empty]
    rows = _job_cost(pd.concat(frames, ignore_index=True), w, sc.billing)
    fits = rows[offload_fits(rows["offload_ratio"], rows["min_offload_ratio"])
                & (rows["rejection"] != Rejection.HOST_MEMORY.value)]
    # per offering: the best SLO-meeting configuration, else the best configuration that fits at all
    ranked = pd.concat([_best_per_offering(fits[fits["meets_slo"]]),
                        _best_per_offering(fits[~fits["meets_slo"] & ~fits["offer"].isin(fits.loc[fits["meets_slo"], "offer"])])])
    table = ranked.sort_values(["meets_slo", "total_usd", "vm_tokens_per_s", "offer"],
                               ascending=[False, True, False, True], kind="stable").reset_index(drop=True)
    ok = table[table["meets_slo"]]
    no_off = fits[fits["offload_ratio"] == 0]
    baselines = {
        "infersave": _pick(ok),
        "infersave_without_offload": _pick(_best_per_offering(no_off[no_off["meets_slo"]])
                                           .sort_values(["total_usd", "vm_tokens_per_s"], ascending=[True, False])),
        "max_performance": _pick(_best_per_offering(no_off).sort_values(["vm_tokens_per_s", "unit_usd_per_hour"],
                                                                        ascending=[False, True])),
        "cheapest_fit": _pick(_best_per_offering(no_off).sort_values(["unit_usd_per_hour", "vm_tokens_per_s"],
                                                                     ascending=[True, False])),
    }
    status = "ok" if not ok.empty else "no_instance_meets_slo"
    return Recommendation(workload=w.name, status=status, choice=baselines["infersave"], baselines=baselines,
                          candidates=table)


def _pick(frame: pd.DataFrame) -> Pick | None:
    if frame.empty:
        return None
    row = frame.iloc[0]
    return {c: (row[c].item() if hasattr(row[c], "item") else row[c]) for c in COLUMNS if c in row}


def saving_pct(ours: Pick | None, theirs: Pick | None) -> float:
    if not ours or not theirs or not theirs["total_usd"]:
        return math.nan
    return 100.0 * (theirs["total_usd"] - ours["total_usd"]) / theirs["total_usd"]
