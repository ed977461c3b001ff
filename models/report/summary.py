"""A self-contained HTML summary per dataset: the page a person opens after ``snakemake --cores all``.

Images are embedded (base64) so the file can be mailed or copied off a cluster on its own. Outputs made
with random extractor weights get a red banner: their numbers say nothing about real accuracy.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from extractors.io import atomic_path


def _img(path: Path, width: int = 900) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" width="{width}" alt="{html.escape(path.name)}"/>'


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def provenance_rows(feature_files: Sequence[Path]) -> tuple[list[list[str]], bool]:
    """One row per (kind, weights) with the number of videos; True if any used random weights."""
    seen: dict[tuple[str, str, str], int] = {}
    any_random = False
    for f in feature_files:
        prov_path = Path(f).with_suffix(".json")
        if not prov_path.exists():
            continue
        prov = json.loads(prov_path.read_text())
        if prov.get("failed"):
            continue  # a failure record (failed_rows), not features
        weights = str(prov.get("weights", "?"))
        any_random |= weights == "random"
        digest = prov.get("sha256") or prov.get("weights_sha256") or ""
        if isinstance(digest, dict):
            digest = ", ".join(f"{k}:{str(v)[:12]}" for k, v in sorted(digest.items()))
        key = (Path(f).parent.name, weights, str(digest)[:40])
        seen[key] = seen.get(key, 0) + 1
    return [[k, w, d, n] for (k, w, d), n in sorted(seen.items())], any_random


def failed_rows(feature_files: Sequence[Path]) -> list[list[str]]:
    """(video, stage, reason) of the videos whose media or features job published a failure record
    (extractors.errors.write_failure) instead of features; one row per video."""
    from extractors.errors import read_failure

    rows: dict[str, list[str]] = {}
    for f in feature_files:
        record = read_failure(Path(f).with_suffix(".json"))
        if record is not None:
            rows.setdefault(Path(f).stem, [Path(f).stem, record["stage"], record["failed"]])
    return [rows[v] for v in sorted(rows)]


def write_summary(out_html: Path | str, dataset: str, recipe: dict[str, Any],
                  metrics: Sequence[Path] = (), compare_md: Path | None = None,
                  feature_files: Sequence[Path] = (), predictions: Sequence[Path] = (),
                  rejected: dict[str, str] | None = None) -> None:
    """Assemble the summary page from the workflow's outputs (paths as Snakemake gives them)."""
    prov_rows, any_random = provenance_rows([Path(f) for f in feature_files])
    failed = failed_rows([Path(f) for f in feature_files])
    any_random |= recipe.get("weights") == "random"
    parts = [f"<h1>avloc summary — dataset <code>{html.escape(dataset)}</code></h1>"]
    if any_random:
        parts.append('<div class="banner">WEIGHTS: RANDOM — features come from randomly initialised '
                     "extractors (offline demo). Metrics and predictions below exercise the pipeline; they "
                     "say nothing about real accuracy.</div>")
    if metrics:
        from models.run.compare import COLUMNS, metrics_row
        from models.run.pipeline import split_control

        rows, avg, n_videos = [], {}, set()
        for m in metrics:
            met = json.loads(Path(m).read_text())
            row = metrics_row(met)
            name, control = split_control(Path(m).parent.name)
            avg[(name, control)] = row["Avg"]
            n_videos.add(met.get("n_videos"))
            rows.append([f"{name} (shuffled labels: control)" if control else name]
                        + [f"{row[c]:.2f}" for c in COLUMNS])
        parts.append("<h2>Test-split mAP (%)</h2>")
        parts.append(_table(["model", *COLUMNS], rows))
        videos = ", ".join(str(n) for n in sorted(n_videos, key=str))
        parts.append(f"<p>Avg = mean over tIoU 0.1…0.9 (UnAV-100 protocol, docs/recipes.md), on {html.escape(videos)} test video(s).</p>")
        parts.extend(_control_verdicts(avg))
        for m in metrics:
            mdir = Path(m).parent
            if split_control(mdir.name)[1]:
                continue  # a control's timelines show nothing new; its row above is the point
            curve = mdir / "curve.png"
            if curve.exists():
                parts.append(f"<h3>Training curve — {html.escape(mdir.name)}</h3>{_img(curve, 700)}")
            timelines = sorted((mdir / "timelines").glob("*.png"))
            if timelines:
                parts.append(f"<h3>Timelines (test split) — {html.escape(mdir.name)}</h3>")
                parts.extend(_img(t) for t in timelines[:12])
    if compare_md is not None and Path(compare_md).exists():
        parts.append(f"<h2>Comparison</h2><pre>{html.escape(Path(compare_md).read_text())}</pre>")
    if predictions:
        parts.append("<h2>Predicted timelines (new videos)</h2>")
        for p in predictions:
            png = Path(p).with_suffix(".png")
            events = json.loads(Path(p).read_text()).get("events", [])
            parts.append(f"<h3>{html.escape(Path(p).stem)} — {len(events)} event(s)</h3>")
            if png.exists():
                parts.append(_img(png))
    parts.append("<h2>Provenance</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(recipe, indent=2, sort_keys=True))}</pre>")
    if prov_rows:
        parts.append(_table(["features", "weights", "weights sha256", "videos"], prov_rows))
    parts.append("<h2>Rejected videos</h2>")
    if rejected:
        parts.append(_table(["file", "reason"], sorted(rejected.items())))
    else:
        parts.append("<p>None: every video in the folder was decodable.</p>")
    parts.append("<h2>Failed videos</h2>")
    if failed:
        parts.append(f"<p>{len(failed)} admitted video(s) failed in their own job and are left out of the store, "
                     "training and evaluation (their ground truth counts as missed); delete the video's "
                     "media manifest / feature .json to retry it.</p>")
        parts.append(_table(["video", "stage", "reason"], failed))
    else:
        parts.append("<p>None: every admitted video gave features.</p>")
    _write_page(out_html, f"avloc {dataset}", parts)


