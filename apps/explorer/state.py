"""The explorer's shared state: settings, cached models and results, choices, errors, safe paths.

DESIGN.md convention 8: models load once per process (`st.cache_resource`), results
are cached by their inputs (`st.cache_data`), per-user choices live in
`st.session_state`. Every page runs inside `guard()`, which turns an `IclensError`
into its one-line message (and any other exception into a one-line error) so the
app never shows a traceback and keeps working for the next input.

Settings come from the environment, set by `iclens explore`:

- ``ICLENS_EXPLORER_MODEL``: the model selected at start (default ``gemma-3-270m``);
- ``ICLENS_EXPLORER_RUNS_DIR``: the folder of toy-model training runs (default ``out``);
- ``ICLENS_EXPLORER_OUT_DIR``: the folder of results and reports (default ``out``);
- ``ICLENS_EXPLORER_DEVICE``: ``auto`` (default), ``cpu``, ``cuda``, ...

The app reads and writes only under the runs and out folders; `safe_path` resolves
a typed path against one of them and refuses anything that escapes it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from apps.explorer import compute
from probes.errors import IclensError

DEFAULT_PROMPT = "the cat saw the dog . the cat saw the"
DEFAULT_TOP_K = 10
OTHER_MODEL = "other: type a Hugging Face id"


@dataclass(frozen=True)
class Settings:
    model: str
    runs_dir: Path
    out_dir: Path
    device: str


def settings() -> Settings:
    """The explorer's settings from the environment (see the module docstring)."""
    return Settings(
        model=os.environ.get("ICLENS_EXPLORER_MODEL", "gemma-3-270m"),
        runs_dir=Path(os.environ.get("ICLENS_EXPLORER_RUNS_DIR", "out")).resolve(),
        out_dir=Path(os.environ.get("ICLENS_EXPLORER_OUT_DIR", "out")).resolve(),
        device=os.environ.get("ICLENS_EXPLORER_DEVICE", "auto"),
    )


def safe_path(root: str | os.PathLike, typed: str = "") -> Path:
    """`typed` (relative to `root`, or absolute) resolved, symlinks followed; IclensError if it leaves `root`.

    ``..``, absolute paths elsewhere, ``~`` and symlinks pointing outside all count as
    leaving. An empty `typed` means `root` itself.
    """
    base = Path(root).resolve()
    typed = (typed or "").strip()
    candidate = (base / typed).resolve()
    if not candidate.is_relative_to(base):
        raise IclensError(f"{typed!r} is outside {base}: type a path inside that folder.")
    return candidate


@contextmanager
def guard() -> Iterator[None]:
    """Show bad input as one `st.error` line and stop the block; never a traceback.

    Streamlit's own stop/rerun signals are BaseExceptions and pass through, so the
    Stop button and a changed input still cancel a running computation.
    """
    try:
        yield
    except IclensError as e:
        st.error(str(e))
    except Exception as e:  # a bug, but the page must stay usable: one line, no traceback
        first = (str(e).strip().splitlines() or [""])[0][:200]
        st.error(f"could not compute this ({type(e).__name__}: {first}); try another input or model.")


def remembered(key: str, default: Any, scope: str) -> str:
    """The widget key for a choice that survives page switches; use it as the widget's `key`.

    Streamlit ties a widget's state to the page that drew it and forgets it when a page
    without it runs. The choice itself is kept under `key` and copied into the widget
    key ``<scope>.<key>`` whenever that widget is about to be drawn afresh. `scope` names
    the page (or ``sidebar``). After drawing: ``st.session_state[key] = <widget value>``.
    """
    st.session_state.setdefault(key, default)
    wkey = f"{scope}.{key}"
    if wkey not in st.session_state:
        st.session_state[wkey] = st.session_state[key]
    return wkey


