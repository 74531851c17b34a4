"""InferSave: the cheapest cloud GPU VMs, batch sizes and KV-cache offloading for LLM workloads within SLOs.

The public names below are loaded on first use (PEP 562), so ``import solver`` and the CLI's start do not pay
for pandas and the solver back ends until a plan is made.
"""
from __future__ import annotations

import importlib
import sys
import types
import typing

from .errors import (
    CatalogError,
    InfeasibleError,
    InputError,
    NoCandidatesError,
    PlannerError,
    ScenarioError,
    SolverFailure,
    UnknownNameError,
)

if typing.TYPE_CHECKING:  # pragma: no cover
    from .plan import plan
    from .plan_types import Plan
    from .predict import Prediction, predict
    from .recommend import Recommendation, recommend
    from .scenario import Resolved, load_scenario, parse_scenario, resolve
    from .verify import verify

_LAZY = {"plan": "plan", "Plan": "plan_types", "Prediction": "predict", "predict": "predict",
         "Recommendation": "recommend", "recommend": "recommend", "Resolved": "scenario", "load_scenario": "scenario",
         "parse_scenario": "scenario", "resolve": "scenario", "verify": "verify"}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """``solver.plan``, ``solver.predict``, ``solver.recommend`` and ``solver.verify`` name both a submodule and
    its public function; the function wins (as an eager ``from .plan import plan`` made it), even after the
    import system has loaded the submodule and tried to bind it here."""

    def __setattr__(self, name: str, value: typing.Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__all__ = ["CatalogError", "InfeasibleError", "InputError", "NoCandidatesError", "Plan", "PlannerError",
           "Prediction", "Recommendation", "Resolved", "ScenarioError", "SolverFailure", "UnknownNameError",
           "load_scenario", "parse_scenario", "plan", "predict", "recommend", "resolve", "verify"]
