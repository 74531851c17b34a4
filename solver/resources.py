"""Where the bundled data lives: the one place that turns "the shipped catalogs / model cards / scenarios /
calibration" into paths.

The repository keeps the data at its top level (``catalogs/``, ``models/``, ``scenarios/``); a built wheel maps
them into the package as ``solver/_data/catalogs`` etc. (``[tool.setuptools.package-dir]`` in pyproject.toml).
``data_root()`` finds them through ``importlib.resources``: inside the installed package when it carries them
(wheel, ``pip install .``), else beside the package (a checkout or an editable install). Files and folders the
user names on the command line or in a scenario extend or override these (see ``catalog.catalog_paths`` and
``catalog.model_index``); this module imports nothing of the project.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

PACKAGE = __name__.rsplit(".", 1)[0]
BUNDLED = "_data"


@lru_cache(maxsize=1)
def data_root() -> Path:
    """The folder holding ``catalogs/``, ``models/`` and ``scenarios/``."""
    package = resources.files(PACKAGE)
    inside = package.joinpath(BUNDLED)
    if inside.is_dir():  # installed from a wheel (or ``pip install .``)
        return Path(str(inside))
    return Path(str(package)).parent  # checkout or editable install: the repository's top-level folders


def catalog_dir() -> Path:
    return data_root() / "catalogs"


def model_dir() -> Path:
    return data_root() / "models"


def scenario_dir() -> Path:
    return data_root() / "scenarios"


def default_scenario() -> Path:
    """The scenario ``infersave plan`` plans when given none."""
    return scenario_dir() / "chat_fleet.yaml"


def default_calibration() -> Path:
    return catalog_dir() / "calibration.json"


def default_measurements() -> Path:
    return catalog_dir() / "measurements" / "published.csv"


def resolve_user_path(name: str | Path, base: Path | None) -> Path:
    """A path written in a scenario: relative to the scenario's folder (``base``), never to the working folder;
    absolute paths and ``~`` are kept."""
    path = Path(name).expanduser()
    if path.is_absolute() or base is None:
        return path
    return base / path


__all__ = ["catalog_dir", "data_root", "default_calibration", "default_measurements", "default_scenario",
           "model_dir", "resolve_user_path", "scenario_dir"]
