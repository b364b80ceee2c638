"""`iclens explore`: start the Streamlit explorer (`streamlit run apps/explorer/serve.py`).

serve.py serves apps/explorer/app.py and, at server start, loads the start model in
the background so the first page is ready sooner (see its docstring).

Settings reach the app through environment variables (ICLENS_EXPLORER_MODEL,
ICLENS_EXPLORER_RUNS_DIR, ICLENS_EXPLORER_OUT_DIR, ICLENS_EXPLORER_DEVICE), so the
app reads the same settings under `streamlit run` and under Streamlit's AppTest.
Streamlit itself runs in a child process (`python -m streamlit run`); nothing here
imports it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from apps.cli_base import DEVICE_OPT, app, prepare_out
from probes.errors import IclensError

APP = Path(__file__).resolve().parents[1] / "explorer" / "serve.py"
ROOT = APP.parents[2]


def streamlit_command(*, port: int, headless: bool, address: str) -> list[str]:
    """The `python -m streamlit run` command line for the explorer."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.address", address,
        "--server.headless", "true" if headless else "false",
        "--browser.gatherUsageStats", "false",
        "--client.showErrorDetails", "none",  # the app shows one-line errors; never a traceback
        "--client.toolbarMode", "minimal",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
    ]


def explorer_env(*, model: str, runs_dir: Path, out_dir: Path, device: str) -> dict[str, str]:
    """os.environ plus the explorer's settings and the repository on PYTHONPATH."""
    env = dict(os.environ)
    env.update({
        "ICLENS_EXPLORER_MODEL": model, "ICLENS_EXPLORER_RUNS_DIR": str(runs_dir.resolve()),
        "ICLENS_EXPLORER_OUT_DIR": str(out_dir.resolve()), "ICLENS_EXPLORER_DEVICE": device,
        "PYTHONPATH": os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]),
    })
    return env


@app.command("explore")
def explore(
    model: str = typer.Option("gemma-3-270m", "--model", help="Model selected at start (embedded, tiny, or a Hugging Face id)."),
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    runs_dir: Path = typer.Option(Path("out"), "--runs-dir", help="Folder of toy-model runs (`iclens train ... --out`); the app reads and writes only here and in --out-dir."),
    out_dir: Path = typer.Option(Path("out"), "--out-dir", help="Folder of result.json / report.html files to browse."),
    headless: bool = typer.Option(False, "--headless", help="Do not open a browser window."),
    address: str = typer.Option("localhost", "--address", help="Interface to listen on (0.0.0.0 to serve other machines)."),
    device: str = DEVICE_OPT,
) -> None:
    """Open the Streamlit explorer: model & prompt, attention & heads, attribution, toy models, reports."""
    from probes.models import resolve_device

    if not 1 <= port <= 65535:
        raise IclensError(f"--port {port} is not a port number: use 1..65535 (default 8501).")
    if not model.strip():
        raise IclensError("--model is empty: pass a model name such as gemma-3-270m or tiny-llama.")
    resolve_device(device)  # a bad --device fails here, not inside the app
    for folder in {runs_dir, out_dir}:
        prepare_out(folder)
    cmd = streamlit_command(port=port, headless=headless, address=address)
    typer.echo(f"iclens explorer on http://{address}:{port} (model {model}; Ctrl-C stops it)", err=True)
    code = subprocess.call(cmd, env=explorer_env(model=model.strip(), runs_dir=runs_dir, out_dir=out_dir, device=device))
    if code:
        raise SystemExit(code)
