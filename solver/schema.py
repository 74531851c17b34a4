"""Validated domain objects: hardware, model cards, workloads and scenarios.

Every model is frozen and forbids unknown fields, so a typo in a scenario is an error, not a silent default.
Units are in the field names (``_gib``, ``_gb_s``, ``_s``, ``usd_per_hour``).
"""
from __future__ import annotations

import datetime
import math
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .field_checks import (HOURS_PER_DAY, check_batch_sizes, check_boolean, check_bounds, check_names,
                           check_plain_number, check_rate_profile)

Dtype = Literal["fp32", "fp16", "bf16", "fp8", "int8", "int4"]
DTYPE_BYTES: dict[str, float] = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
Pricing = Literal["on_demand", "spot", "both"]
Statistic = Literal["mean", "p50", "p90", "p95", "p99"]
# A lognormal with mean m has p90 / m = exp(1.2816 s - s^2 / 2) <= exp(1.2816^2 / 2) = 2.27 (at s = 1.2816)
LOGNORMAL_MAX_P90_RATIO = 2.27
Billing = Literal["per_second", "hourly"]


def default_kv_dtype(dtype: str, kv_dtype: str | None = None) -> str:
    """The KV-cache precision: as given, else the weights' (integer-quantised weights keep an fp16 cache)."""
    return kv_dtype or ("fp16" if dtype in ("int8", "int4") else dtype)


Name = Field(default=None, min_length=1, pattern=r"\S")


def _numeric(annotation: object) -> bool:
    """Whether a field's type is a number, a list of numbers or an optional one (and never a boolean)."""
    args = typing.get_args(annotation)
    if annotation is bool or bool in args:
        return False
    if annotation in (int, float):
        return True
    return any(_numeric(a) for a in args if a is not type(None))


def _boolean(annotation: object) -> bool:
    """Whether a field's type is a boolean or an optional one."""
    return annotation is bool or (bool in typing.get_args(annotation) and
                                  all(a in (bool, type(None)) for a in typing.get_args(annotation)))


class Frozen(BaseModel):
    """The one strict base of every pydantic model here: frozen, no unknown fields, no NaN or infinity (pydantic
    lets NaN through ``gt``/``ge`` checks otherwise; ``allow_inf_nan=False`` names the field that holds one)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: object, info: ValidationInfo) -> object:
        # YAML reads yes/no/on/off/true as booleans, and pydantic would take them as 1 and 0
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _numeric(field.annotation):
            items = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(v, bool) for v in items):
                raise ValueError("expected a number, got a boolean (true/false/yes/no/on/off)")
            for v in items:  # and, from a CSV cell or quoted YAML, not "1_0", " 5" or other scripts' digits
                check_plain_number(v)
        elif field is not None and _boolean(field.annotation):
            check_boolean(value)  # nor a number where a boolean is expected
        return value

    @model_validator(mode="before")
    @classmethod
    def _dates_as_text(cls, data: object) -> object:
        # YAML reads an unquoted date as a date; the cards keep it as text
        if isinstance(data, dict) and isinstance(data.get("retrieved"), (datetime.date, datetime.datetime)):
            data = {**data, "retrieved": data["retrieved"].isoformat()}
        return data


class GPUSpec(Frozen):
    """One GPU model's datasheet figures (per GPU)."""

    gpu: str
    architecture: str = ""
    memory_gib: float = Field(gt=0)
    hbm_bandwidth_gb_s: float = Field(gt=0)
    fp16_tflops_dense: float = Field(gt=0)
    fp8_tflops_dense: float | None = Field(default=None, gt=0)
    int8_tops_dense: float | None = Field(default=None, gt=0)
    fp32_tflops: float | None = Field(default=None, gt=0)
    host_link: str = ""
    host_link_gb_s: float = Field(gt=0)
    interconnect: str = ""
    interconnect_gb_s: float = Field(gt=0)
    source: str = Field(min_length=1)
    retrieved: str = ""

    def peak_tflops(self, dtype: str) -> float:
        """Dense tensor-core peak for the compute precision a weight dtype implies (FP8 only where supported)."""
        if dtype == "fp8" and self.fp8_tflops_dense:
            return self.fp8_tflops_dense
        return self.fp16_tflops_dense


