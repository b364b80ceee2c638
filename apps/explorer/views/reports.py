"""Page 5, Reports: browse result.json / report.html files under the output folder and open them."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from apps.explorer import state
from probes.errors import IclensError

MAX_FILES = 500
MAX_HTML_BYTES = 30 << 20

st.title("Reports")
root = state.settings().out_dir
st.caption(f"Results and reports written by `iclens ... --out DIR` under `{root}`.")


def find_results(folder: Path, base: Path) -> dict[str, dict[str, Path]]:
    """{folder relative to base: {'result.json'|'report.html': path}}; files that resolve outside base are skipped."""
    found: dict[str, dict[str, Path]] = {}
    for pattern in ("result.json", "report.html"):
        for i, p in enumerate(sorted(folder.rglob(pattern))):
            if i >= MAX_FILES:
                break
            real = p.resolve()
            if real.is_file() and real.is_relative_to(base):
                found.setdefault(str(p.parent.relative_to(folder)) or ".", {})[pattern] = real
    return dict(sorted(found.items()))


with state.guard():
    folder = state.folder_box(root, "reports_sub", "reports", label="Folder (inside the output folder)",
                              placeholder="e.g. induction",
                              missing_root=f"run a command with --out {root}/NAME or start the explorer with "
                                           "--out-dir pointing at your results.")
    found = find_results(folder, root)
    if not found:
        raise IclensError(f"no result.json or report.html under {folder}: run e.g. "
                          f"`iclens probe induction --out {folder}/induction` first.")
    pick = st.selectbox(f"Results ({len(found)})", list(found), key="reports_pick")
    files = found[pick]
    if "report.html" in files:
        html_path = files["report.html"]
        size = html_path.stat().st_size
        if size > MAX_HTML_BYTES:
            st.warning(f"{html_path.name} is {size >> 20} MB; open it in a browser instead.")
        else:
            st.subheader("report.html")
            # iclens writes these reports itself; they hold plotly.js and need scripts to draw.
            st.iframe(html_path.read_text(encoding="utf-8", errors="replace"), height=900)
    if "result.json" in files:
        st.subheader("result.json")
        try:
            data = json.loads(files["result.json"].read_text(encoding="utf-8"))
        except ValueError as e:
            raise IclensError(f"{files['result.json']} is not valid JSON ({e}): re-run the command that wrote it.") from None
        st.json(data, expanded=1)