def folder_box(root: Path, key: str, scope: str, *, label: str, placeholder: str, missing_root: str) -> Path:
    """A remembered text box for a folder inside `root`; returns it, checked.

    Raises IclensError when `root` does not exist (`missing_root` says what to run),
    when the typed path leaves `root` (`safe_path`), or when it is not a folder.
    """
    typed = st.text_input(label, key=remembered(key, "", scope), placeholder=placeholder)
    st.session_state[key] = typed
    if not root.is_dir():
        raise IclensError(f"the folder {root} does not exist: {missing_root}")
    folder = safe_path(root, typed)
    if not folder.is_dir():
        raise IclensError(f"{folder} is not a folder: type a folder inside {root}.")
    return folder


def prompt_box(scope: str, label: str = "Prompt") -> str:
    """The shared prompt (the same text on every page)."""
    wkey = remembered("prompt", DEFAULT_PROMPT, scope)
    st.session_state["prompt"] = st.text_area(label, key=wkey, height=90,
                                              help="Ctrl+Enter to apply. Longer than the model's context is refused.")
    return st.session_state["prompt"]


# ----------------------------------------------------------------------------- models


@st.cache_data(ttl=300, show_spinner=False)
def _available() -> list[dict[str, Any]]:
    from probes.models import available_models

    return available_models()


def model_picker() -> str:
    """Sidebar model choice (embedded, tiny, or a typed Hugging Face id); stored as session_state['model']."""
    rows = [r for r in _available() if r["installed"]]
    names = [r["name"] for r in rows]
    default = settings().model
    options = names + [OTHER_MODEL]
    kinds = {r["name"]: f"{r['name']} ({r['kind']}{', cached' if r['kind'] == 'embedded' and r['cached'] else ''})" for r in rows}
    wkey = remembered("model_choice", default if default in names else OTHER_MODEL, "sidebar")
    choice = st.sidebar.selectbox("Model", options, key=wkey, format_func=lambda n: kinds.get(n, n))
    st.session_state["model_choice"] = choice
    if choice == OTHER_MODEL:
        tkey = remembered("model_typed", "" if default in names else default, "sidebar")
        typed = st.sidebar.text_input("Hugging Face id", key=tkey, placeholder="org/name")
        st.session_state["model_typed"] = typed
        choice = typed
    st.session_state["model"] = choice
    return choice


def model_name() -> str:
    """The model chosen in the sidebar, checked (IclensError for an empty name or a path)."""
    return compute.check_model_name(st.session_state.get("model", settings().model))


@st.cache_resource(max_entries=2, show_spinner=False)
def _load(name: str, device: str):
    from probes.models import load_model

    return load_model(name, device=device)


def get_model(name: str | None = None):
    """The loaded model (once per process per name and device), announced in a caption."""
    name = name or model_name()
    with st.spinner(f"loading {name} (once per session) ..."):
        model = _load(name, settings().device)
    cfg = model.cfg
    st.caption(f"**{name}**: {cfg.n_layers} layers x {cfg.n_heads} heads, d_model {cfg.d_model}, "
               f"vocabulary {cfg.d_vocab}, context {cfg.n_ctx} tokens")
    return model


# ----------------------------------------------------------------------------- cached results


@st.cache_data(max_entries=64, show_spinner=False)
def prompt_summary(name: str, device: str, prompt: str, k: int) -> dict[str, Any]:
    return compute.prompt_summary(_load(name, device), prompt, k)


@st.cache_data(max_entries=16, show_spinner=False)
def attention_patterns(name: str, device: str, prompt: str) -> dict[str, Any]:
    return compute.attention_patterns(_load(name, device), prompt)


@st.cache_data(max_entries=32, show_spinner=False)
def repeated_example(name: str, device: str, layer: int, seq_len: int, seed: int) -> dict[str, Any]:
    return compute.repeated_example(_load(name, device), layer, seq_len, seed)


@st.cache_resource(show_spinner=False)
def _long_results() -> tuple[OrderedDict, threading.Lock]:
    return OrderedDict(), threading.Lock()