MAX_BUCKETS = 256  # request-size buckets per workload: 500 took ~30 s to plan on 2 cores, all of it candidates
MIN_USD_PER_HOUR, MAX_USD_PER_HOUR = 1e-6, 100_000.0  # a catalog price outside this is a unit slip
MAX_GPUS_PER_VM = 1024  # a rack-scale offering (72 GPUs) with room to spare


class Instance(Frozen):
    """One rentable VM offering: a type in a region, with its prices."""

    cloud: str = Field(min_length=1)
    instance_type: str = Field(min_length=1, pattern=r"\S")
    gpu: str = Field(min_length=1)
    # plausibility bounds, far beyond any real offering (a row of 10^9 GPUs or 10^300 USD/h is a typo)
    gpu_count: int = Field(gt=0, le=MAX_GPUS_PER_VM)
    vcpus: float = Field(gt=0, le=100_000)
    host_mem_gib: float = Field(gt=0, le=1_000_000)
    usd_per_hour: float = Field(ge=MIN_USD_PER_HOUR, le=MAX_USD_PER_HOUR)
    spot_usd_per_hour: float | None = Field(default=None, ge=MIN_USD_PER_HOUR, le=MAX_USD_PER_HOUR)
    region: str = Field(min_length=1, pattern=r"\S")
    source: str = ""


class ModelCard(Frozen):
    """Architecture of one LLM, as in its Hugging Face config.json."""

    name: str = Field(min_length=1)
    hf_id: str = ""
    aliases: list[str] = Field(default_factory=list)
    family: str = ""
    # plausibility bounds, far beyond any published model (10^30 layers is a typo, not a model)
    num_layers: int = Field(gt=0, le=10_000)
    hidden_size: int = Field(gt=0, le=1_048_576)
    intermediate_size: int = Field(gt=0, le=16_777_216)
    num_attention_heads: int = Field(gt=0, le=65_536)
    num_key_value_heads: int = Field(gt=0, le=65_536)
    head_dim: int = Field(gt=0, le=65_536)
    vocab_size: int = Field(gt=0, le=100_000_000)
    max_position_embeddings: int = Field(gt=0, le=1_000_000_000)
    ffn_gated: bool = True
    tie_word_embeddings: bool = False
    num_experts: int = Field(default=1, gt=0, le=1_000_000)
    num_experts_per_token: int = Field(default=1, gt=0, le=1_000_000)
    num_parameters: int | None = Field(default=None, gt=0, le=10**15)
    torch_dtype: str = "float16"
    source: str = Field(min_length=1)
    retrieved: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.num_experts_per_token > self.num_experts:
            raise ValueError("num_experts_per_token exceeds num_experts")
        return self

    # Derived sizes (parameters, not bytes). Attention: Q and O are h x d_attn, K and V are h x kv_dim.
    @property
    def attn_params_per_layer(self) -> int:
        d_attn = self.num_attention_heads * self.head_dim
        kv_dim = self.num_key_value_heads * self.head_dim
        return 2 * self.hidden_size * d_attn + 2 * self.hidden_size * kv_dim

    @property
    def expert_params(self) -> int:
        """Parameters of one FFN expert (the whole FFN for dense models)."""
        return (3 if self.ffn_gated else 2) * self.hidden_size * self.intermediate_size

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)

    @property
    def total_params(self) -> int:
        """Published count when known, else from the architecture (norms and biases are negligible)."""
        if self.num_parameters:
            return self.num_parameters
        per_layer = self.attn_params_per_layer + self.num_experts * self.expert_params
        return self.num_layers * per_layer + self.embedding_params

    @property
    def matmul_params_per_token(self) -> int:
        """Parameters one token multiplies through: active experts only, plus the LM head."""
        per_layer = self.attn_params_per_layer + self.num_experts_per_token * self.expert_params
        return self.num_layers * per_layer + self.vocab_size * self.hidden_size

    @property
    def expert_params_total(self) -> int:
        """All routed-expert parameters (zero for dense models, whose FFN is always read)."""
        return self.num_layers * self.num_experts * self.expert_params if self.num_experts > 1 else 0

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """K and V for every layer: 2 * layers * kv_heads * head_dim * bytes (GQA-aware)."""
        return 2 * self.num_layers * self.num_key_value_heads * self.head_dim * DTYPE_BYTES[kv_dtype]


