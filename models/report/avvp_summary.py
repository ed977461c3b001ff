"""The EAR (audio-visual video parsing) summary page of one benchmark: its runs (pseudo-labels, video-level
labels, label-shuffled control), what each predicted and why a tiny test split can score 0.0."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.report.page import img, table, write_page
from models.report.summary import NO_ACCURACY
from models.report.tables import avvp_delta_rows

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


def predicted_event_counts(predictions_json: Path | str) -> dict[str, int]:
    """Events a stage-3 run predicted on the test split, per modality (``predictions.json``)."""
    videos = json.loads(Path(predictions_json).read_text()).get("videos", {})
    return {mod: sum(len(v.get(mod, [])) for v in videos.values()) for mod in ("audio", "visual")}


def _avvp_prediction_lines(metrics: Sequence[Path], runs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """How much each run predicted on the test split, and what a 0.0 means. Why: HAN's evaluator scores a
    class with ground truth and no prediction 0 (and a clip with neither 1.0), so a run that predicts
    nothing shows 0.0 wherever there is ground truth; on a tiny split that reads like a bug."""
    out = []
    for m, (mode, r) in zip(metrics, runs, strict=True):
        pred = Path(m).parent / "predictions.json"
        if not pred.exists() or not r.get("test"):
            continue
        n = predicted_event_counts(pred)
        name = html.escape(AVVP_MODES.get(mode, mode))
        if n["audio"] + n["visual"] == 0:
            out.append(f"<p><b>{name}</b>: predicted no event on the test clips, so every score with ground truth "
                       "behind it is 0 (HAN's evaluator: a class with ground truth and no prediction scores 0; a "
                       "clip and modality with neither scores 1.0). A 0.0 here is the model's silence, not a "
                       "fault of the metric.</p>")
        else:
            out.append(f"<p><b>{name}</b>: {n['audio']} audio and {n['visual']} visual event(s) predicted on the "
                       "test clips.</p>")
    cov = next((r["test_videos"] for _, r in runs if r.get("test_videos")), None)
    if cov and cov["scored"] < 10:
        out.append(f"<p>Only {cov['scored']} test clip(s): each F-score rests on a handful of segments and events, "
                   "so one event more or less moves it by tens of points, and the validation split's numbers "
                   "(above) can differ from the test split's by as much.</p>")
    return out


def event_matches(predictions_json: Path | str, test_npz: Path | str) -> dict[str, Any]:
    """How a run's predicted runs meet the ground-truth events at event level (HAN's rule: a maximal run of
    1 s segments matches an event of its class at mask IoU >= 0.5, no boundary tolerance): for every
    ground-truth event (audio and visual), the best IoU of a predicted run of its class, and the mean
    lengths. Why: segment-level F counts overlapping seconds, event-level F whole events, so a parse can
    score 60 % on segments and 0.0 on events; this measures which case a 0.0 is."""
    from extractors.io import load_npz
    from models.avvp.metrics import extract_events

    test = load_npz(test_npz)
    names = [str(c) for c in test.get("class_names", [])]
    vids = [str(v) for v in test.get("video_ids", [])]
    videos = json.loads(Path(predictions_json).read_text()).get("videos", {})
    best: list[float] = []
    gt_len: list[int] = []
    pred_len: list[int] = []
    example = None
    for i, vid in enumerate(vids):
        for mod, key in (("audio", "gt_a"), ("visual", "gt_v")):
            runs: dict[str, list[tuple[int, int]]] = {}
            for s, e, lab, _ in videos.get(vid, {}).get(mod, []):
                runs.setdefault(str(lab), []).append((int(round(s)), int(round(e))))
                pred_len.append(int(round(e)) - int(round(s)))
            for c, row in enumerate(np.asarray(test[key][i])):
                for g in extract_events(row):
                    gt_len.append(g[1] - g[0])
                    cands = runs.get(names[c] if c < len(names) else str(c), [])
                    ious = [max(0, min(g[1], q[1]) - max(g[0], q[0])) / (max(g[1], q[1]) - min(g[0], q[0]))
                            for q in cands]
                    b = max(ious, default=0.0)
                    best.append(b)
                    if example is None and 0 < b < 0.5:
                        q = cands[int(np.argmax(ious))]
                        example = (vid, mod, names[c] if c < len(names) else str(c), g, q, b)
    return {"n_gt": len(best), "overlapped": sum(b > 0 for b in best), "matched": sum(b >= 0.5 for b in best),
            "best_ious": best, "gt_len": float(np.mean(gt_len)) if gt_len else 0.0,
            "pred_len": float(np.mean(pred_len)) if pred_len else 0.0, "n_pred": len(pred_len), "example": example}


def _event_level_lines(metrics: Sequence[Path], runs: Sequence[tuple[str, dict[str, Any]]],
                       test_npz: Path | str | None) -> list[str]:
    """Where a run scores on segments but 0.0 on events: the measured reason (:func:`event_matches`)."""
    out = []
    for m, (mode, r) in zip(metrics, runs, strict=True):
        t = r.get("test") or {}
        pred = Path(m).parent / "predictions.json"
        if test_npz is None or not pred.exists() or not t or t.get("evt_type", 1) > 0 or t.get("seg_type", 0) <= 0:
            continue
        em = event_matches(pred, test_npz)
        if not em["n_gt"]:
            continue
        text = (f"<p><b>{html.escape(AVVP_MODES.get(mode, mode))}: segment-level Type@AV {100 * t['seg_type']:.1f} % "
                "but every event-level score 0.0, measured</b>: segment-level F counts the seconds a parse gets "
                "right; event-level F counts a predicted run (consecutive positive 1 s segments) only when its IoU "
                "with a ground-truth event of its class is at least 0.5 (HAN's evaluator, no boundary tolerance). "
                f"Of the {em['n_gt']} ground-truth events (audio and visual) of the test clips, predicted runs of "
                f"the right class overlap {em['overlapped']} and reach IoU 0.5 on {em['matched']}; the best IoUs are "
                f"{', '.join(f'{b:.2f}' for b in sorted(em['best_ious'], reverse=True)[:8])}"
                f"{' …' if em['n_gt'] > 8 else ''}. The {em['n_pred']} predicted runs last {em['pred_len']:.1f} s on "
                f"average, the events {em['gt_len']:.1f} s")
        if em["example"]:
            vid, mod, cls, g, q, b = em["example"]
            text += (f" (e.g. {html.escape(vid)}, {mod} {html.escape(cls)}: event {g[0]}–{g[1]} s, predicted "
                     f"{q[0]}–{q[1]} s, IoU {b:.2f})")
        out.append(text + (": the seconds overlap, the events' boundaries do not.</p>" if em["overlapped"] else
                           ": no predicted run touches an event of its class, so the segment-level score comes from "
                           "clips and modalities with neither ground truth nor prediction (each scored 1.0).</p>"))
    return out


def pseudo_label_runs(pseudo_npz: Path | str, train_npz: Path | str, threshold: float = 0.5) -> dict[str, Any]:
    """Stage 2's saved training-split pseudo-labels against that split's segment ground truth, run by run:
    per ground-truth event the best IoU of a pseudo-label run of its class, and the runs' and events' mean
    lengths. Why: Table III rows with seg ~60 and evt 0.0 look impossible; this measures what they are."""
    from extractors.io import load_npz
    from models.avvp.metrics import extract_events

    pl, tr = load_npz(pseudo_npz), load_npz(train_npz)
    if "gt_a" not in tr:
        return {}
    best, gt_len, run_len = [], [], []
    for key, gkey in (("pseudo_a", "gt_a"), ("pseudo_v", "gt_v")):
        pred = (np.asarray(pl[key]) >= threshold).transpose(0, 2, 1)
        for i in range(pred.shape[0]):
            for c in range(pred.shape[1]):
                runs = extract_events(pred[i, c])
                run_len += [e - s for s, e in runs]
                for g in extract_events(np.asarray(tr[gkey])[i, c]):
                    gt_len.append(g[1] - g[0])
                    best.append(max((max(0, min(g[1], q[1]) - max(g[0], q[0])) / (max(g[1], q[1]) - min(g[0], q[0]))
                                     for q in runs), default=0.0))
    clip = float(np.asarray(tr["mask"]).sum(1).mean()) if "mask" in tr else float(pred.shape[2])
    return {"n_gt": len(best), "matched": sum(b >= 0.5 for b in best), "best_ious": best, "clip_s": clip,
            "run_len": float(np.mean(run_len)) if run_len else 0.0, "gt_len": float(np.mean(gt_len)) if gt_len else 0.0}


def _pseudo_label_lines(table3: Sequence[tuple[str, str, dict[str, float]]], pseudo_npz: Path | str | None,
                        train_npz: Path | str | None, threshold: float) -> list[str]:
    """Where a pseudo-label row scores on segments but 0.0 on events: what the saved pseudo-labels look like."""
    if pseudo_npz is None or train_npz is None or not Path(pseudo_npz).exists() or not any(
            d.get("evt_type", 1) == 0 and d.get("seg_type", 0) > 0 for _, _, d in table3):
        return []
    m = pseudo_label_runs(pseudo_npz, train_npz, threshold)
    if not m.get("n_gt"):
        return []
    ious = ", ".join(f"{b:.2f}" for b in sorted(m["best_ious"], reverse=True)[:8])
    return [f"<p><b>Why a row scores on segments but 0.0 on events, measured on the training split's pseudo-labels "
            "(saved by stage 2)</b>: their runs last "
            f"{m['run_len']:.1f} s on average on clips of {m['clip_s']:.1f} s, the events {m['gt_len']:.1f} s: the "
            "generator marks each of a clip's video-level classes over (nearly) the whole clip. The seconds inside the "
            "event count as right at segment level (F ≈ 2·event / (event + clip)), but at event level a run counts only "
            f"at IoU ≥ 0.5 with its event (HAN's rule): best IoUs {ious}, {m['matched']} of {m['n_gt']} events matched. "
            "The validation and test rows come from the same generator on the same kind of clips.</p>"]


def unseen_test_classes(train_npz: Path | str, test_npz: Path | str) -> dict[str, Any]:
    """Classes of the test split's video labels, and those no training video carries. Why: a model
    cannot name a class it never saw labelled; on a tiny split that alone can put every score at 0."""
    from extractors.io import load_npz

    train, test = load_npz(train_npz), load_npz(test_npz)
    names = [str(c) for c in test.get("class_names", [f"class {i}" for i in range(test["labels"].shape[1])])]
    in_test = np.flatnonzero(np.asarray(test["labels"]).max(0) > 0)
    in_train = set(np.flatnonzero(np.asarray(train["labels"]).max(0) > 0).tolist())
    return {"test": [names[c] for c in in_test], "unseen": [names[c] for c in in_test if c not in in_train],
            "n_train": int(np.asarray(train["labels"]).shape[0]), "n_test": int(np.asarray(test["labels"]).shape[0])}


def _avvp_coverage_line(cov: dict[str, Any]) -> list[str]:
    if not cov["unseen"]:
        return []
    return [f"<p><b>{len(cov['unseen'])} of the {len(cov['test'])} classes in the {cov['n_test']} test clip(s) "
            f"never occur in the {cov['n_train']} training clip(s)' labels</b> ({html.escape(', '.join(cov['unseen']))}): "
            "no model can have learned them, so their ground truth is missed whatever the model does, and a run that "
            "predicts only the classes it was trained on can score 0.0 on every test metric while its validation "
            "score (on classes it saw) is not 0.</p>"]


def _avvp_control_lines(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """The label-shuffled control's verdict (as :func:`_control_verdicts` for the localizers), or why
    the page has none: without it a low or a high F-score cannot be read against chance."""
    test = {m: r.get("test") for m, r in runs}
    if not test.get("shuffled"):
        return ["<p><b>No label-shuffled control</b> in this benchmark's <code>modes</code>: add "
                "<code>shuffled</code> to compare the numbers above with chance level.</p>"]
    ctrl = 100 * test["shuffled"]["seg_type"]
    out = []
    for mode in ("pseudo", "video"):
        if test.get(mode):
            real = 100 * test[mode]["seg_type"]
            verdict = "above" if real > ctrl else "NOT above"
            above = sum(test[mode][k] > test["shuffled"][k] for k in test[mode])
            out.append(f"<p><b>{html.escape(AVVP_MODES[mode])}</b>: segment Type@AV {real:.1f} % vs {ctrl:.1f} % "
                       f"with shuffled labels: {verdict} its control; above it on {above} of the "
                       f"{len(test[mode])} columns.</p>")
    return out


def write_avvp_summary(out_html: Path | str, name: str, metrics: Sequence[Path],
                       stage1_json: Path | None = None, banner: str = "",
                       train_npz: Path | str | None = None, test_npz: Path | str | None = None,
                       pseudo_npz: Path | str | None = None) -> None:
    """The EAR page of one AVVP benchmark: F-scores (%) per training-label mode (with the epoch chosen
    on the validation split), how many test videos were scored, the pseudo-labels' own scores on the
    validation and test splits (the paper's Table III; the training split's too when it has segment
    ground truth), training curves, parses."""
    import tempfile

    from models.avvp.metrics import KEYS
    from models.run.plots import plot_loss_curves

    parts = [f"<h1>EAR (AVVP) — benchmark <code>{html.escape(name)}</code></h1>"]
    if banner:
        parts.append(f'<div class="banner">{html.escape(banner)}. The metrics and parses below exercise the '
                     f"pipeline; {NO_ACCURACY}.</div>")
    runs = [(Path(m).parent.name, json.loads(Path(m).read_text())) for m in metrics]

    def pct(d: dict[str, float] | None) -> list[str]:
        return [f"{100 * d[k]:.1f}" if d else "–" for k in KEYS]

    parts.append("<h2>Test split, F-score (%)</h2>")
    parts.append(table(["training labels", *KEYS], [[AVVP_MODES.get(m, m), *pct(r.get("test"))] for m, r in runs]))
    parts.append("<p>seg_* segment level, evt_* event level (HAN's evaluator, models/avvp/metrics.py); "
                 "type = Type@AV (the mean of a, v and av), event = Event@AV.</p>")
    deltas = avvp_delta_rows(runs, KEYS)
    if deltas:
        parts.append("<h3>Each run minus its label-shuffled control, every column (points)</h3>")
        parts.append(table(["training labels", *KEYS], [[AVVP_MODES.get(m, m), *d] for m, *d in deltas]))
        parts.append("<p class='note'>Positive: above chance on that column. The control is a real run, so it "
                     "can score high where predicting little is rewarded: a clip and modality with neither ground "
                     "truth nor prediction scores 1.0, so a silent control still collects those clips' seg_av.</p>")
    parts.extend(_avvp_protocol_lines(runs))
    parts.extend(_avvp_control_lines(runs))
    parts.extend(_avvp_prediction_lines(metrics, runs))
    if train_npz is not None and test_npz is not None:
        parts.extend(_avvp_coverage_line(unseen_test_classes(train_npz, test_npz)))
    parts.extend(_event_level_lines(metrics, runs, test_npz))
    table3 = pseudo_label_rows(runs)
    if table3:
        parts.append("<h2>Pseudo-label quality, F-score (%) (the paper's Table III)</h2>")
        parts.append(table(["pseudo-labels", "split", *KEYS], [[lab, split, *pct(d)] for lab, split, d in table3]))
        parts.append("<p>Stage 2's frozen generator labels each split with that split's video-level labels "
                     "(Eq. 9); the pseudo-labels are scored against the segment ground truth like a model's "
                     "parse. The paper reports the validation and test rows.</p>")
        threshold = 0.5
        if pseudo_npz is not None and Path(pseudo_npz).with_suffix(".json").exists():
            threshold = float(json.loads(Path(pseudo_npz).with_suffix(".json").read_text()).get("threshold", 0.5))
        parts.extend(_pseudo_label_lines(table3, pseudo_npz, train_npz, threshold))
    curves = {f"stage 3, {AVVP_MODES.get(m, m)}": [h["loss"] for h in r.get("log", [])] for m, r in runs}
    panels = [list(curves)]
    ylabels = ["stage-3 training loss"]
    val_curves = {f"val, {AVVP_MODES.get(m, m)}": [100 * h["val_seg_type"] for h in r.get("log", [])]
                  for m, r in runs if r.get("log") and all("val_seg_type" in h for h in r["log"])}
    marks = {f"val, {AVVP_MODES.get(m, m)}": int(r["selection"]["epoch"]) for m, r in runs
             if (r.get("selection") or {}).get("val") and f"val, {AVVP_MODES.get(m, m)}" in val_curves}
    if val_curves:  # the curve the epoch was chosen on, the chosen epoch starred
        curves = {**curves, **val_curves}
        panels.append(list(val_curves))
        ylabels.append("validation seg Type@AV (%)")
    if stage1_json is not None and Path(stage1_json).exists():
        s1 = json.loads(Path(stage1_json).read_text())
        curves = {"stage 1 (generator)": [h["loss"] for h in s1.get("log", [])], **curves}
        panels = [["stage 1 (generator)"], *panels]  # other objective, other scale: its own axis
        ylabels = ["generator training loss", *ylabels]
        parts.append(f"<p>Stage 1: label migration {'on' if s1.get('migration') else 'off'}, "
                     f"{len(s1.get('log', []))} epochs, {s1.get('seconds', '?')} s.</p>")
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "curves.png"
        plot_loss_curves(png, curves, title=f"EAR training losses and validation score — {name}", panels=panels,
                         ylabels=ylabels, marks=marks)
        parts.append(f"<h2>Training and validation curves</h2>{img(png, 1000 if len(panels) > 1 else 700)}"
                     "<p>Epochs numbered from 1, as the selected epoch above. "
                     + ("The right panel is the curve each run's epoch was chosen on: segment-level Type@AV on the "
                        "validation split after every epoch; the star marks the epoch kept (the earliest best)."
                        if val_curves else "No validation split scored per epoch: the last epoch is kept.")
                     + "</p>")
    for m, _ in runs:
        timelines = sorted((Path(metrics[0]).parent.parent / m / "timelines").glob("*.png"))
        if timelines:
            parts.append(f"<h3>Test parses — {html.escape(AVVP_MODES.get(m, m))}</h3>")
            parts.extend(img(t) for t in timelines[:4])
    write_page(out_html, f"avloc AVVP {name}", parts)
