"""Run the `iclens` CLI in-process and return its exit code (0 when it returns normally)."""

from __future__ import annotations

from apps.cli import main


def run_cli(argv: list[str]) -> int:
    try:
        main(argv)
    except SystemExit as e:
        return e.code
    return 0


def run_cli_captured(argv: list[str], capsys):
    """(exit code, captured stdout/stderr) of one CLI call."""
    code = run_cli(argv)
    return code, capsys.readouterr()
