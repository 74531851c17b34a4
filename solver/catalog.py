"""Load and validate the data files: GPU specs, cloud instance catalogs, model cards.

Catalog CSVs use SkyPilot's ``vms.csv`` column names, so a SkyPilot catalog file can be read as is: rows
without accelerators, or with fractional GPUs, are skipped, and a file as SkyPilot publishes it (one row per
availability zone) is collapsed to one row per (type, region) with the cheapest zone's spot price, by the rules
of ``solver.skypilot`` (the same as ``infersave catalog import``). Every failure names ``file:row:column``.
The shipped data is found through ``solver.resources``; catalog files and folders, and model-card folders, that
the user names extend or override it.
"""
from __future__ import annotations

import csv
import difflib
import logging
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import ValidationError

from .errors import CatalogError, UnknownNameError, first_problem
from .io import (MAX_CSV_BYTES, MAX_YAML_BYTES, bounded_files, file_kind, not_a_file, parse_yaml, read_json, read_text,
                 yaml_problem)
from .resources import catalog_dir, model_dir, resolve_user_path
from .field_checks import PLAIN_NUMBER
from .schema import GPUSpec, Instance, ModelCard
from .skypilot import VM_COLUMNS, RowCheck, cell_number, collapse_zones, is_per_zone

log = logging.getLogger(__name__)
CATALOG_DIR = catalog_dir()
MODEL_DIR = model_dir()
GPU_FILES = ("gpus.csv", "measurements/gpus_extra.csv")
CLOUD_FILES = ("aws.csv", "gcp.csv", "azure.csv")


def normalise(name: str) -> str:
    """Forgiving key for names: case, spaces, dashes and vendor prefixes do not matter."""
    key = re.sub(r"[^a-z0-9.]", "", name.lower())
    return re.sub(r"^(nvidia|tesla)", "", key)


def suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=4, cutoff=0.5)
    if not close:
        close = [k for k in known if normalise(name)[:3] and normalise(name)[:3] in normalise(k)][:4]
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def read_csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Rows as dicts, refusing empty files, duplicated columns and ragged rows."""
    text = read_text(path, MAX_CSV_BYTES, CatalogError)
    reader = csv.reader(text.splitlines())
    rows = list(reader)
    if not rows:
        raise CatalogError("empty CSV file (no header)", path=str(path))
    header = [h.strip() for h in rows[0]]
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise CatalogError(f"duplicated column(s) {dupes}", path=str(path), where="row 1")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise CatalogError(f"has {len(row)} cells, header has {len(header)}", path=str(path),
                               where=f"row {line_no}")
        for h, cell in zip(header, row):  # cells are stripped below; a number must not need it
            if cell != cell.strip() and PLAIN_NUMBER.fullmatch(cell.strip()):
                raise CatalogError(f"number {cell!r} has spaces around it; write it without", path=str(path),
                                   where=f"row {line_no}", field=h)
        out.append({h: c.strip() for h, c in zip(header, row)} | {"__row__": str(line_no)})
    return header, out


def _number(row: dict[str, str], column: str, path: Path, *, required: bool = True) -> float | None:
    return cell_number(row, column, path, required=required, missing=("",))


def _validation_error(exc: ValidationError, path: Path, where: str,
                      columns: dict[str, str] | None = None) -> CatalogError:
    loc, msg, _ = first_problem(exc)
    field = loc or None
    columns = columns or {}
    if field is None:  # a model-level check (e.g. NaN/inf): its message starts with the field name
        field = next((k for k in columns if msg.startswith(f"{k} ")), None)
    return CatalogError(msg, path=str(path), where=where, field=columns.get(field or "", field))


# Instance fields -> the catalog CSV columns they come from, so errors name the column the user must fix.
INSTANCE_COLUMNS = {"instance_type": "InstanceType", "gpu_count": "AcceleratorCount", "vcpus": "vCPUs",
                    "host_mem_gib": "MemoryGiB", "usd_per_hour": "Price", "spot_usd_per_hour": "SpotPrice",
                    "region": "Region"}


def load_gpu_specs(paths: list[Path] | None = None) -> dict[str, GPUSpec]:
    """GPU specs keyed by canonical name (``catalogs/gpus.csv`` plus extra GPUs met in measurements)."""
    if paths is None:
        paths = [CATALOG_DIR / f for f in GPU_FILES if (CATALOG_DIR / f).exists()]
    specs: dict[str, GPUSpec] = {}
    for path in paths:
        header, rows = read_csv_rows(path)
        missing = {"gpu", "memory_gib", "hbm_bandwidth_gb_s", "fp16_tflops_dense", "source"} - set(header)
        if missing:
            raise CatalogError(f"missing column(s) {sorted(missing)}", path=str(path), where="row 1")
        if not rows:
            raise CatalogError("has no GPU rows", path=str(path))
        for row in rows:
            fields: dict[str, object] = {k: v for k, v in row.items() if k != "__row__" and v != ""}
            for key in ("memory_gib", "hbm_bandwidth_gb_s", "fp16_tflops_dense", "fp8_tflops_dense",
                        "int8_tops_dense", "fp32_tflops", "host_link_gb_s", "interconnect_gb_s"):
                if key in fields:
                    fields[key] = _number(row, key, path)
            try:
                spec = GPUSpec(**fields)  # type: ignore[arg-type]
            except ValidationError as exc:
                raise _validation_error(exc, path, f"row {row['__row__']}") from None
            if spec.gpu in specs:
                raise CatalogError(f"duplicate GPU {spec.gpu!r}", path=str(path), where=f"row {row['__row__']}",
                                   field="gpu")
            specs[spec.gpu] = spec
    return specs


def catalog_key(path: Path) -> str:
    """The cloud a catalog file stands for: its stem, or its folder's name for SkyPilot's ``<cloud>/vms.csv``."""
    return path.parent.name if path.name == "vms.csv" else path.stem


def instance_row_check(path: Path, cloud: str) -> RowCheck:
    """The catalog schema's checks (``Instance``) of one row of ``path``, for ``collapse_zones``: a row ``catalog
    import`` would write, or a per-zone file's row, is refused as ``load_instances`` refuses it."""

    def check(row: dict[str, str], price: float, spot: float | None, count: int) -> None:
        try:
            fields = dict(cloud=row.get("Cloud") or cloud, instance_type=row["InstanceType"],
                          gpu=row["AcceleratorName"], gpu_count=count, vcpus=_number(row, "vCPUs", path),
                          host_mem_gib=_number(row, "MemoryGiB", path), usd_per_hour=price, spot_usd_per_hour=spot,
                          region=row["Region"])
            Instance(**fields)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise _validation_error(exc, path, f"row {row['__row__']}", INSTANCE_COLUMNS) from None

    return check


