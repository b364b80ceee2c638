"""iclens explorer: `iclens explore` runs `streamlit run` on this file.

The sidebar (model choice, folders) is shared; each page lives in `pages/`.
Settings come from environment variables (see `apps.explorer.state`).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `streamlit run` puts only this folder on sys.path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from apps.explorer import state  # noqa: E402

st.set_page_config(page_title="iclens explorer", layout="wide")

PAGES = [
    st.Page("views/model.py", title="Model & prompt", url_path="model", default=True),
    st.Page("views/attention.py", title="Attention & heads", url_path="attention"),
    st.Page("views/attribution.py", title="Attribution", url_path="attribution"),
    st.Page("views/function_tokens.py", title="Function tokens", url_path="function-tokens"),
    st.Page("views/toy_models.py", title="Toy models", url_path="toy-models"),
    st.Page("views/icl_iwl.py", title="ICL vs IWL", url_path="icl-iwl"),
    st.Page("views/reports.py", title="Reports", url_path="reports"),
]
page = st.navigation(PAGES)

with st.sidebar:
    st.markdown("**iclens explorer**")
    state.model_picker()
    cfg = state.settings()
    st.caption(f"runs: `{cfg.runs_dir}`  \nreports: `{cfg.out_dir}`  \ndevice: `{cfg.device}`")

with state.guard():
    page.run()
