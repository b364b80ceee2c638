"""The Typer application and the helpers every CLI command shares.

Commands live in `apps/commands/<capability>.py` and attach themselves to the
sub-apps below. Shared behaviour:

- `--seed`, `--device`, `--out` on every command (DESIGN.md convention 10);
- `prepare_out(out)` checks the output folder is writable *before* any work, so a
  bad `--out` fails in a second and never clobbers earlier results;
- `IclensError` (bad input) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import typer

from probes.errors import IclensError

app = typer.Typer(
    name="iclens",
    help="Mechanistic interpretability of in-context learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
probe_app = typer.Typer(help="Probe a pretrained model through hooks.", no_args_is_help=True)
train_app = typer.Typer(help="Train a toy model from scratch.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a trained toy-model run.", no_args_is_help=True)
report_app = typer.Typer(help="Scripted attribution / circuit reports.", no_args_is_help=True)
app.add_typer(probe_app, name="probe")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(report_app, name="report")

SEED_OPT = typer.Option(0, "--seed", help="Random seed; a fixed seed reproduces the run.")
DEVICE_OPT = typer.Option("auto", "--device", help="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1', ...")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch RNGs."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_out(out: Path) -> Path:
    """Create `out` if needed and check it is a writable folder; raise IclensError if not."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise IclensError(f"--out {out} is a file, not a folder: pass a folder path.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise IclensError(f"cannot create --out {out} ({e.strerror}): choose a writable folder.") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise IclensError(f"--out {out} is not writable: choose a writable folder.")
    return out


def fail(message: str) -> None:
    """Print one line to stderr and exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise SystemExit(2)
