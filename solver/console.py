"""What the console entry point adds around the typer app: ``--version``, and click's usage errors (unknown
option, bad choice, missing argument) as one line ``infersave: error: ...`` with exit 2 instead of a boxed
multi-line message. Imports nothing of the project, so ``infersave --help`` stays fast."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import typer

try:
    import typer._click as click  # the click that typer >= 0.26 vendors
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer on plain click
    import click  # type: ignore[no-redef]
    from click import get_current_context  # type: ignore[no-redef]


def print_version(value: bool) -> None:
    """``--version`` callback."""
    if value:
        from importlib import metadata

        try:
            version = metadata.version("infersave")
        except metadata.PackageNotFoundError:  # pragma: no cover - a checkout that was never installed
            version = "unknown"
        typer.echo(f"infersave {version}")
        raise typer.Exit(0)


FOLDER_OUTPUTS = "infersave.folder_outputs"  # click context meta: file outputs given with a trailing separator


def file_output(field: str) -> Callable[[str], Path]:
    """Parser of a file output option. typer makes a ``Path`` of the text, which drops a trailing ``/``: an output
    given as ``newdir/`` would be written as a file named ``newdir``. The text is remembered in the click context
    (``folder_outputs``) and the command refuses it (exit 2) before it runs."""

    def parse(text: str) -> Path:
        if text.endswith(("/", os.sep)):
            ctx = get_current_context(silent=True)
            if ctx is not None:
                ctx.meta.setdefault(FOLDER_OUTPUTS, []).append((text, field))
        return Path(text)

    return parse


FILE_OUT: dict[str, Any] = {"metavar": "FILE", "parser": file_output("--out")}  # typer.Option keywords of --out


def folder_outputs() -> list[tuple[str, str]]:
    """(text, option) of each file output of the running command that was given with a trailing separator."""
    ctx = get_current_context(silent=True)
    return list(ctx.meta.get(FOLDER_OUTPUTS, [])) if ctx is not None else []


def run_app(app: Any, argv: list[str] | None = None) -> int:
    """Run ``app`` and return its exit code; usage errors are one line on stderr (exit 2), a bare command group
    prints its help (exit 0)."""
    try:
        code = app(args=argv, prog_name="infersave", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare ``infersave`` / ``infersave catalog``
        typer.echo(exc.ctx.get_help() if exc.ctx else str(exc))
        return 0
    except click.exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "infersave"
        message = " ".join(exc.format_message().replace("Value error, ", "").split())
        typer.echo(f"infersave: error: {message} (see '{command} --help')", err=True)
        return 2
    except typer.Abort:
        typer.echo("infersave: error: interrupted; no output written", err=True)
        return 130
    except click.exceptions.ClickException as exc:
        typer.echo(f"infersave: error: {' '.join(exc.format_message().split())}", err=True)
        return exc.exit_code
    return code if isinstance(code, int) else 0


__all__ = ["FILE_OUT", "file_output", "folder_outputs", "print_version", "run_app"]