def cached_long(key: tuple, compute: Callable[[], Any], max_entries: int = 8) -> Any:
    """`compute()` once per `key` per process (the newest `max_entries` kept).

    For computations that report progress: `st.cache_data` records the Streamlit
    calls a cached function makes and replays them on a cache hit, which fails for a
    progress bar drawn outside it. A failed or cancelled run stores nothing.
    """
    store, lock = _long_results()
    with lock:
        if key in store:
            store.move_to_end(key)
            return store[key]
    value = compute()
    with lock:
        store[key] = value
        while len(store) > max_entries:
            store.popitem(last=False)
    return value


def induction_scan(name: str, device: str, n_prompts: int, seq_len: int, seed: int,
                   progress: Callable[[float, str], None] | None = None):
    """`probes.induction.scan` on the model, cached by its inputs; `progress(fraction, text)` is not part of the key."""
    from probes.induction import scan

    return cached_long(("induction", name, device, n_prompts, seq_len, seed), lambda: scan(
        _load(name, device), n_prompts=n_prompts, seq_len=seq_len, seed=seed, batch_size=min(8, n_prompts),
        progress=progress))


def patching_study(name: str, device: str, spec: tuple, method: str, threshold: float, ablation: str,
                   progress: Callable[[float, str], None] | None = None) -> dict[str, Any]:
    """`apps.explorer.study.patching_study`, cached by its inputs (`spec` as a tuple of (key, value))."""
    from apps.explorer.study import patching_study as run

    return cached_long(("patching", name, device, spec, method, threshold, ablation), lambda: run(
        _load(name, device), dict(spec), method=method, threshold=threshold, ablation=ablation, progress=progress))


@st.cache_data(max_entries=32, show_spinner=False)
def toy_summary(run_dir: str, mtime: int) -> dict[str, Any]:
    """`toy_runs.run_summary`, cached by folder and its modification time (a run still training changes it)."""
    from apps.explorer import toy_runs

    return toy_runs.run_summary(Path(run_dir))


@st.cache_data(max_entries=32, show_spinner=False)
def toy_error_curve(run_dir: str, mtime: int) -> dict[str, list[float]]:
    from apps.explorer import toy_runs

    return toy_runs.error_curve(Path(run_dir))


@st.cache_data(max_entries=64, show_spinner=False)
def toy_attention(run_dir: str, step: int, mtime: int) -> dict[str, Any]:
    from apps.explorer import toy_runs

    return toy_runs.checkpoint_attention(Path(run_dir), step)


def warm_up() -> None:
    """Load the start model and compute the first page on the default prompt; run by serve.py at server start.

    Errors are left to the page, which reports the same error as one line when it runs.
    """
    try:
        cfg = settings()
        name = compute.check_model_name(cfg.model)
        _load(name, cfg.device)
        prompt_summary(name, cfg.device, DEFAULT_PROMPT, DEFAULT_TOP_K)
    except Exception:  # noqa: BLE001
        pass


def run_button(label: str, key: str, params: tuple, compute: Callable[..., Any], what: str) -> Any | None:
    """A Run button for a long computation; its result once clicked for these `params`, else None.

    After a click, `compute(*params, progress=...)` runs under a progress bar (a cached
    result returns at once), and reruns keep showing it until an input changes; before
    that, a hint says to press the button.
    """
    if st.button(label, type="primary", key=key):
        st.session_state[f"{key}_params"] = params
    if st.session_state.get(f"{key}_params") != params:
        st.info(f"Press **{label}** (Stop, top right, cancels it; no hook stays on the model).")
        return None
    bar, update = progress_bar(what)
    result = compute(*params, progress=update)
    bar.empty()
    return result


def progress_bar(text: str):
    """A Streamlit progress bar and a `progress(fraction, message)` callback that updates it.

    Each update is a Streamlit call, so Stop (or any changed input) interrupts the
    computation there; the library's hooks sit in context managers and come off.
    """
    bar = st.progress(0.0, text=text)

    def update(fraction: float, message: str = "") -> None:
        bar.progress(min(1.0, max(0.0, float(fraction))), text=f"{text}: {message}" if message else text)

    return bar, update
