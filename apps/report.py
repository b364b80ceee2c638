"""Standalone HTML reports: one self-contained file, plotly.js inlined once, works offline.

A report is a title, a short summary table of key/value facts, and a list of
sections, each a heading, an optional explanatory paragraph and any number of
plotly figures or HTML snippets. `write_report` writes it atomically beside the
`result.json` it describes.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from probes.results import atomic_write_text, to_jsonable

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table.facts{border-collapse:collapse;margin:1rem 0} table.facts td{padding:.15rem .8rem;border-bottom:1px solid #eee;font-size:.9rem}
table.facts td:first-child{color:#666} p.note{color:#444;font-size:.95rem;max-width:900px} pre{background:#f6f6f6;padding:.6rem;overflow:auto;font-size:.8rem}
"""


@dataclass
class Section:
    """One part of a report: heading, explanation, and figures / HTML snippets in order."""

    title: str
    text: str = ""
    items: list[go.Figure | str] = field(default_factory=list)


def _facts_table(facts: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(to_jsonable(v)))}</td></tr>" for k, v in facts.items()
    )
    return f'<table class="facts">{rows}</table>'


def render_report(title: str, sections: list[Section], facts: dict[str, Any] | None = None) -> str:
    """The report as one HTML string (plotly.js embedded, no network needed to view it)."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if facts:
        parts.append(_facts_table(facts))
    for i, sec in enumerate(sections):
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        if sec.text:
            parts.append(f'<p class="note">{html.escape(sec.text)}</p>')
        for j, item in enumerate(sec.items):
            if isinstance(item, go.Figure):
                parts.append(item.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{i}-{j}"))
            else:
                parts.append(str(item))
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )


def json_block(obj: Any, max_chars: int = 4000) -> str:
    """A <pre> block with (the start of) `obj` as JSON, for configs in reports."""
    text = json.dumps(to_jsonable(obj), indent=1)
    if len(text) > max_chars:
        text = text[:max_chars] + "\n..."
    return f"<pre>{html.escape(text)}</pre>"


def write_report(path: str | Path, title: str, sections: list[Section], facts: dict[str, Any] | None = None) -> Path:
    """Render and atomically write a report to `path` (usually OUT/report.html)."""
    return atomic_write_text(path, render_report(title, sections, facts))