def _control_verdicts(avg: dict[tuple[str, bool], float]) -> list[str]:
    """One sentence per model with a label-shuffled control: does it beat the control, and by how much.

    Why: with random extractor weights a number alone says little; the same model trained on permuted
    labels is the chance level that the features and the test split allow."""
    out = []
    for (name, control), ctrl in sorted(avg.items()):
        if not control or (name, False) not in avg:
            continue
        real = avg[(name, False)]
        ratio = f"{real / ctrl:.1f}x" if ctrl > 0 else "control at 0"
        verdict = "learned the events from the features" if real >= max(3 * ctrl, ctrl + 10) else \
            "did NOT clearly beat its control"
        out.append(f"<p><b>{html.escape(name)}</b>: Avg mAP {real:.1f} % vs {ctrl:.1f} % with shuffled training "
                   f"labels ({ratio}): {verdict}.</p>")
    return out


_STYLE = ("body{font-family:sans-serif;max-width:1000px;margin:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px}.banner{background:#c00;color:#fff;padding:8px;"
          "font-weight:bold}")


def _write_page(out_html: Path | str, title: str, parts: Sequence[str]) -> None:
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    with atomic_path(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")


AVVP_MODES = {"pseudo": "generated pseudo-labels", "video": "video-level labels only",
              "shuffled": "shuffled labels (control)"}


def pseudo_label_rows(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, str, dict[str, float]]]:
    """(labels, split, scores) of every stage-3 run that trained on pseudo-labels: the training split's
    scores (when it has ground truth), then the validation and test splits' (Table III)."""
    rows = []
    for mode, r in runs:
        splits = {"train": r.get("pseudo_labels_train"), **(r.get("pseudo_labels") or {})}
        # the control's val/test rows repeat the real ones: those splits keep their own labels
        for split in ("train",) if mode == "shuffled" else ("train", "val", "test"):
            if splits.get(split):
                rows.append((AVVP_MODES.get(mode, mode), split, splits[split]))
    return rows