def load_instances(path: Path, gpus: dict[str, GPUSpec], cloud: str | None = None) -> list[Instance]:
    """Instances of one SkyPilot-style catalog file; the cloud defaults to ``catalog_key(path)``. A file as
    SkyPilot publishes it (per-zone rows) is collapsed per (type, region) first, keeping the cheapest zone's spot
    price, and its rows with GPUs the GPU table does not know are skipped (both said on stderr)."""
    header, rows = read_csv_rows(path)
    missing = set(VM_COLUMNS) - set(header)
    if missing:
        raise CatalogError(f"missing column(s) {sorted(missing)}", path=str(path), where="row 1")
    cloud = cloud or catalog_key(path)
    if is_per_zone(header, rows):
        collapsed, rep = collapse_zones(rows, path, cloud, gpus, path.as_posix(), "", instance_row_check(path, cloud))
        log.warning("%s: read as a SkyPilot catalog: %s", path, rep.line())
        rows = [{k: "" if v is None else str(v) for k, v in r.items()} for r in collapsed]
    out: list[Instance] = []
    for row in rows:
        where = f"row {row['__row__']}"
        gpu = row["AcceleratorName"]
        count = _number(row, "AcceleratorCount", path, required=False)
        if not gpu or not count or count != int(count):
            continue  # CPU-only or fractional-GPU rows in SkyPilot catalogs
        if gpu not in gpus:
            raise UnknownNameError(f"unknown GPU {gpu!r}{suggest(gpu, sorted(gpus))}", path=str(path),
                                   where=where, field="AcceleratorName")
        price = _number(row, "Price", path, required=False)
        if price is None:
            continue  # SkyPilot lists some types without an on-demand price in a region
        fields = dict(cloud=row.get("Cloud") or cloud, instance_type=row["InstanceType"], gpu=gpu,
                      gpu_count=int(count), vcpus=_number(row, "vCPUs", path),
                      host_mem_gib=_number(row, "MemoryGiB", path), usd_per_hour=price,
                      spot_usd_per_hour=_number(row, "SpotPrice", path, required=False),
                      region=row["Region"], source=row.get("source", ""))
        try:
            out.append(Instance(**fields))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise _validation_error(exc, path, where, INSTANCE_COLUMNS) from None
    if not out:
        raise CatalogError("has no GPU instance rows", path=str(path))
    return out


