"""InferSave: the cheapest cloud GPU VMs, batch sizes and KV-cache offloading for LLM workloads within SLOs."""
from __future__ import annotations

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
from .plan import plan
from .plan_types import Plan
from .predict import Prediction, predict
from .recommend import Recommendation, recommend
from .scenario import Resolved, load_scenario, parse_scenario, resolve
from .verify import verify

__all__ = ["CatalogError", "InfeasibleError", "InputError", "NoCandidatesError", "Plan", "PlannerError",
           "Prediction", "Recommendation", "Resolved", "ScenarioError", "SolverFailure", "UnknownNameError",
           "load_scenario", "parse_scenario", "plan", "predict", "recommend", "resolve", "verify"]
