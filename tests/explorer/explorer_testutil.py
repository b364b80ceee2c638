"""Helpers for reading what an AppTest run drew: tables, plotly figures and their arrays."""

from __future__ import annotations

import base64
import json

import numpy as np


def errors(at) -> list[str]:
    return [e.value for e in at.error]


def frame_with(at, column: str):
    """The first dataframe on the page that has `column`."""
    for d in at.dataframe:
        if column in d.value.columns:
            return d.value
    raise AssertionError(f"no table with a {column!r} column; tables: {[list(d.value.columns) for d in at.dataframe]}")


def figures(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def by_title(at) -> dict[str, dict]:
    return {f["layout"]["title"]["text"]: f for f in figures(at)}


def array(v) -> np.ndarray:
    """A plotly JSON array: a plain list, or {'dtype', 'bdata' (base64), 'shape'}."""
    if isinstance(v, dict):
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        return a.reshape([int(n) for n in str(v.get("shape", len(a))).split(",")]).astype(float)
    return np.asarray(v, dtype=float)
