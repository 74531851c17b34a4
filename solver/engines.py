"""Serving-engine profiles (``catalogs/engines.csv``): what differs between vLLM, SGLang, TensorRT-LLM, TGI and
an offloading engine in the style of FlexGen / HF Accelerate.

A profile holds the engine's scheduling (continuous batching with a per-iteration token budget and chunked
prefill, or static batches), its default caps, whether it can keep KV cache in host memory, the prior of its
per-iteration overhead (CUDA graphs or eager kernel launches) and the efficiency of its quantised kernels.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError

from .catalog import read_csv_rows, suggest
from .errors import CatalogError, UnknownNameError, first_problem
from .resources import catalog_dir
from .schema import Frozen

ENGINE_FILE = catalog_dir() / "engines.csv"
DEFAULT_ENGINE = "vllm"
UNLIMITED_TOKENS = 1 << 30
FALLBACK_MAX_SEQS = 256  # where an engine's cap depends on memory (SGLang): vLLM's default


class EngineProfile(Frozen):
    """One serving engine's behaviour, as the performance model needs it."""

    engine: str = Field(min_length=1)
    scheduling: Literal["continuous", "static"]
    cuda_graphs: bool
    step_overhead_us: float = Field(ge=0, description="prior: fixed cost per iteration (scheduler, sampling)")
    layer_overhead_us: float = Field(ge=0, description="prior: per layer per iteration (kernel launches)")
    max_num_batched_tokens: int | None = Field(default=None, gt=0,
                                               description="token budget of one iteration (empty: unlimited)")
    prefill_chunk_tokens: int | None = Field(default=None, gt=0, description="largest prompt chunk per iteration")
    max_num_seqs_default: int | None = Field(default=None, gt=0)
    supports_kv_offload: bool
    int4_weight_kernel_efficiency: float = Field(gt=0, le=1)
    fp8_kernel_efficiency: float | None = Field(default=None, gt=0, le=1)
    source: str = Field(min_length=1)
    date: str = ""
    notes: str = ""

    @property
    def token_budget(self) -> int:
        """Tokens one iteration may carry; a static engine prefills the whole batch in one pass."""
        return self.max_num_batched_tokens or UNLIMITED_TOKENS

    @property
    def chunk_tokens(self) -> int:
        return min(self.prefill_chunk_tokens or self.token_budget, self.token_budget)

    @property
    def default_max_seqs(self) -> int:
        return self.max_num_seqs_default or FALLBACK_MAX_SEQS

    def kernel_efficiency(self, dtype: str) -> float:
        """Achieved fraction of the roofline of quantised weight kernels relative to fp16 ones."""
        if dtype in ("int4", "int8"):
            return self.int4_weight_kernel_efficiency
        if dtype == "fp8":
            return self.fp8_kernel_efficiency or 1.0
        return 1.0


def _bool(raw: str) -> bool:
    if raw.lower() in ("true", "yes"):
        return True
    if raw.lower() in ("false", "no"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")  # not 1 or 0: a number in a boolean column is a slip


def load_engines(path: Path = ENGINE_FILE) -> dict[str, EngineProfile]:
    """Every profile in the file, validated; errors name file, row and column."""
    header, rows = read_csv_rows(path)
    fields = EngineProfile.model_fields
    profiles: dict[str, EngineProfile] = {}
    for row in rows:
        where = f"row {row['__row__']}"
        data: dict[str, object] = {}
        for key, raw in row.items():
            if key == "__row__" or key not in fields:
                continue
            if raw == "":
                continue
            try:
                data[key] = _bool(raw) if key in ("cuda_graphs", "supports_kv_offload") else raw
            except ValueError as exc:
                raise CatalogError(str(exc), path=str(path), where=where, field=key) from None
        try:
            profile = EngineProfile.model_validate(data)
        except ValidationError as exc:
            field, msg, _ = first_problem(exc)
            raise CatalogError(msg, path=str(path), where=where, field=field) from None
        if profile.engine in profiles:
            raise CatalogError(f"duplicate engine {profile.engine!r}", path=str(path), where=where, field="engine")
        profiles[profile.engine] = profile
    return profiles


@lru_cache(maxsize=None)
def engine_profiles() -> dict[str, EngineProfile]:
    return load_engines()


def find_engine(name: str | None) -> EngineProfile:
    """The profile of ``name`` (default: vLLM); unknown names get suggestions."""
    profiles = engine_profiles()
    key = (name or DEFAULT_ENGINE).lower()
    if key not in profiles:
        raise UnknownNameError(f"unknown engine {name!r}{suggest(str(name), sorted(profiles))}", field="engine")
    return profiles[key]
