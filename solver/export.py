"""From a plan to a running fleet: SkyPilot YAML per pool, or vLLM command lines (``infersave export``).

One pool of the plan (identical VMs running one model with one tensor-parallel size, batch size and KV offload
ratio on one offering) becomes one SkyPilot file:

* **online** pool -> a SkyServe service: ``service.replicas`` = the pool's VM count, a readiness probe on vLLM's
  ``/v1/models``, and ``run: vllm serve <hf_id> ...``;
* **offline** pool -> a task with ``num_nodes`` = the pool's VM count; each node runs ``vllm run-batch`` on its
  shard of the job's requests (``$INFERSAVE_INPUT.<node rank>``, OpenAI batch format).

Engine arguments come from the plan: ``--tensor-parallel-size`` = tp; ``--data-parallel-size`` = GPUs per VM / tp
when a VM holds several engine replicas (the planner counts ``gpus // tp`` replicas per VM); ``--max-num-seqs``
= the batch size (the concurrency cap the latency prediction assumed); ``--max-model-len`` = the longest
input + output of the pool's traffic; KV offloading sized from the offload ratio: ``ratio x KV bytes of a full
batch at that length``. vLLM >= 0.11 takes it as ``--kv-offloading-backend native --kv-offloading-size GiB``
(total per engine, over its tp ranks); older vLLM as ``--swap-space GiB`` per GPU (``--offload-flag
swap-space``; that is swap space for preempted sequences, the nearest older equivalent). ``--cpu-offload-gb``
offloads *weights*, which the planner never does, so it is never emitted.
"""
from __future__ import annotations

import dataclasses
import math
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from .catalog import find_model
from .errors import InputError, PlannerError
from .io import write_texts
from .planfile import PlanView, PoolView, check_view
from .provenance import caption
from .scenario import load_scenario

OFFLOAD_FLAGS = ("kv-offloading", "swap-space")
SKYPILOT_CLOUDS = {"aws", "gcp", "azure", "oci", "lambda", "runpod", "kubernetes", "ibm", "scp", "vsphere", "cudo",
                   "fluidstack", "paperspace", "do", "nebius", "vast"}
PORT = 8000
GIB = 2**30
READINESS_DELAY_S = 1200  # SkyServe's default; large models take minutes to download and load


