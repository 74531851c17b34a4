"""Where a number came from: package version, catalog retrieval dates and sources, calibration id.

Every plan JSON carries ``provenance()`` as its ``provenance`` object, and every sweep table carries it as
Parquet schema metadata (key ``infersave.provenance``, JSON) and as ``provenance.*`` columns, so a number in a
slide deck can be traced back to the price snapshot and the CTCF fit it was computed with.
"""
from __future__ import annotations

import csv
import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import default_catalog_paths
from .resources import default_calibration, resolve_user_path

if TYPE_CHECKING:  # pragma: no cover
    from .scenario import Resolved

PARQUET_KEY = b"infersave.provenance"
COLUMNS = ("provenance.version", "provenance.catalog_retrieved", "provenance.calibration_id")


def package_version() -> str:
    try:
        return metadata.version("infersave")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


def catalog_info(path: Path) -> dict[str, Any]:
    """Retrieval dates and sources of one catalog CSV (its ``retrieved``/``source`` columns, if any)."""
    dates: set[str] = set()
    sources: set[str] = set()
    rows = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            for row in csv.DictReader(fh):
                rows += 1
                if row.get("retrieved"):
                    dates.add(row["retrieved"].strip())
                for src in (row.get("source") or "").split(" ; "):
                    if src.strip():
                        sources.add(src.strip())
    except (OSError, UnicodeDecodeError, csv.Error):
        return {"file": path.name, "rows": 0, "retrieved": [], "sources": []}
    return {"file": path.name, "rows": rows, "retrieved": sorted(dates), "sources": sorted(sources)}


def _calibration_info(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {"id": "none", "source": "uncalibrated roofline", "sha256": None}
    try:
        raw = path.read_bytes()
    except OSError:
        return {"id": "missing", "source": str(path), "sha256": None}
    digest = hashlib.sha256(raw).hexdigest()
    try:
        source = str(json.loads(raw).get("source", path.name))
    except (ValueError, AttributeError):
        source = path.name
    return {"id": f"{path.name}@{digest[:12]}", "source": source, "sha256": digest}


def provenance(catalogs: list[Path] | None = None, calibration: Path | None | str = "default") -> dict[str, Any]:
    """Version, catalog dates/sources and calibration id, as a JSON-ready dict.

    Args:
        catalogs: catalog CSV files used (default: every shipped cloud catalog).
        calibration: the calibration JSON used; ``"default"`` for the shipped one, ``None`` for none.

    Returns:
        ``{"infersave_version", "catalogs": [{file, rows, retrieved, sources}], "catalog_retrieved",
        "calibration": {id, source, sha256}}``; ``catalog_retrieved`` is the newest retrieval date ("" if
        no catalog states one).
    """
    paths = catalogs if catalogs is not None else default_catalog_paths()
    infos = [catalog_info(Path(p)) for p in paths]
    dates = sorted({d for info in infos for d in info["retrieved"]})
    calib_path = default_calibration() if calibration == "default" else calibration
    calib = _calibration_info(Path(calib_path) if calib_path is not None else None)
    return {"infersave_version": package_version(), "catalog_retrieved": dates[-1] if dates else "",
            "catalogs": infos, "calibration": calib}


def provenance_of(resolved: Resolved) -> dict[str, Any]:
    """``provenance()`` for the catalogs and calibration a resolved scenario uses."""
    sc = resolved.scenario
    base = Path(resolved.path).parent if resolved.path and not resolved.path.startswith("<") else None
    catalogs = list(resolved.catalog_paths) or None
    calibration: Path | None | str = "default"
    if sc.calibration == "none":
        calibration = None
    elif sc.calibration is not None:
        calibration = resolve_user_path(sc.calibration, base)  # relative to the scenario's folder
    elif not default_calibration().exists():
        calibration = None
    return provenance(catalogs, calibration)


def provenance_columns(prov: dict[str, Any]) -> dict[str, str]:
    """The flat columns a results table carries (one value per table)."""
    return dict(zip(COLUMNS, (prov["infersave_version"], prov["catalog_retrieved"], prov["calibration"]["id"])))


def caption(prov: dict[str, Any] | None) -> str:
    """One line for plots and reports: 'prices retrieved 2026-11-25 · calibration X · infersave 0.1.0'."""
    if not prov:
        return "provenance unknown (table written before provenance was recorded)"
    calib = prov.get("calibration", {}) or {}
    return (f"prices retrieved {prov.get('catalog_retrieved') or 'n/a'} · calibration {calib.get('id', 'n/a')} · "
            f"infersave {prov.get('infersave_version', '?')}")


def read_parquet_provenance(path: str | Path) -> dict[str, Any] | None:
    """The provenance a Parquet results file carries in its schema metadata, or None."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[PARQUET_KEY]) if PARQUET_KEY in meta else None
    except (OSError, ValueError, KeyError):
        return None


def table_provenance(df: Any, path: str | Path | None = None) -> dict[str, Any] | None:
    """Provenance of a results table: from Parquet metadata when there is a file, else from its columns."""
    if path is not None and str(path).lower().endswith((".parquet", ".pq")):
        prov = read_parquet_provenance(path)
        if prov:
            return prov
    if all(c in getattr(df, "columns", ()) for c in COLUMNS) and len(df):
        first = df.iloc[0]
        return {"infersave_version": str(first[COLUMNS[0]]), "catalog_retrieved": str(first[COLUMNS[1]]),
                "calibration": {"id": str(first[COLUMNS[2]])}}
    return None


__all__ = ["caption", "package_version", "provenance", "provenance_columns", "provenance_of",
           "read_parquet_provenance", "table_provenance", "write_parquet"]


def write_parquet(df: Any, path: str | Path, prov: dict[str, Any] | None) -> None:
    """``df`` as Parquet with ``prov`` (if any) in the schema metadata under ``infersave.provenance``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if prov is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               PARQUET_KEY: json.dumps(prov, sort_keys=True).encode()})
    pq.write_table(table, path)
