"""Safe input and output, in one place.

Output: ``check_output`` refuses, before any work, an ``--out`` that is a symlink, a device, a directory (or,
for folder outputs, a file), that resolves to one of the command's input files, or whose folder cannot be
written; ``atomic_write`` writes a temporary file beside the target and renames it, keeping the permissions of a
file it replaces (and refusing to replace a read-only one), so no half file is ever left. ``csv_safe``
neutralises spreadsheet formulas in CSV cells.

Input: ``parse_yaml`` and ``parse_json`` refuse duplicate keys, and YAML also files over ``MAX_YAML_BYTES``,
nesting deeper than ``MAX_YAML_DEPTH`` and alias expansion beyond ``MAX_YAML_NODES`` nodes (alias bombs).
"""
from __future__ import annotations

import glob
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

import yaml

from .errors import InputError

# ---- limits (README: "Limits") -----------------------------------------------------------------------------

MAX_YAML_BYTES = 8 * 2**20  # 8 MiB per scenario, sweep or model-card file
MAX_YAML_DEPTH = 32  # nesting of mappings and lists
MAX_YAML_NODES = 1_000_000  # nodes after expanding aliases (a "billion laughs" file has ~10^9)
MAX_JSON_BYTES = 64 * 2**20  # plan, calibration, Melange, config.json and benchmark result files
MAX_CSV_BYTES = 256 * 2**20  # a catalog, engine or measurement CSV (SkyPilot's largest catalog is tens of MiB)


# ---- input ---------------------------------------------------------------------------------------------------


def not_a_file(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file without blocking (a named pipe with no writer blocks ``open()`` for
    ever; a socket cannot be opened), or None. A pipe given by the shell (``<(...)``, ``/dev/stdin``) has a writer
    and is read as a file; a device such as ``/dev/zero`` is read up to the limit."""
    if str(path).startswith(("/dev/fd/", "/dev/stdin", "/proc/")):
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # open() names what is wrong (missing, loop, permission)
    return _kind(mode) if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) else None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a folder"
    if stat.S_ISREG(mode):
        return "is a file"
    if stat.S_ISFIFO(mode):
        return "is a named pipe (FIFO), not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is a device or other special file, not a regular file"


def file_kind(path: str | Path) -> str:
    """What is at ``path``, for a message where a command expected something else there instead of a bare "not
    found": "not found", "is a folder", "is a file", "is a named pipe (FIFO)...", "is a socket...", "is a device
    or other special file, not a regular file", or why it cannot be looked at."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "not found"
    except OSError as exc:  # a loop, a component that is a file, no permission to look
        return f"cannot be read: {exc.strerror or exc}"
    return _kind(mode)


MAX_SEARCH_ENTRIES = 20_000  # files and folders a search of a user's folder looks at (``--models``)


def bounded_files(folder: Path, depth: int, field: str, hint: str) -> list[Path]:
    """Every file in ``folder`` and ``depth`` levels below it, sorted, looking at no more than
    ``MAX_SEARCH_ENTRIES`` entries (symbolic links to folders are not followed): a folder such as ``/`` or ``~``
    given by mistake is ``InputError`` naming ``field`` with ``hint``, not a walk of the whole file system."""
    found, seen = [], 0
    for root, dirs, files in os.walk(folder):
        seen += len(dirs) + len(files)
        if seen > MAX_SEARCH_ENTRIES:
            raise InputError(f"has more than {MAX_SEARCH_ENTRIES:,} files and folders within {depth} levels; {hint}",
                             path=str(folder), field=field)
        if len(Path(root).relative_to(folder).parts) >= depth:
            dirs.clear()
        found += [Path(root) / f for f in files]
    return sorted(found)


def read_text(path: str | Path, limit: int, error: type[InputError] = InputError, what: str = "file") -> str:
    """A UTF-8 text file of at most ``limit`` bytes, read no further than that (a device or pipe that never ends,
    ``/dev/zero``, reports size 0, so the size is counted while reading, not asked of the file system); a missing
    file, a folder, an unreadable, oversize or non-UTF-8 one is ``error`` naming the file. A leading byte-order
    mark is dropped, so every text input (YAML, JSON, CSV) takes the UTF-8 files Excel and Notepad write."""
    special = not_a_file(path)
    if special:
        raise error(f"cannot read {what}: {special}", path=str(path))
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ValueError(f"file is larger than the {limit // 2**20} MiB limit")
        return data.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark (Excel writes one) is no content
    except FileNotFoundError:
        raise error(f"cannot read {what}: not found", path=str(path)) from None
    except IsADirectoryError:
        raise error(f"cannot read {what}: is a folder", path=str(path)) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"cannot read {what}: {exc}", path=str(path)) from None