class SLO(Frozen):
    """Service-level objective of a workload; every bound given is enforced."""

    max_ttft_s: float | None = Field(default=None, gt=0)
    max_tpot_s: float | None = Field(default=None, gt=0)
    max_e2e_s: float | None = Field(default=None, gt=0)
    min_tokens_per_s: float | None = Field(default=None, gt=0, description="per replica, input+output (paper's TPS)")
    percentile: Statistic = Field(default="mean", description="statistic every latency bound applies to")
    ttft_percentile: Statistic | None = None
    tpot_percentile: Statistic | None = None
    e2e_percentile: Statistic | None = None

    _bounds = field_validator("max_ttft_s", "max_tpot_s", "max_e2e_s", "min_tokens_per_s")(check_bounds)

    def percentiles(self) -> dict[str, str]:
        """ttft/tpot/e2e -> the statistic each bound applies to (per-metric fields override ``percentile``)."""
        return {"ttft": self.ttft_percentile or self.percentile, "tpot": self.tpot_percentile or self.percentile,
                "e2e": self.e2e_percentile or self.percentile}


class Bucket(Frozen):
    """One request-size bucket of a traffic mix: representative lengths and a share of the rate."""

    input_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)
    fraction: float = Field(gt=0, le=1)

    _bounds = field_validator("input_tokens", "output_tokens")(check_bounds)


