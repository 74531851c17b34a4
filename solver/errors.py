"""Exception tree. Every error carries a one-line, fix-it message that names the file, row and field."""
from __future__ import annotations


class PlannerError(Exception):
    """Base of every error the engine raises on purpose."""

    exit_code = 3


class InputError(PlannerError):
    """Bad input file or argument: names file, row/line and field. Exit code 2."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, where: str | None = None,
                 field: str | None = None) -> None:
        parts = [p for p in (path, where, field) if p]
        prefix = ":".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.path, self.where, self.field, self.message = path, where, field, message


class ScenarioError(InputError):
    """A scenario or sweep file is malformed or inconsistent."""


class CatalogError(InputError):
    """A catalog, model card or calibration file is malformed."""


class UnknownNameError(InputError):
    """An unknown model, GPU, instance or region name; the message lists close matches."""


class NoCandidatesError(PlannerError):
    """Every candidate was filtered out for some workload; carries the nearest misses. Exit code 1."""

    exit_code = 1


class InfeasibleError(PlannerError):
    """The MILP is infeasible; the message names the constraint families at fault. Exit code 1."""

    exit_code = 1


class SolverFailure(PlannerError):
    """Back end missing or crashed, or a limit was hit with no incumbent. Exit code 3."""

    exit_code = 3


def first_problem(exc: Exception) -> tuple[str, str, str]:
    """(dotted field location, message, pydantic error type) of a pydantic ``ValidationError``'s first error,
    the ``Value error, `` prefix of custom validators removed: what a one-line input error reports."""
    err = exc.errors()[0]  # type: ignore[attr-defined]
    loc = ".".join(str(p) for p in err["loc"])
    return loc, str(err["msg"]).removeprefix("Value error, "), str(err["type"])
