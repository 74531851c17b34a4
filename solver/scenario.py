"""Scenario files: YAML -> validated ``Scenario`` plus the resolved models and catalog.

Errors name the file, the line and the field (``scenario.yaml:line 7:workloads.0.input_tokens: ...``).
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError

from .calibration import Calibration, load_calibration
from .catalog import catalog_paths, find_model, load_catalog_files, suggest
from .engines import find_engine
from .errors import InputError, ScenarioError, UnknownNameError, first_problem
from .io import MAX_YAML_BYTES, parse_yaml, read_text, yaml_problem
from .profiles import read_profile_csvs
from .resources import default_calibration
from .schema import Instance, ModelCard, Scenario


@dataclass(frozen=True)
class Resolved:
    """A validated scenario with everything it names looked up."""

    scenario: Scenario
    models: dict[str, ModelCard]
    instances: list[Instance]
    calibration: Calibration
    path: str
    catalog_paths: tuple[Path, ...] = field(default=())  # the catalog files the instances come from


def line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the YAML node at a pydantic error location, as deep as it can be followed."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if getattr(k, "value", None) == key]
            if not match:
                break
            node = match[0]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        line = node.start_mark.line + 1
    return line


def read_yaml(path: Path, error: type[ScenarioError] = ScenarioError) -> tuple[Any, yaml.Node | None]:
    text = read_text(path, MAX_YAML_BYTES, error)
    try:
        return parse_yaml(text)
    except ValueError as exc:  # over the size limit
        raise error(str(exc), path=str(path)) from None
    except yaml.YAMLError as exc:
        problem, where = yaml_problem(exc)
        raise error(f"malformed YAML: {problem}", path=str(path), where=where) from None


# "workloads[3].spread: ..." at the start of a message from a validator of the whole scenario
FIELD_PREFIX = re.compile(r"([A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): ")


def field_loc(field: str) -> tuple[Any, ...]:
    """A field's location for ``line_of`` from how messages write it: "workloads.0.model" or "workloads[3].spread"."""
    return tuple(int(part) if part.isdigit() else part for part in re.findall(r"[A-Za-z_]\w*|\d+", field))


def validation_error(exc: ValidationError, path: str, node: yaml.Node | None,
                     error: type[ScenarioError] = ScenarioError) -> ScenarioError:
    loc = tuple(exc.errors()[0]["loc"])
    field, msg, kind = first_problem(exc)
    named = FIELD_PREFIX.match(msg) if not loc else None
    if named:  # a whole-scenario check names the field it faults ("workloads[3].spread: ..."): find its line
        loc = field_loc(named[1])
    line = line_of(node, loc)
    if kind == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    return error(msg, path=path, where=f"line {line}" if line else None, field=field or None)


def parse_scenario(data: Any, path: str = "<scenario>", node: yaml.Node | None = None) -> Scenario:
    if data is None:
        raise ScenarioError("empty scenario file (expected a mapping with 'workloads')", path=path)
    if not isinstance(data, dict):
        raise ScenarioError("a scenario must be a YAML mapping with 'workloads'", path=path)
    try:
        return Scenario(**data)
    except ValidationError as exc:
        raise validation_error(exc, path, node) from None
    except TypeError as exc:
        raise ScenarioError(f"bad structure: {exc}", path=path) from None


def resolve(scenario: Scenario, path: str = "<scenario>", base: Path | None = None, *,
            catalogs: Sequence[Path] = (), models: Sequence[Path] = ()) -> Resolved:
    """Look up models, catalog and calibration, and check the cross-references a schema cannot see.

    Paths in the scenario are relative to its folder ``base``. ``catalogs`` (catalog files or folders) and
    ``models`` (model-card folders) extend or override the shipped data (``--catalog``, ``--models``)."""
    cards: dict[str, ModelCard] = {}
    for i, w in enumerate(scenario.workloads):
        try:
            card = find_model(w.model, base, models)
        except UnknownNameError as exc:
            if exc.field != "model":  # a --models folder that is wrong names itself, not the scenario
                raise
            raise UnknownNameError(str(exc).split(": ", 1)[-1], path=path, field=f"workloads.{i}.model") from None
        cards[w.model] = card
        try:
            find_engine(w.engine)
        except UnknownNameError as exc:
            raise UnknownNameError(str(exc).split(": ", 1)[-1], path=path, field=f"workloads.{i}.engine") from None
        for bucket in w.size_mix():
            total = bucket.input_tokens + bucket.output_tokens
            if total > card.max_position_embeddings:
                raise ScenarioError(
                    f"input + output = {total} tokens exceeds {card.name}'s context window of "
                    f"{card.max_position_embeddings}", path=path, field=f"workloads.{i}")
    try:
        paths = catalog_paths(scenario.catalogs, base, catalogs)
        instances = load_catalog_files(paths)
    except UnknownNameError as exc:
        if exc.field != "catalogs":
            raise
        # name the scenario file (not its folder) as the place to fix the catalog name
        raise UnknownNameError(str(exc).split(": ", 1)[-1], path=path, field="catalogs") from None
    _check_names(scenario, instances, path)
    calibration = load_calibration(scenario.calibration, base)
    return Resolved(scenario, cards, instances, calibration, path, tuple(paths))


