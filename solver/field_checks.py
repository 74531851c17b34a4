"""Field checks shared by the schema's models: plausibility bounds with units, batch sizes, names, hourly rate
profiles. Plain functions (pydantic validators wrap them) so each rule is written once."""
from __future__ import annotations

import math
import re

from pydantic import ValidationInfo

# Plausibility bounds (README "Limits"): (lowest, highest, unit). A value outside is a unit slip, not a plan.
MAX_TOKENS = 10_000_000
HOURS_PER_DAY = 24  # a rate profile gives one rate per hour of a day
MAX_BATCH = 65_536
MAX_VMS_PER_POOL = 100_000  # VMs of one pool or replica rule (the planner's own limit on a fleet)
MAX_TENSOR_PARALLEL = 64  # GPUs one model is split over
BOUNDS: dict[str, tuple[float, float, str]] = {
    "input_tokens": (1, MAX_TOKENS, "tokens"), "output_tokens": (1, MAX_TOKENS, "tokens"),
    "request_rate_per_s": (1e-9, 1e6, "requests/s"), "num_requests": (1, 1e10, "requests"),
    "deadline_hours": (1 / 3600, 8760, "h"), "horizon_hours": (1 / 3600, 87_600, "h"),
    "max_ttft_s": (1e-6, 86_400, "s"), "max_tpot_s": (1e-6, 3600, "s"), "max_e2e_s": (1e-6, 7 * 86_400, "s"),
    "min_tokens_per_s": (1e-6, 1e9, "tokens/s"), "budget_usd_per_hour": (1e-6, 1e9, "USD/h"),
    "budget_usd": (1e-6, 1e12, "USD"), "max_instance_types": (1, 10_000, "instance types"),
    "max_instances": (0, 1e7, "VMs"), "max_gpus": (0, 1e8, "GPUs"),
    "prefill_chunk_tokens": (16, 1_048_576, "tokens"), "max_tensor_parallel": (1, MAX_TENSOR_PARALLEL, "GPUs"),
    "offload_step": (0.01, 1, ""), "min_replicas": (1, MAX_VMS_PER_POOL, "VMs"),
    "max_replicas": (1, MAX_VMS_PER_POOL, "VMs"),
}


def _num(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) < 1e13 else f"{x:.4g}"


def check_bounds(value: float | int | None, info: ValidationInfo) -> float | int | None:
    """The plausibility bound of ``info.field_name`` (``BOUNDS``), with the unit in the message."""
    if value is None or info.field_name not in BOUNDS:
        return value
    lo, hi, unit = BOUNDS[info.field_name]
    if not lo <= value <= hi:
        u = f" {unit}" if unit else ""
        side = f"above the plausible maximum of {_num(hi)}" if value > hi else f"below the plausible minimum of {_num(lo)}"
        raise ValueError(f"{_num(value)}{u} is {side}{u}; check the units")
    return value


def check_batch_sizes(value: list[int] | None) -> list[int] | None:
    if value is None:
        return value
    if not value:
        raise ValueError("batch_sizes must be a non-empty list of positive integers")
    for b in value:
        if not 1 <= b <= MAX_BATCH:
            raise ValueError(f"batch size {b} must be between 1 and {MAX_BATCH:,} sequences")
    if len(set(value)) != len(value):
        raise ValueError("batch_sizes lists a batch size twice")
    return value


def check_names(value: list[str] | None) -> list[str] | None:
    if value is not None:
        if not value:
            raise ValueError("give at least one name, or leave the field out")
        for name in value:
            if not name.strip():
                raise ValueError("names must be non-empty")
    return value


def check_rate_profile(value: list[float] | None) -> list[float] | None:
    """Exactly 24 non-negative finite requests/s, not all zero."""
    if value is None:
        return value
    if len(value) != HOURS_PER_DAY:
        raise ValueError(f"expected {HOURS_PER_DAY} hourly rates (hours 0..23), got {len(value)}")
    for h, v in enumerate(value):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"hour {h}: {v!r} is not a non-negative finite rate (requests/s)")
    if max(value) <= 0:
        raise ValueError("every hour's rate is 0: give a positive peak")
    return value


# A number as a data file should write it: ASCII digits, an optional sign, point and exponent (and nan/inf, which
# callers refuse by name as not finite). float() and int() would also take "1_0", other scripts' digits ("١٠")
# and surrounding whitespace: typos in a data file, not numbers.
PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:nan|inf|infinity)",
                          re.IGNORECASE)
PLAIN_INT = re.compile(r"[+-]?[0-9]+")
BOOLEAN_WORDS = ("true", "false", "yes", "no")


def parse_number(text: str) -> float:
    """``float(text)`` of a plainly written number (``PLAIN_NUMBER``); ``ValueError`` for anything else."""
    check_plain_number(text)
    return float(text)


def parse_int(text: str) -> int:
    """``int(text)`` of a plainly written whole number (``PLAIN_INT``); ``ValueError`` for anything else."""
    if not PLAIN_INT.fullmatch(text):
        raise ValueError(f"expected a whole number (ASCII digits, no spaces or '_'), got {text!r}")
    return int(text)


def check_plain_number(value: object) -> None:
    """A text value of a numeric field must be a plainly written number (pydantic would read "1_0" and " 5 ")."""
    if isinstance(value, str) and not PLAIN_NUMBER.fullmatch(value):
        raise ValueError(f"expected a number (ASCII digits, no spaces or '_'), got {value!r}")


def check_boolean(value: object) -> None:
    """A boolean field takes true/false (yes/no), not a number (pydantic would read 1, 0, "1", "on", "t")."""
    if isinstance(value, bool) or value is None:
        return
    if not (isinstance(value, str) and value.lower() in BOOLEAN_WORDS):
        raise ValueError(f"expected true or false, got {value!r}")