def _is_instance_csv(path: Path) -> bool:
    if not_a_file(path):
        return False
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:  # as read_text, a byte-order mark is no header
            header = [h.strip() for h in next(csv.reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return set(VM_COLUMNS) <= set(header)


def folder_catalogs(folder: Path) -> list[Path]:
    """The instance catalogs of a folder: every ``*.csv`` with the ``vms.csv`` columns, and SkyPilot's
    ``<cloud>/vms.csv`` (a SkyPilot catalog checkout such as ``skypilot-catalog/catalogs/v8``)."""
    files = [p for p in sorted(folder.glob("*.csv")) if _is_instance_csv(p)] + sorted(folder.glob("*/vms.csv"))
    if not files:
        raise CatalogError("no catalog CSV in this folder (expected *.csv or <cloud>/vms.csv with SkyPilot's "
                           "vms.csv columns)", path=str(folder), field="catalogs")
    return files


def catalog_files(entry: str | Path, base: Path | None = None, search: Sequence[Path] = (),
                  field: str = "catalogs") -> list[Path]:
    """One catalog entry: a CSV file or a folder of them (relative to the scenario's folder ``base`` when written
    in a scenario), or the bare name (``aws``, ``aws.csv``) of a file in a user catalog folder or the shipped
    catalogs, in that order."""
    path = resolve_user_path(entry, base)
    if path.is_file():
        return [path]
    if path.is_dir():
        return folder_catalogs(path)
    kind = file_kind(path)
    if kind != "not found":  # a device, pipe or socket: not a catalog, and not a name to look up
        raise CatalogError(f"catalog {kind}", path=str(path), field=field)
    name = str(entry)
    for folder in [*search, CATALOG_DIR]:
        for candidate in (folder / name, folder / f"{name}.csv"):
            if candidate.is_file():
                return [candidate]
    raise UnknownNameError(f"catalog {name!r} not found", path=str(base) if base else None, field="catalogs")


def resolve_catalog_path(name: str, base: Path | None = None) -> Path:
    """A catalog file given by path (relative to the scenario file) or by bare name of a shipped file."""
    return catalog_files(name, base)[0]


def default_catalog_paths() -> list[Path]:
    return [CATALOG_DIR / f for f in CLOUD_FILES]


def catalog_paths(names: Sequence[str] | None = None, base: Path | None = None,
                  extra: Sequence[Path] = ()) -> list[Path]:
    """The catalog files to plan over: the scenario's ``catalogs`` (default: the shipped cloud catalogs), then
    each user catalog (``--catalog`` file or folder) replacing the file of the same cloud or adding one."""
    search = [Path(p) for p in extra if Path(p).is_dir()]
    chosen = [f for n in names for f in catalog_files(n, base, search)] if names else default_catalog_paths()
    by_cloud = {catalog_key(p): p for p in chosen}
    for entry in extra:
        if not Path(entry).exists():
            raise UnknownNameError("catalog file or folder not found", path=str(entry), field="--catalog")
        for path in catalog_files(Path(entry), field="--catalog"):
            by_cloud[catalog_key(path)] = path
    return list(by_cloud.values())


def load_catalog_files(paths: Sequence[Path]) -> list[Instance]:
    gpus = gpu_specs()
    instances: list[Instance] = []
    seen: set[tuple[str, str, str]] = set()
    for path in paths:
        for inst in load_instances(path, gpus):
            key = (inst.cloud, inst.instance_type, inst.region)
            if key in seen:
                raise CatalogError(f"duplicate instance {inst.instance_type} in {inst.region}", path=str(path),
                                   field="InstanceType")
            seen.add(key)
            instances.append(inst)
    return instances


def load_catalog(names: Sequence[str] | None = None, base: Path | None = None,
                 extra: Sequence[Path] = ()) -> list[Instance]:
    """All instances of the given catalog files (default: every shipped cloud catalog), see ``catalog_paths``."""
    return load_catalog_files(catalog_paths(names, base, extra))


@lru_cache(maxsize=1)
def gpu_specs() -> dict[str, GPUSpec]:
    return load_gpu_specs()


def find_gpu(name: str) -> GPUSpec:
    """Forgiving GPU lookup: ``A100-80GB``, ``a100 80gb`` and ``NVIDIA A100 80GB`` all match."""
    specs = gpu_specs()
    if name in specs:
        return specs[name]
    by_key = {normalise(k): v for k, v in specs.items()}
    key = normalise(name)
    if key in by_key:
        return by_key[key]
    stripped = re.sub(r"(sxm\d?|gb)$", "", key)
    for k, v in by_key.items():
        if re.sub(r"gb$", "", k) == stripped:
            return v
    raise UnknownNameError(f"unknown GPU {name!r}{suggest(name, sorted(specs))}", field="gpu")


# ---- model cards -------------------------------------------------------------------------------------------


def load_model_card(path: Path) -> ModelCard:

    text = read_text(path, MAX_YAML_BYTES, CatalogError, "model card")
    try:
        data, _ = parse_yaml(text)
    except ValueError as exc:
        raise CatalogError(f"cannot read model card: {exc}", path=str(path)) from None
    except yaml.YAMLError as exc:
        problem, where = yaml_problem(exc)
        raise CatalogError(f"malformed YAML: {problem}", path=str(path), where=where) from None
    if not isinstance(data, dict):
        raise CatalogError("a model card must be a YAML mapping", path=str(path))
    try:
        return ModelCard(**data)
    except ValidationError as exc:
        raise _validation_error(exc, path, "model card") from None


# Hugging Face model types that are not decoder-only causal LMs (encoders, encoder-decoders, vision/audio).
NON_DECODER_TYPES = frozenset({
    "bert", "roberta", "xlm-roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "mpnet",
    "t5", "mt5", "umt5", "bart", "mbart", "pegasus", "marian", "longt5", "switch_transformers", "whisper",
    "wav2vec2", "hubert", "clip", "siglip", "vit", "beit", "dinov2", "swin", "convnext", "resnet", "sam",
    "encoder-decoder", "speech-encoder-decoder", "vision-encoder-decoder", "nllb-moe", "m2m_100", "fsmt"})
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


def _check_decoder(cfg: dict[str, Any], path: Path) -> None:
    """Refuse, by name, a config.json that is not a decoder-only causal language model."""
    model_type = str(cfg.get("model_type", ""))
    archs = cfg.get("architectures")
    if archs is not None and (not isinstance(archs, list) or not all(isinstance(a, str) for a in archs)):
        raise CatalogError("expected a list of class names", path=str(path), field="architectures")
    named = f"{archs[0]!r} (model_type {model_type!r})" if archs else f"model_type {model_type!r}"
    why = "; InferSave plans decoder-only causal language models"
    if cfg.get("is_encoder_decoder") is True:
        raise CatalogError(f"{named} is an encoder-decoder model{why}", path=str(path), field="is_encoder_decoder")
    if archs and not any(a.endswith(CAUSAL_SUFFIXES) for a in archs):
        raise CatalogError(f"{named} is not a decoder-only causal LM{why}", path=str(path), field="architectures")
    if model_type.lower() in NON_DECODER_TYPES:
        raise CatalogError(f"{named} is not a decoder-only causal LM{why}", path=str(path), field="model_type")


def model_card_from_hf_config(path: Path) -> ModelCard:
    """A model card from a Hugging Face ``config.json`` (Llama, Mistral, Mixtral, Qwen2, OPT, GPT-J style)."""

    cfg = read_json(path, CatalogError, "config.json")
    if not isinstance(cfg, dict):
        raise CatalogError("config.json must be a JSON object", path=str(path))
    _check_decoder(cfg, path)

    def get(*keys: str, default: object = None) -> object:
        for k in keys:
            if k in cfg and cfg[k] is not None:
                return cfg[k]
        if default is None:
            raise CatalogError(f"missing {' or '.join(keys)}", path=str(path), field=keys[0])
        return default

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head")
    for key, value in (("hidden_size", hidden), ("num_attention_heads", heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CatalogError(f"expected a positive whole number, got {value!r}", path=str(path), field=key)
    is_opt = cfg.get("model_type") == "opt"
    fields = dict(
        name=str(cfg.get("_name_or_path") or path.parent.name or path.stem).split("/")[-1].lower(),
        hf_id=str(cfg.get("_name_or_path", "")), family=str(cfg.get("model_type", "")),
        num_layers=get("num_hidden_layers", "n_layer"), hidden_size=hidden,
        intermediate_size=get("intermediate_size", "ffn_dim", "n_inner", default=4 * int(hidden)),  # type: ignore
        num_attention_heads=heads, num_key_value_heads=get("num_key_value_heads", default=heads),
        head_dim=get("head_dim", default=int(hidden) // int(heads)),  # type: ignore[call-overload]
        vocab_size=get("vocab_size"), max_position_embeddings=get("max_position_embeddings", "n_positions"),
        ffn_gated=not is_opt and cfg.get("model_type") not in ("gptj", "gpt2", "gpt_neox"),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", is_opt)),
        num_experts=get("num_local_experts", "num_experts", default=1),
        num_experts_per_token=get("num_experts_per_tok", default=1), source=str(path),
    )
    try:
        return ModelCard(**fields)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise _validation_error(exc, path, "config.json") from None
    except TypeError as exc:
        raise CatalogError(f"bad structure: {exc}", path=str(path)) from None


@dataclass(frozen=True)
class ModelIndex:
    cards: dict[str, ModelCard]
    keys: dict[str, str]  # normalised name/alias/hf id -> card name


def _model_files(folder: Path) -> list[Path]:
    """Model cards (``*.yaml``) and Hugging Face ``config.json`` files in a ``--models`` folder and two levels below
    (``org/card.yaml``, ``org/model/config.json``), a bounded search (``io.bounded_files``: ``--models /`` says so
    instead of walking the file system)."""
    if not folder.is_dir():
        kind = file_kind(folder)
        raise UnknownNameError(f"model folder {'is a file, not a folder' if kind == 'is a file' else kind}",
                               path=str(folder), field="--models")
    files = bounded_files(folder, 2, "--models", "point --models at the folder of your model cards")
    return [p for p in files if p.suffix == ".yaml"] + [p for p in files if p.name == "config.json"]


@lru_cache(maxsize=8)
def model_index(dirs: tuple[Path, ...] = ()) -> ModelIndex:
    """The shipped model cards, then those of each user folder in ``dirs``: a card with the name of an earlier
    one replaces it and the later folder's names and aliases win; two cards of one name in one folder are an
    error."""
    layers: list[list[ModelCard]] = []
    for folder in (MODEL_DIR, *dirs):
        files = sorted(MODEL_DIR.rglob("*.yaml")) if folder == MODEL_DIR else _model_files(folder)
        found: dict[str, ModelCard] = {}
        for path in files:
            card = model_card_from_hf_config(path) if path.name == "config.json" else load_model_card(path)
            if card.name in found:
                raise CatalogError(f"duplicate model name {card.name!r}", path=str(path), field="name")
            found[card.name] = card
        layers.append(list(found.values()))
    cards = {card.name: card for layer in layers for card in layer}
    keys: dict[str, str] = {}
    for layer in reversed(layers):
        for card in layer:
            if cards[card.name] is not card:
                continue
            for alias in [card.name, card.hf_id, *card.aliases]:
                if alias:
                    keys.setdefault(normalise(alias), card.name)
                    keys.setdefault(normalise(alias.split("/")[-1]), card.name)
    return ModelIndex(cards, keys)


def find_model(name: str, base: Path | None = None, dirs: Sequence[Path] = ()) -> ModelCard:
    """A model by short name, HF id or alias (user model folders ``dirs`` first, then the shipped cards), or a
    path to a Hugging Face ``config.json`` (relative to the scenario's folder ``base``)."""
    if name.endswith(".json"):
        path = resolve_user_path(name, base)
        if not path.is_file():
            raise UnknownNameError(f"config.json {name!r} {file_kind(path)}", field="model")
        return model_card_from_hf_config(path)
    index = model_index(tuple(Path(d) for d in dirs))
    key = index.keys.get(normalise(name))
    if key is None:
        raise UnknownNameError(f"unknown model {name!r}{suggest(name, sorted(index.cards))}", field="model")
    return index.cards[key]