class Workload(Frozen):
    """One stream of requests for one model: online (a rate) or offline (a job with a deadline)."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    mode: Literal["online", "offline"] = "online"
    input_tokens: int | None = Field(default=None, gt=0)
    output_tokens: int | None = Field(default=None, gt=0)
    buckets: list[Bucket] | None = None
    input_tokens_p90: int | None = Field(default=None, gt=0, description="spread: lengths are lognormal with the "
                                         "given mean and this p90 (simulation; the planner sizes for the mean)")
    output_tokens_p90: int | None = Field(default=None, gt=0)
    request_rate_per_s: float | None = Field(default=None, gt=0)
    num_requests: int | None = Field(default=None, gt=0)
    deadline_hours: float | None = Field(default=None, gt=0)
    slo: SLO = Field(default_factory=SLO)
    engine: str = Field(default="vllm", min_length=1, description="serving engine profile (catalogs/engines.csv)")
    peak_factor: float | None = Field(default=None, ge=1, le=100,
                                      description="plan for this multiple of the mean rate (default: scenario's)")
    dtype: Dtype = "fp16"
    kv_dtype: Dtype | None = None
    batch_sizes: list[int] | None = None
    pricing: Pricing | None = None
    instance_types: list[str] | None = Field(default=None, description="restrict to these types")
    min_replicas: int | None = Field(default=None, ge=1, description="online: at least this many VMs that can "
                                     "serve the workload (in pools carrying load)")
    max_replicas: int | None = Field(default=None, ge=1, description="online: at most this many such VMs")
    spread: list[str] | None = Field(default=None, min_length=1, description="online: at least one such VM "
                                     "in each of these regions (N+1 redundancy across regions)")
    rate_profile: list[float] | None = Field(default=None, description="online: requests/s in each hour 0..23 "
                                             "of a day (instead of request_rate_per_s, which becomes its peak)")
    rate_profile_csv: str | None = Field(default=None, min_length=1, description="a CSV hour,rate_per_s (hours "
                                         "0..23) relative to the scenario file; read into rate_profile on load")

    _bounds = field_validator("input_tokens", "output_tokens", "request_rate_per_s", "num_requests",
                              "deadline_hours", "min_replicas", "max_replicas")(check_bounds)
    _batches = field_validator("batch_sizes")(check_batch_sizes)
    _names = field_validator("instance_types")(check_names)
    _profile = field_validator("rate_profile")(check_rate_profile)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        # plans name a pool model|offer|... and a bucket of a workload name#k, so neither character may hide here
        if not value.strip() or any(ch in value for ch in "|#") or not value.isprintable():
            raise ValueError(f"{value!r}: a workload name is visible text without '|', '#' or control characters")
        return value

    @model_validator(mode="before")
    @classmethod
    def _peak_of_profile(cls, data: Any) -> Any:
        """A rate profile sets request_rate_per_s to its peak (the rate candidates and SLO promises are sized
        for); a request_rate_per_s given beside it must be that peak."""
        if not isinstance(data, dict) or not isinstance(data.get("rate_profile"), list):
            return data
        values = data["rate_profile"]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                 for v in values):
            return data  # the field validator names the problem
        peak = float(max(values))
        given = data.get("request_rate_per_s")
        if given is None and peak > 0:
            return {**data, "request_rate_per_s": peak}
        if isinstance(given, (int, float)) and not math.isclose(float(given), peak, rel_tol=1e-9):
            raise ValueError(f"request_rate_per_s {given} differs from the rate_profile's peak {peak:g}: give one")
        return data

    @field_validator("buckets", mode="before")
    @classmethod
    def _few_buckets(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > MAX_BUCKETS:
            raise ValueError(f"{len(value):,} buckets: at most {MAX_BUCKETS} (each bucket is a demand with its own "
                             "candidates and MILP rows); merge neighbouring sizes")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        if self.buckets is None and (self.input_tokens is None or self.output_tokens is None):
            raise ValueError("give input_tokens and output_tokens, or buckets")
        if self.buckets is not None:
            if self.input_tokens is not None or self.output_tokens is not None:
                raise ValueError("give either input_tokens/output_tokens or buckets, not both")
            if abs(sum(b.fraction for b in self.buckets) - 1.0) > 1e-6:
                raise ValueError("bucket fractions must sum to 1")
        for name, mean, p90 in (("input_tokens", self.input_tokens, self.input_tokens_p90),
                                 ("output_tokens", self.output_tokens, self.output_tokens_p90)):
            if p90 is None:
                continue
            if mean is None:
                raise ValueError(f"{name}_p90 needs {name} (the mean); buckets carry their own sizes")
            if not mean < p90 <= LOGNORMAL_MAX_P90_RATIO * mean:
                raise ValueError(f"{name}_p90 must lie above the mean {mean} and at most "
                                 f"{LOGNORMAL_MAX_P90_RATIO:.2f} x it (a lognormal's p90/mean), got {p90}")
        if self.mode == "online" and self.request_rate_per_s is None and self.num_requests is None:
            raise ValueError("an online workload needs request_rate_per_s (or num_requests for a one-off run)")
        if self.mode == "offline" and (self.num_requests is None or self.deadline_hours is None):
            raise ValueError("an offline workload needs num_requests and deadline_hours")
        if self.mode == "offline" and (self.min_replicas or self.max_replicas or self.spread):
            raise ValueError("min_replicas, max_replicas and spread apply to online workloads only")
        if self.min_replicas and self.max_replicas and self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas exceeds max_replicas")
        if self.rate_profile_csv is not None and self.rate_profile is None:
            raise ValueError("rate_profile_csv is read when the scenario file is loaded (load_scenario); "
                             "from Python give rate_profile")
        if self.rate_profile is not None and self.mode != "online":
            raise ValueError("rate_profile applies to online workloads only")
        return self

    def hourly_factors(self) -> list[float]:
        """Each hour's rate as a fraction of the peak rate: the profile over its peak, or 24 ones."""
        if self.rate_profile is None:
            return [1.0] * HOURS_PER_DAY
        peak = max(self.rate_profile)
        return [v / peak for v in self.rate_profile]

    @property
    def effective_kv_dtype(self) -> str:
        return default_kv_dtype(self.dtype, self.kv_dtype)

    def size_mix(self) -> list[Bucket]:
        """The traffic as buckets; a single-size workload is one bucket of fraction 1."""
        if self.buckets is not None:
            return list(self.buckets)
        assert self.input_tokens is not None and self.output_tokens is not None  # validated above
        return [Bucket(input_tokens=self.input_tokens, output_tokens=self.output_tokens, fraction=1.0)]


class Quota(Frozen):
    """Availability limit: at most max_instances VMs (or max_gpus GPUs) matching every given key."""

    instance_type: str | None = Name
    region: str | None = Name
    cloud: str | None = Name
    gpu: str | None = Name
    pricing: Literal["on_demand", "spot"] | None = None
    max_instances: int | None = Field(default=None, ge=0)
    max_gpus: int | None = Field(default=None, ge=0)

    _bounds = field_validator("max_instances", "max_gpus")(check_bounds)

    @model_validator(mode="after")
    def _one_limit(self) -> Quota:
        if (self.max_instances is None) == (self.max_gpus is None):
            raise ValueError("a quota needs exactly one of max_instances or max_gpus")
        return self