def region_hint(name: str, instances: list[Instance]) -> str:
    """What to say after "unknown region 'name'": a close typo, else the regions the catalogs price, by cloud (a
    loose match such as us-west-2 for europe-west4 names another cloud's region and sends the user the wrong way)."""
    close = difflib.get_close_matches(name, sorted({i.region for i in instances}), n=3, cutoff=0.8)
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    clouds = sorted({i.cloud for i in instances})
    listed = "; ".join(f"{c} {', '.join(sorted({i.region for i in instances if i.cloud == c}))}" for c in clouds)
    return f": the catalogs price {listed} (--catalog adds a cloud's CSV or a SkyPilot vms.csv with other regions)"


def _check_names(scenario: Scenario, instances: list[Instance], path: str) -> None:
    known = {"cloud": {i.cloud for i in instances}, "region": {i.region for i in instances},
             "instance_type": {i.instance_type for i in instances}, "gpu": {i.gpu for i in instances}}
    checks: list[tuple[str, str, str | None]] = []
    checks += [("cloud", "clouds", c) for c in scenario.clouds or []]
    checks += [("region", "regions", r) for r in scenario.regions or []]
    checks += [("instance_type", "instance_types", t) for t in scenario.instance_types or []]
    for i, w in enumerate(scenario.workloads):
        checks += [("instance_type", f"workloads.{i}.instance_types", t) for t in w.instance_types or []]
        checks += [("region", f"workloads.{i}.spread", r) for r in w.spread or []]
        outside = [r for r in w.spread or [] if scenario.regions and r not in scenario.regions]
        if outside:
            raise ScenarioError(f"spread region {outside[0]!r} is not among the scenario's regions "
                                f"({', '.join(scenario.regions or [])})", path=path, field=f"workloads.{i}.spread")
    for k, q in enumerate(scenario.quotas):
        checks += [(key, f"quotas.{k}.{key}", getattr(q, key)) for key in ("instance_type", "region", "cloud", "gpu")]
    for kind, where_field, value in checks:
        if value is not None and value not in known[kind]:
            hint = region_hint(value, instances) if kind == "region" else suggest(value, sorted(known[kind]))
            raise UnknownNameError(f"unknown {kind.replace('_', ' ')} {value!r}{hint}", path=path, field=where_field)


def load_scenario(path: str | Path, *, catalogs: Sequence[Path] = (), models: Sequence[Path] = ()) -> Resolved:
    """Read, validate and resolve a scenario file (see ``resolve`` for ``catalogs`` and ``models``)."""
    path = Path(path)
    data, node = read_yaml(path)
    data = read_profile_csvs(data, str(path), path.parent)
    scenario = parse_scenario(data, str(path), node)
    try:
        return resolve(scenario, str(path), path.parent, catalogs=catalogs, models=models)
    except InputError as exc:  # a name or value the catalogs reject: add the line of the field it names
        line = line_of(node, field_loc(exc.field)) if exc.field and not exc.where and exc.path == str(path) else None
        if line is None:
            raise
        raise type(exc)(exc.message, path=exc.path, where=f"line {line}", field=exc.field) from None


def input_files(resolved: Resolved) -> list[Path]:
    """Every file a resolved scenario was read from besides itself (catalogs, calibration, config.json models):
    an output path must never be one of them."""
    sc = resolved.scenario
    base = Path(resolved.path).parent
    files = [Path(resolved.path), *resolved.catalog_paths]
    if sc.calibration is None:
        files.append(default_calibration())
    elif sc.calibration not in ("none", "priors"):
        cal = Path(sc.calibration)
        files.append(cal if cal.is_absolute() or cal.exists() else base / cal)
    for w in sc.workloads:
        if w.model.endswith(".json"):
            files.append(Path(w.model) if Path(w.model).is_absolute() else base / w.model)
    return files