class DuplicateKeyError(yaml.MarkedYAMLError):
    pass


class _NoDuplicateKeys:
    """Refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = self.construct_object(key_node, deep=deep)  # type: ignore[attr-defined]
                try:
                    if key in seen:
                        raise DuplicateKeyError(problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark)
                    seen.add(key)
                except TypeError:  # unhashable: the base class reports it
                    pass
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc, no-any-return]


class StrictLoader(_NoDuplicateKeys, yaml.SafeLoader):
    """``yaml.SafeLoader`` without duplicate keys; its error messages are the documented ones."""


# libyaml's scanner and parser with the same safe constructor: the shipped model cards load on every plan
FastStrictLoader: type = type("FastStrictLoader", (_NoDuplicateKeys, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})


def _check_tree(root: yaml.Node | None) -> None:
    """Depth and expanded size of a composed YAML tree (aliases are shared nodes: counted once per use)."""
    if root is None:
        return
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_YAML_DEPTH:
            raise yaml.MarkedYAMLError(problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                                       problem_mark=node.start_mark)
        known = sizes.get(id(node))
        if known is not None:
            return known
        total = 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                total += size(k, depth + 1) + size(v, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            for v in node.value:
                total += size(v, depth + 1)
        if total > MAX_YAML_NODES:
            raise yaml.MarkedYAMLError(problem=f"expands to more than {MAX_YAML_NODES:,} nodes (alias bomb?)",
                                       problem_mark=node.start_mark)
        sizes[id(node)] = total
        return total

    size(root, 0)


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """(data, composed node tree) of a YAML text, strictly: raises ``yaml.YAMLError`` (with a mark where there
    is one) for malformed YAML, duplicate keys, deep nesting and alias bombs; ``ValueError`` for oversize text."""
    if len(text) > MAX_YAML_BYTES:
        raise ValueError(f"file is larger than the {MAX_YAML_BYTES // 2**20} MiB limit")
    try:
        return _parse(text, FastStrictLoader)
    except yaml.YAMLError:
        return _parse(text, StrictLoader)  # raises again, with the pure-Python parser's documented message


def _parse(text: str, loader_class: type) -> tuple[Any, yaml.Node | None]:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        _check_tree(node)
        return (loader.construct_document(node) if node is not None else None), node
    except RecursionError:
        raise yaml.YAMLError(f"nested deeper than {MAX_YAML_DEPTH} levels") from None
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, str | None]:
    """(problem, 'line N' or None) of a YAML error, for a one-line message."""
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}" if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return problem, where


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_json(text: str) -> Any:
    """``json.loads`` that refuses duplicate keys and oversize text (``ValueError``; ``json.JSONDecodeError`` is a
    subclass). ``NaN``/``Infinity`` literals load as floats so that validation can name the field holding them."""
    if len(text) > MAX_JSON_BYTES:
        raise ValueError(f"file is larger than the {MAX_JSON_BYTES // 2**20} MiB limit")
    return json.loads(text, object_pairs_hook=_no_duplicates)


def read_json(path: str | Path, error: type[InputError] = InputError, what: str = "JSON file") -> Any:
    """A JSON file, strictly parsed; every failure is ``error`` naming the file (and line)."""
    path = Path(path)
    text = read_text(path, MAX_JSON_BYTES, error)
    try:
        return parse_json(text)
    except json.JSONDecodeError as exc:
        raise error(f"malformed {what}: {exc.msg}", path=str(path), where=f"line {exc.lineno}") from None
    except (ValueError, RecursionError) as exc:
        raise error(f"malformed {what}: {str(exc) or type(exc).__name__}", path=str(path)) from None


# ---- output ---------------------------------------------------------------------------------------------------


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    try:
        return a.resolve() == b.resolve()
    except (OSError, RuntimeError):  # a symbolic-link loop
        return os.path.abspath(a) == os.path.abspath(b)


def check_output(path: str | Path | None, inputs: Iterable[str | Path | None] = (), *, folder: bool = False,
                 field: str = "--out") -> None:
    """Refuse an output path before any work is done (``InputError``, exit 2, naming ``field``).

    Refused: a symlink, a device or other non-regular file, a directory (a file for ``folder=True`` outputs),
    any of ``inputs`` (the same file or folder by any name) and a
    place that cannot be written (its nearest existing folder is not writable, or is a file)."""
    if path is None:
        return
    path = Path(path)
    name = str(path)

    def fail(message: str) -> InputError:
        return InputError(message, path=name, field=field)

    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        pass
    except OSError as exc:  # a name too long, a loop on the way, no permission to look
        raise fail(f"cannot write there: {exc.strerror or exc}") from None
    if path.is_symlink():
        raise fail("refusing to write through a symbolic link")
    if path.exists():
        mode = path.stat().st_mode
        if folder:
            if not stat.S_ISDIR(mode):
                raise fail("exists and is not a folder")
        elif stat.S_ISDIR(mode):
            raise fail("is a folder; give a file name")
        elif not stat.S_ISREG(mode):
            raise fail("is a device or special file, not a regular file")
    for given in inputs:
        if given is None:
            continue
        source = Path(given)
        if _same_file(path, source):
            raise fail(f"is an input of this command ({given}); choose another output")
    # writability: the target's folder, or the nearest existing ancestor if it will be created
    target_dir = path if folder else path.parent
    probe = Path(os.path.abspath(target_dir))
    while not probe.exists():
        if probe.is_symlink():  # a dangling link on the way
            raise fail(f"folder {probe} is a broken symbolic link")
        probe = probe.parent
    if not probe.is_dir():
        raise fail(f"{probe} is a file, not a folder")
    # mode bits as well as access(): a folder or file its owner made read-only is refused even for root
    if not os.access(probe, os.W_OK | os.X_OK) or not probe.stat().st_mode & 0o222:
        raise fail(f"folder {probe} is not writable")
    if not folder and read_only(path):
        raise fail(READ_ONLY)


READ_ONLY = "file is read-only; make it writable or choose another output"


def read_only(path: Path) -> bool:
    """An existing file that must not be replaced: not writable for us, or (even for root) without any write bit.
    An atomic rename would replace it regardless of its mode, so every writer asks this first."""
    try:
        return path.exists() and (not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222)
    except OSError:
        return False


TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` and move the result onto ``path`` only if it succeeded. A replaced file keeps
    its permission bits; a new one gets those a plain ``open()`` would give it."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise InputError("refusing to replace a symbolic link, folder or device", path=str(path), field="--out")
    if read_only(path):
        raise InputError(READ_ONLY, path=str(path), field="--out")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.close(fd)
        write(Path(tmp))
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp creates 0600; give the file the mode a plain open() would
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stray_temps(path: str | Path) -> None:
    """Delete the temporary files of ``atomic_write(path)`` that an interrupted write left (a signal between
    ``mkstemp`` and the write's own clean-up)."""
    path = Path(path)
    for stray in path.parent.glob(f".{glob.escape(path.name)}.*{TEMP_SUFFIX}"):
        stray.unlink(missing_ok=True)


def write_texts(texts: Mapping[Path, str], field: str) -> None:
    """Several files of one output (``field``): every target is checked (``check_output``: a read-only or special
    file) before the first is written, so a refused one leaves the others untouched."""
    for path in texts:
        check_output(path, field=field)
    for path, text in texts.items():
        atomic_write_text(path, text)


def atomic_write_text(path: str | Path, text: str) -> None:
    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")

    atomic_write(path, write)


# ---- CSV ---------------------------------------------------------------------------------------------------------

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) gets a
    leading ``'``; numbers, and text that is a plain number such as ``-1.5``, are left alone."""
    if not isinstance(value, str) or not value.startswith(FORMULA_PREFIXES):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def csv_safe(df: Any) -> Any:
    """A copy of a pandas DataFrame with every text cell passed through ``neutralise_cell``."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or str(out[col].dtype) in ("string", "str"):
            out[col] = out[col].map(neutralise_cell)
    out.columns = [neutralise_cell(str(c)) for c in out.columns]
    return out
