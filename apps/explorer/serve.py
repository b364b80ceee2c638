"""ASGI entry of `iclens explore`: the explorer (app.py) plus a warm-up at server start.

`streamlit run serve.py` serves `app` below. Its lifespan starts one background
thread (`state.warm_up`) that loads the start model into the explorer's model cache and runs the first
page's forward pass on the default prompt, so both are ready (or nearly) when the
browser connects instead of starting then. A session that asks for the model while
the warm-up still loads it waits on the same cache entry (Streamlit computes a cached
value once per key); a warm-up that fails leaves nothing cached, and the page then
shows the error itself.
"""

from __future__ import annotations

import sys
import threading
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402


@asynccontextmanager
async def lifespan(_app):
    from apps.explorer.state import warm_up

    threading.Thread(target=warm_up, name="iclens-warm-up", daemon=True).start()
    yield


app = st.App(str(Path(__file__).with_name("app.py")), lifespan=lifespan)
