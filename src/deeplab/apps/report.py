"""A self-contained HTML report: a results table, figures, and rows of images side by side."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deeplab.atomic import atomic_write

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
h1 { margin-bottom: 0.2em; } p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
figure { display: inline-block; margin: 4px; text-align: center; vertical-align: top; }
figure img { max-width: 320px; border: 1px solid #ddd; image-rendering: pixelated; }
figure.plot img { max-width: 640px; image-rendering: auto; }
figcaption { font-size: 0.85em; color: #444; }
table.grid td, table.grid th { border: none; padding: 2px; text-align: center; vertical-align: middle; }
table.grid img { width: 190px; border: 1px solid #ddd; image-rendering: pixelated; display: block; }
table.grid th { font-weight: 600; font-size: 0.9em; }
div.legend { margin: 0.5em 0 1em; } div.legend span { margin-right: 1.2em; white-space: nowrap; }
div.legend i { display: inline-block; width: 1em; height: 1em; vertical-align: -0.15em; margin-right: 0.3em;
  border: 1px solid #888; }
td.wrap, th.wrap { text-align: left; max-width: 32em; }
"""


@dataclass
class Report:
    """Collects sections and writes them as one index.html next to the images it links."""

    title: str
    lead: str = ""
    sections: list[str] = field(default_factory=list)

    def heading(self, text: str, note: str = "") -> None:
        """Start a new section."""
        self.sections.append(f"<h2>{html.escape(text)}</h2>")
        if note:
            self.sections.append(f"<p>{html.escape(note)}</p>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], wrap: bool = False) -> None:
        """Add a table; floats are shown with 4 significant decimals. ``wrap``: left-aligned,
        wrapped text cells (e.g. claims with their sources) instead of right-aligned numbers."""
        cls = ' class="wrap"' if wrap else ""
        cells = "".join(f"<th{cls}>{html.escape(str(h))}</th>" for h in header)
        body = [f"<tr>{cells}</tr>"]
        for row in rows:
            body.append("<tr>" + "".join(f"<td{cls}>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>")
        self.sections.append("<table>" + "".join(body) + "</table>")

    def legend(self, classes: Sequence[str], palette: Sequence[Sequence[int]]) -> None:
        """One colour key for the whole page: a swatch and a name per class."""
        items = [
            f'<span><i style="background: rgb({r},{g},{b})"></i>{html.escape(name)}</span>'
            for name, (r, g, b) in zip(classes, palette)
        ]
        self.sections.append('<div class="legend">' + "".join(items) + "</div>")

    def grid(self, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        """Images in a grid: one row per example, one column per kind, each column named once."""
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = [
            "<tr>"
            + "".join(f'<td><img src="{html.escape(src)}" alt="{html.escape(c)}"></td>' for src, c in zip(row, columns))
            + "</tr>"
            for row in rows
        ]
        self.sections.append(f'<table class="grid"><tr>{head}</tr>{"".join(body)}</table>')

    def figures(self, items: Sequence[tuple[str, str]], plot: bool = False) -> None:
        """Add a row of images given as (relative path, caption)."""
        cls = ' class="plot"' if plot else ""
        figs = [
            f'<figure{cls}><img src="{html.escape(src)}" alt="{html.escape(cap)}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            for src, cap in items
        ]
        self.sections.append("<div>" + "".join(figs) + "</div>")

    def write(self, folder: str | Path) -> Path:
        """Write index.html into folder and return its path."""
        path = Path(folder) / "index.html"
        lead = f'<p class="lead">{html.escape(self.lead)}</p>' if self.lead else ""
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f"{lead}{''.join(self.sections)}</body></html>"
        )
        atomic_write(path, lambda f: f.write(page.encode("utf-8")))
        return path


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