class Settings(Frozen):
    """Engine settings a scenario may override; defaults are what a serving engineer would pick."""

    batch_sizes: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128])
    offload_step: float = Field(default=0.1, gt=0, le=1, description="discretisation of the KV offload ratio")
    allow_offload: bool = True
    gpu_memory_utilization: float = Field(default=0.90, gt=0, le=1)
    host_memory_utilization: float = Field(default=0.80, gt=0, le=1)
    prefill_chunk_tokens: int = Field(default=8192, gt=0)
    max_tensor_parallel: int = Field(default=8, gt=0)

    _bounds = field_validator("offload_step", "prefill_chunk_tokens", "max_tensor_parallel")(check_bounds)
    _batches = field_validator("batch_sizes")(check_batch_sizes)


class Scenario(Frozen):
    """A fleet planning problem: workloads, where they may run, and the business limits."""

    name: str = "scenario"
    description: str = ""
    workloads: list[Workload] = Field(min_length=1)
    catalogs: list[str] | None = Field(default=None, description="catalog CSVs; default: all shipped")
    clouds: list[str] | None = None
    regions: list[str] | None = None
    instance_types: list[str] | None = None
    pricing: Pricing = "on_demand"
    billing: Billing = "per_second"
    horizon_hours: float = Field(default=24.0, gt=0, description="online $/h is multiplied by this")
    share_replicas: bool = True
    quotas: list[Quota] = Field(default_factory=list)
    budget_usd_per_hour: float | None = Field(default=None, gt=0)
    budget_usd: float | None = Field(default=None, gt=0)
    max_instance_types: int | None = Field(default=None, gt=0)
    max_spot_share: float | None = Field(default=None, ge=0, le=1,
                                         description="at most this fraction of the fleet's GPU-hours on spot VMs "
                                                     "(an online VM: the horizon; an offline one: its billed hours)")
    calibration: str | None = None
    confidence: float = Field(default=0.5, ge=0.5, lt=1.0,
                              description="probability, given the model's measured error, that each SLO holds")
    peak_factor: float = Field(default=1.0, ge=1, le=100, description="plan online rates at peak = factor x mean")
    settings: Settings = Field(default_factory=Settings)
    commitment_discount: float | None = Field(
        default=None, ge=0, lt=1, description="1-year commitment discount for on-demand offerings whose family has "
        "no row in catalogs/commitments.csv (e.g. a negotiated rate); None: only the catalog's commitments")
    commitment_price_scale: float = Field(default=1.0, gt=0, le=10,
                                          description="multiplies every commitment price (sweep commitment_discount)")
    min_run_hours: int | None = Field(default=None, ge=1, le=24, description="hourly plans: a burst VM, once "
                                      "started, runs at least this many hours (the day repeats)")

    _bounds = field_validator("horizon_hours", "budget_usd_per_hour", "budget_usd", "max_instance_types")(check_bounds)
    _names = field_validator("catalogs", "clouds", "regions", "instance_types")(check_names)

    @model_validator(mode="after")
    def _unique_names(self) -> Scenario:
        first = {w.name: i for i, w in reversed(list(enumerate(self.workloads)))}
        for i in (i for i, w in enumerate(self.workloads) if first[w.name] != i):
            raise ValueError(f"workloads[{i}].name: duplicate workload name {self.workloads[i].name!r}")
        clash = (["max_spot_share"] if self.max_spot_share is not None else []) + [  # named: its line is found
            f"workloads[{i}].{key}" for i, w in enumerate(self.workloads) for key in ("min_replicas", "spread")
            if getattr(w, key)]
        if self.hourly and clash:
            raise ValueError(f"{clash[0]}: does not combine with a rate_profile yet (max_spot_share, min_replicas "
                             "and spread count VMs that the hourly plan varies); drop one of them")
        return self

    @property
    def hourly(self) -> bool:
        """Plan per hour of a day (base + burst VMs): some workload gives a rate profile."""
        return any(w.rate_profile is not None for w in self.workloads)
