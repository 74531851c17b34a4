"""Settings read from the environment (``INFERSAVE_WORKERS``, ``INFERSAVE_CHECKPOINT_S``), checked: an unreadable
value is bad input naming the variable. Light on purpose: the CLI checks them before every command."""
from __future__ import annotations

import os

from .errors import InputError


def env_number(name: str, default: float, *, whole: bool, low: float, high: float) -> float:
    """The environment variable ``name`` as a number in [low, high] (``default`` when unset or empty); anything
    else is ``InputError`` naming the variable (an unreadable setting is bad input, not an internal error)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (low <= value <= high) or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise InputError(f"expected {kind} from {low:g} to {high:g}, got {raw!r}", field=f"environment {name}")
    return value


def workers_cap(default: int) -> int:
    """``INFERSAVE_WORKERS``: the most worker processes to start (``default`` when unset)."""
    return int(env_number("INFERSAVE_WORKERS", default, whole=True, low=1, high=1024))


def checkpoint_every_s() -> float:
    """``INFERSAVE_CHECKPOINT_S``: the least time between two writes of a sweep's partial table (1 s when unset)."""
    return env_number("INFERSAVE_CHECKPOINT_S", 1.0, whole=False, low=0.0, high=86_400.0)


def check_environment() -> None:
    """The settings read from the environment, checked once before a command runs (a sweep's workers would each
    fail on them otherwise)."""
    workers_cap(1)
    checkpoint_every_s()
