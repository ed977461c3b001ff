"""HTML pieces every summary page uses: embedded images, tables, the small Markdown subset of
``compare.md``, relative links and the atomic page write (a page is never half-written)."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extractors.io import atomic_path


def img(path: Path, width: int = 900) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" width="{width}" alt="{html.escape(path.name)}"/>'


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def markdown_to_html(md: str) -> str:
    """Pipe tables of a Markdown text (``compare.md``) as HTML tables, other non-empty lines as
    paragraphs, all escaped. Why: a browser shows Markdown as raw pipes; this covers the subset the
    workflow writes (no inline markup), not Markdown in general."""
    out: list[str] = []
    rows: list[list[str]] = []

    def flush() -> None:
        if rows:
            out.append(table(rows[0], rows[1:]))
            rows.clear()

    for line in md.splitlines():
        cells = line.strip()
        if cells.startswith("|") and cells.endswith("|"):
            row = [c.strip() for c in cells[1:-1].split("|")]
            if not all(c and set(c) <= set(":-") for c in row):  # the |---|---:| separator line
                rows.append(row)
            continue
        flush()
        if cells:
            out.append(f"<p>{html.escape(cells)}</p>")
    flush()
    return "".join(out)


# Recipe fields that only one flow method reads: shown only when that method is the recipe's.
def link(path: Path, base: Path) -> str:
    """A relative link from the page to a file of the same run (works when the results folder is copied)."""
    rel = os.path.relpath(Path(path).resolve(), Path(base).resolve())
    return f'<a href="{html.escape(Path(rel).as_posix(), quote=True)}">{html.escape(Path(path).name)}</a>'


STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px}.banner{background:#c00;color:#fff;padding:8px;"
          "font-weight:bold}")


def write_page(out_html: Path | str, title: str, parts: Sequence[str]) -> None:
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
