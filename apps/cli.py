"""`iclens` console entry point: loads every command module and maps bad input to exit 2."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import click

from apps import commands
from apps.cli_base import app, fail
from probes.errors import IclensError


def _load_commands() -> None:
    for mod in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{mod.name}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. IclensError -> one line + exit 2; Ctrl-C -> exit 130."""
    _load_commands()
    try:
        app(args=argv, standalone_mode=False)
    except IclensError as e:
        fail(str(e))
    except click.exceptions.Abort:
        typer_abort()
    except click.ClickException as e:  # usage errors: bad option, missing argument
        fail(e.format_message())
    except KeyboardInterrupt:
        typer_abort()


def typer_abort() -> None:
    print("interrupted", file=sys.stderr)
    raise SystemExit(130)


if __name__ == "__main__":
    main()