@dataclasses.dataclass(frozen=True)
class PoolLaunch:
    """Everything needed to start one pool."""

    name: str
    pool: PoolView
    model: str
    hf_id: str
    workloads: tuple[str, ...]
    tensor_parallel: int
    data_parallel: int
    batch_size: int
    max_model_len: int
    offload_ratio: float
    offload_gib_per_engine: int  # KV bytes moved to host memory for one engine replica, rounded up

    @property
    def online(self) -> bool:
        return self.pool.mode == "online"


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the ``run`` script) as ``|`` blocks, as people write SkyPilot YAML by hand."""


_Dumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v,
                                                             style="|" if "\n" in v else None))


def _slug(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")


def _scenario_lengths(plan: PlanView, scenario: str | Path | None, path: str) -> tuple[dict[str, int], dict[str, str]]:
    """Longest input + output per workload, and its KV dtype, from the scenario file (if given); the plan's pools
    and assignments are checked to hang together, and with a scenario to be its workloads and catalog instances."""
    resolved = None if scenario is None else load_scenario(scenario)
    check_view(plan, path, resolved)
    if resolved is None:
        return {}, {}
    sc = resolved.scenario
    lengths = {w.name: max(b.input_tokens + b.output_tokens for b in w.size_mix()) for w in sc.workloads}
    return lengths, {w.name: w.effective_kv_dtype for w in sc.workloads}


def pool_launches(plan: PlanView, *, scenario: str | Path | None = None, path: str = "<plan>",
                  ) -> tuple[list[PoolLaunch], dict[str, str]]:
    """One ``PoolLaunch`` per pool that carries traffic; returns (launches, {skipped pool: reason}).

    Raises:
        InputError: a pool's model is unknown or has no Hugging Face id, or its assignments disagree.
    """

    lengths, kv_dtypes = _scenario_lengths(plan, scenario, path)
    launches, skipped = [], {}
    for k, pool in enumerate(plan.pools):
        rows = plan.pool_assignments(pool.pool)
        if pool.count <= 0 or not rows:
            skipped[pool.pool] = "carries no traffic in the plan"
            continue
        if pool.mode == "offline" and not pool.vm_hours:
            skipped[pool.pool] = "billed for 0 VM-hours in the plan"
            continue
        first = rows[0]
        keys = {(a.model, a.tensor_parallel, a.batch_size, round(a.offload_ratio, 6)) for a in rows}
        if len(keys) > 1:
            raise InputError(f"pool {pool.pool!r} mixes configurations {sorted(keys)}", path=path, field="assignments")
        try:
            card = find_model(first.model)
        except PlannerError as exc:
            raise InputError(str(exc).split(": ", 1)[-1], path=path, field=f"pools.{k}.model") from None
        if not card.hf_id:
            raise InputError(f"model card {card.name!r} has no hf_id", path=path, field=f"pools.{k}.model")
        length = max(lengths.get(a.workload) or a.context_tokens for a in rows)
        if length <= 0:
            raise InputError(f"pool {pool.pool!r}: cannot tell the context length; pass --scenario", path=path)
        length = min(length, card.max_position_embeddings)
        kv_dtype = kv_dtypes.get(first.workload, "fp16")
        tp = first.tensor_parallel
        offload = card.kv_bytes_per_token(kv_dtype) * first.batch_size * length * first.offload_ratio
        name = f"p{k:02d}-{_slug(card.name)}-{_slug(pool.instance_type)}-{'spot' if pool.pricing == 'spot' else 'od'}"
        launches.append(PoolLaunch(
            name=name[:63].rstrip("-"), pool=pool, model=card.name, hf_id=card.hf_id,
            workloads=tuple(sorted({a.workload for a in rows})), tensor_parallel=tp,
            data_parallel=max(1, pool.gpu_count // tp), batch_size=first.batch_size, max_model_len=int(length),
            offload_ratio=first.offload_ratio, offload_gib_per_engine=math.ceil(offload / GIB - 1e-9)))
    return launches, skipped


def vllm_args(launch: PoolLaunch, offload_flag: str = "kv-offloading") -> list[str]:
    """Engine arguments shared by ``vllm serve`` and ``vllm run-batch``."""
    args = ["--tensor-parallel-size", str(launch.tensor_parallel)]
    if launch.data_parallel > 1:
        args += ["--data-parallel-size", str(launch.data_parallel)]
    args += ["--max-num-seqs", str(launch.batch_size), "--max-model-len", str(launch.max_model_len)]
    if launch.offload_ratio > 0 and launch.offload_gib_per_engine > 0:
        if offload_flag == "swap-space":
            per_gpu = math.ceil(launch.offload_gib_per_engine / launch.tensor_parallel)
            args += ["--swap-space", str(per_gpu)]
        else:
            args += ["--kv-offloading-backend", "native", "--kv-offloading-size", str(launch.offload_gib_per_engine)]
    return args


def vllm_command(launch: PoolLaunch, offload_flag: str = "kv-offloading") -> list[str]:
    """argv of the pool's engine: ``vllm serve`` (online) or ``vllm run-batch`` on this node's shard (offline)."""
    if launch.online:
        return ["vllm", "serve", launch.hf_id, *vllm_args(launch, offload_flag), "--port", str(PORT)]
    return ["vllm", "run-batch", "-i", "${INFERSAVE_INPUT}.${SKYPILOT_NODE_RANK}", "-o",
            "${INFERSAVE_OUTPUT}.${SKYPILOT_NODE_RANK}", "--model", launch.hf_id, *vllm_args(launch, offload_flag)]


def _shell(argv: list[str]) -> str:
    """Quote for a shell, leaving ``${VAR}`` references expandable."""
    return " ".join(f'"{a}"' if "${" in a else shlex.quote(a) for a in argv)


def skypilot_task(launch: PoolLaunch, offload_flag: str = "kv-offloading") -> dict[str, Any]:
    """The SkyPilot task (offline) or SkyServe service (online) YAML of one pool, as a dict."""
    p = launch.pool
    # no cloud for one SkyPilot does not know (e.g. the paper's catalog): SkyPilot finds it
    resources: dict[str, Any] = {"cloud": p.cloud} if p.cloud in SKYPILOT_CLOUDS else {}
    resources |= {"region": p.region, "instance_type": p.instance_type,
                 "accelerators": f"{p.gpu}:{p.gpu_count}", "use_spot": p.pricing == "spot"}
    task: dict[str, Any] = {"name": launch.name}
    if launch.online:
        resources["ports"] = PORT
        task["service"] = {"readiness_probe": {"path": "/v1/models", "initial_delay_seconds": READINESS_DELAY_S},
                           "replicas": p.count}
    else:
        task["num_nodes"] = p.count
    task["resources"] = resources
    task["envs"] = {"INFERSAVE_POOL": p.pool, "INFERSAVE_WORKLOADS": ",".join(launch.workloads)}
    if not launch.online:
        task["envs"] |= {"INFERSAVE_INPUT": "requests.jsonl", "INFERSAVE_OUTPUT": "results.jsonl"}
    task["setup"] = "pip install vllm"
    task["run"] = _shell(vllm_command(launch, offload_flag)) + "\n"
    return task


def render_skypilot(launch: PoolLaunch, plan: PlanView, offload_flag: str = "kv-offloading") -> str:
    p = launch.pool

    head = [f"# InferSave plan {plan.scenario!r} ({plan.status}), pool {p.pool}",
            f"# {p.count} x {p.instance_type} ({p.gpu_count}x{p.gpu}, {p.pricing}) in {p.cloud}/{p.region}, "
            f"{p.unit_usd_per_hour:.4g} USD/h each",
            f"# workloads: {', '.join(launch.workloads)}; model {launch.model}; offload {launch.offload_ratio:.0%}",
            f"# {caption(plan.provenance)}"]
    if launch.online:
        head.append(f"# run-rate {p.pool_usd_per_hour:.2f} USD/h. Launch: sky serve up -n {launch.name} "
                    f"{launch.name}.yaml --env HF_TOKEN")
    else:
        head.append(f"# one-off job, {p.vm_hours or 0:.2f} VM-hours planned ({p.usd:.2f} USD). Launch: sky launch "
                    f"-c {launch.name} {launch.name}.yaml --env HF_TOKEN --env INFERSAVE_INPUT=... "
                    "(one shard per node: INPUT.0, INPUT.1, ...)")
    body = yaml.dump(skypilot_task(launch, offload_flag), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=1000)
    return "\n".join(head) + "\n" + body


def write_skypilot(plan: PlanView, out_dir: str | Path, launches: list[PoolLaunch],
                   offload_flag: str = "kv-offloading") -> list[Path]:
    """Write ``<out_dir>/<pool name>.yaml`` per launch (each atomically); returns the paths."""

    texts = {Path(out_dir) / f"{launch.name}.yaml": render_skypilot(launch, plan, offload_flag)
             for launch in launches}  # render everything first: a failure leaves nothing half written
    write_texts(texts, "DIR")  # and every target is checked before the first is written
    return list(texts)


def vllm_text(plan: PlanView, launches: list[PoolLaunch], offload_flag: str = "kv-offloading") -> str:
    """Per pool: a comment line and the engine command line (``infersave export --to vllm``)."""
    lines = []
    for launch in launches:
        p = launch.pool
        lines.append(f"# {launch.name}: {p.count} x {p.instance_type} ({p.gpu_count}x{p.gpu}, {p.pricing}, "
                     f"{p.cloud}/{p.region}) for {', '.join(launch.workloads)}")
        lines.append(_shell(vllm_command(launch, offload_flag)))
    return "\n".join(lines) + "\n"


__all__ = ["OFFLOAD_FLAGS", "PoolLaunch", "pool_launches", "render_skypilot", "skypilot_task", "vllm_args",
           "vllm_command", "vllm_text", "write_skypilot"]
