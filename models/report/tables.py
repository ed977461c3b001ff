"""The metric tables every page and ``snakemake --report`` shows, rounded and with the columns an average is
taken over: the localizers' mAP per tIoU (Avg's thresholds in the header), per-class AP with the number of
test events (worst class first, sortable), EAR's ten F-scores with each run's difference from its
label-shuffled control, and one small HTML page per ``metrics.json`` (the report's readable view of it)."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.report.page import table, write_page
from models.run.compare import avg_header


def map_table(runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Rows = runs (label, ``metrics.json``), columns = mAP (%) at every tIoU of the Avg (headed by the bare
    threshold, as the papers' tables), then the Avg."""
    tious = [float(t) for t in runs[0][1].get("tious", [])] if runs else []
    keys = list(runs[0][1].get("mAP", {})) if runs else []
    rows = [[label, *(f"{100 * float(met.get('mAP', {}).get(k, float('nan'))):.1f}" for k in keys),
             f"{100 * float(met['avg']):.1f}"] for label, met in runs]
    return table(["model \\ tIoU", *keys, avg_header(tious)], rows)


def per_class_rows(runs: Sequence[tuple[str, dict[str, Any]]],
                   n_events: dict[str, int] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of per-class AP (%): class, test events, then AP@0.5 and Avg of every run; the
    rows sorted worst first by the first run's Avg. ``n_events`` (class -> test events) stands in for
    ``metrics.json`` files written before they stored ``n_events_per_class``."""
    if not runs:
        return [], []
    first = runs[0][1]
    tious = [float(t) for t in first.get("tious", [])]
    i50 = min(range(len(tious)), key=lambda i: abs(tious[i] - 0.5)) if tious else 0
    counts = {**(n_events or {}), **first.get("n_events_per_class", {})}
    classes = sorted(first.get("per_class", {}), key=lambda c: (_mean(first["per_class"][c]), str(c)))
    header = ["class", "test events"]
    for label, _ in runs:
        header += [f"{label} AP@0.5", f"{label} {avg_header(tious)}"]
    rows = []
    for c in classes:
        row = [str(c), str(counts.get(c, "?"))]
        for _, met in runs:
            ap = met.get("per_class", {}).get(c)
            row += [f"{100 * ap[i50]:.1f}", f"{100 * _mean(ap):.1f}"] if ap else ["–", "–"]
        rows.append(row)
    return header, rows


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs) / len(xs)) if xs else 0.0


def per_class_table(runs: Sequence[tuple[str, dict[str, Any]]], n_events: dict[str, int] | None = None) -> str:
    header, rows = per_class_rows(runs, n_events)
    return table(header, rows, cls="sortable per-class")


def avvp_delta_rows(runs: Sequence[tuple[str, dict[str, Any]]], keys: Sequence[str]) -> list[list[str]]:
    """Per non-control run, its test F-score minus the label-shuffled control's on every column
    (percentage points, signed). Why: a control can score high where a model's silence is rewarded (a
    clip and modality with neither ground truth nor prediction scores 1.0), so the comparison must be made
    on every column, not on Type@AV alone."""
    test = {m: r.get("test") for m, r in runs}
    ctrl = test.get("shuffled")
    if not ctrl:
        return []
    return [[mode, *(f"{100 * (t[k] - ctrl[k]):+.1f}" for k in keys)]
            for mode, t in test.items() if mode != "shuffled" and t]


def write_metrics_page(metrics_json: Path | str, out_html: Path | str, title: str) -> None:
    """One ``metrics.json`` as a short page of rounded tables (``snakemake --report`` shows it instead of
    the raw JSON): a localizer's mAP per tIoU and per-class AP, or an EAR run's F-scores (test, and the
    pseudo-labels' where it has them), with the run's provenance fields beneath."""
    met = json.loads(Path(metrics_json).read_text())
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if "mAP" in met:
        parts += ["<h2>Test-split mAP (%) at each tIoU threshold</h2>", map_table([(str(met.get("model", "")), met)]),
                  f"<p>{html.escape(avg_header(met.get('tious', [])))}: the mean of the columns; "
                  f"{met.get('n_videos', '?')} test video(s), {met.get('n_predictions', '?')} predictions.</p>",
                  "<h2>Per-class AP (%), worst first</h2>", per_class_table([(str(met.get("model", "")), met)])]
        facts = {k: met.get(k) for k in ("model", "checkpoint", "recipe", "selection", "ema_weights",
                                          "full_length", "n_videos_without_features") if k in met}
    else:
        from models.avvp.metrics import KEYS

        def pct(d: dict[str, float] | None) -> list[str]:
            return [f"{100 * d[k]:.1f}" if d else "–" for k in KEYS]

        sel = met.get("selection") or {}
        rows = [["test", *pct(met.get("test"))]]
        if sel.get("val"):
            rows.append([f"validation, epoch {sel.get('epoch')} (chose it)", *pct(sel["val"])])
        parts += ["<h2>F-score (%)</h2>", table(["split", *KEYS], rows)]
        pl = {"train": met.get("pseudo_labels_train"), **(met.get("pseudo_labels") or {})}
        pl_rows = [[split, *pct(d)] for split, d in pl.items() if d]
        if pl_rows:
            parts += ["<h2>Its pseudo-labels, F-score (%)</h2>", table(["split", *KEYS], pl_rows)]
        facts = {k: met.get(k) for k in ("mode", "shuffled_labels", "selection", "seed", "seconds", "test_videos")
                 if k in met}
    parts += ["<h2>Run</h2>", f"<pre>{html.escape(json.dumps(_rounded(facts), indent=1, default=str))}</pre>",
              f"<p>All digits: {html.escape(Path(metrics_json).name)} beside this page.</p>"]
    write_page(out_html, title, parts)


def _rounded(obj: Any) -> Any:
    """Floats to 4 significant digits, recursively (``0.30000000000000004`` -> ``0.3``); validation scores
    of a selection are in the table above, not repeated."""
    if isinstance(obj, float):
        return float(f"{obj:.4g}")
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items() if not (k == "val" and isinstance(v, dict))}
    if isinstance(obj, list | tuple):
        return [_rounded(v) for v in obj]
    return obj