def _avvp_protocol_lines(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Which epoch each run's test numbers come from, and how many test videos were scored: a clip or
    feature file missing shrinks the test split, and a number on fewer videos is not the paper's."""
    out = []
    for mode, r in runs:
        sel = r.get("selection") or {}
        name = html.escape(AVVP_MODES.get(mode, mode))
        if sel.get("val"):
            out.append(f"<p><b>{name}</b>: epoch {sel.get('epoch')} ({html.escape(str(sel.get('by')))}: "
                       f"{100 * sel['val']['seg_type']:.1f} % on the validation split).</p>")
        elif sel:
            out.append(f"<p><b>{name}</b>: {html.escape(str(sel.get('by')))} (no validation split).</p>")
    cov = next((r["test_videos"] for _, r in runs if r.get("test_videos")), None)
    if cov:
        if cov["missing"]:
            shown = ", ".join(cov["missing_ids"][:10]) + (" …" if cov["missing"] > 10 else "")
            out.append(f"<p><b>Test split: {cov['scored']} of {cov['listed']} videos scored</b>; {cov['missing']} "
                       f"had no clip or no features ({html.escape(shown)}), so these numbers are not on the full "
                       "test split.</p>")
        else:
            out.append(f"<p>Test split: all {cov['scored']} videos of its CSV scored.</p>")
    return out


def write_avvp_summary(out_html: Path | str, name: str, metrics: Sequence[Path],
                       stage1_json: Path | None = None, banner: str = "") -> None:
    """The EAR page of one AVVP benchmark: F-scores (%) per training-label mode (with the epoch chosen
    on the validation split), how many test videos were scored, the pseudo-labels' own scores on the
    validation and test splits (the paper's Table III; the training split's too when it has segment
    ground truth), training curves, parses."""
    import tempfile

    from models.avvp.metrics import KEYS
    from models.run.plots import plot_loss_curves

    parts = [f"<h1>EAR (AVVP) — benchmark <code>{html.escape(name)}</code></h1>"]
    if banner:
        parts.append(f'<div class="banner">{html.escape(banner)}</div>')
    runs = [(Path(m).parent.name, json.loads(Path(m).read_text())) for m in metrics]

    def pct(d: dict[str, float] | None) -> list[str]:
        return [f"{100 * d[k]:.1f}" if d else "–" for k in KEYS]

    parts.append("<h2>Test split, F-score (%)</h2>")
    parts.append(_table(["training labels", *KEYS], [[AVVP_MODES.get(m, m), *pct(r.get("test"))] for m, r in runs]))
    parts.append("<p>seg_* segment level, evt_* event level (HAN's evaluator, models/avvp/metrics.py); "
                 "type = Type@AV, event = Event@AV.</p>")
    parts.extend(_avvp_protocol_lines(runs))
    table3 = pseudo_label_rows(runs)
    if table3:
        parts.append("<h2>Pseudo-label quality, F-score (%) (the paper's Table III)</h2>")
        parts.append(_table(["pseudo-labels", "split", *KEYS], [[lab, split, *pct(d)] for lab, split, d in table3]))
        parts.append("<p>Stage 2's frozen generator labels each split with that split's video-level labels "
                     "(Eq. 9); the pseudo-labels are scored against the segment ground truth like a model's "
                     "parse. The paper reports the validation and test rows.</p>")
    curves = {f"stage 3, {AVVP_MODES.get(m, m)}": [h["loss"] for h in r.get("log", [])] for m, r in runs}
    if stage1_json is not None and Path(stage1_json).exists():
        s1 = json.loads(Path(stage1_json).read_text())
        curves = {"stage 1 (generator)": [h["loss"] for h in s1.get("log", [])], **curves}
        parts.append(f"<p>Stage 1: label migration {'on' if s1.get('migration') else 'off'}, "
                     f"{len(s1.get('log', []))} epochs, {s1.get('seconds', '?')} s.</p>")
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "curves.png"
        plot_loss_curves(png, curves, title=f"EAR training losses — {name}")
        parts.append(f"<h2>Training curves</h2>{_img(png, 700)}")
    for m, _ in runs:
        timelines = sorted((Path(metrics[0]).parent.parent / m / "timelines").glob("*.png"))
        if timelines:
            parts.append(f"<h3>Test parses — {html.escape(AVVP_MODES.get(m, m))}</h3>")
            parts.extend(_img(t) for t in timelines[:4])
    _write_page(out_html, f"avloc AVVP {name}", parts)
