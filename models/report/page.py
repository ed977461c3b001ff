"""HTML pieces every summary page uses: embedded images, tables (sortable ones too), relative links and the
atomic page write (a page is never half-written)."""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extractors.io import atomic_path


def img(path: Path, width: int = 900, alt: str | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<img src="data:image/png;base64,{data}" width="{width}" '
            f'alt="{html.escape(alt if alt is not None else path.name, quote=True)}"/>')


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], cls: str | None = None) -> str:
    """An HTML table, every cell escaped; ``cls="sortable"`` makes a click on a header sort by that column
    (:data:`SORT_JS`, numbers as numbers)."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    attr = f' class="{html.escape(cls, quote=True)}"' if cls else ""
    return f"<table{attr}><tr>{head}</tr>{body}</table>"


def link(path: Path, base: Path) -> str:
    """A relative link from the page to a file of the same run (works when the results folder is copied)."""
    rel = os.path.relpath(Path(path).resolve(), Path(base).resolve())
    return f'<a href="{html.escape(Path(rel).as_posix(), quote=True)}">{html.escape(Path(path).name)}</a>'


# Click a header of a table.sortable: its rows sorted by that column (again: reversed); cells that read as
# numbers sort as numbers. A few lines inline, so the page stays one file that works offline.
SORT_JS = ("document.querySelectorAll('table.sortable th').forEach((th,i)=>{th.title='click to sort';"
           "th.style.cursor='pointer';th.addEventListener('click',()=>{const t=th.closest('table');"
           "const rows=[...t.querySelectorAll('tr')].slice(1);const up=th.dataset.up=th.dataset.up==='1'?'0':'1';"
           "const key=r=>{const v=r.children[i].textContent;const n=parseFloat(v);return isNaN(n)?v:n;};"
           "rows.sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(up==='1'?1:-1);});"
           "rows.forEach(r=>r.parentNode.appendChild(r));});});")

STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 7px}th{font-size:92%}.banner{background:#c00;color:#fff;padding:8px;"
          "font-weight:bold}.note{color:#444;font-size:90%}")


def write_page(out_html: Path | str, title: str, parts: Sequence[str]) -> None:
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{STYLE}</style></head><body>{''.join(parts)}<script>{SORT_JS}</script></body></html>"
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
