"""A self-contained HTML summary per dataset: the page a person opens after ``snakemake --cores all``.

Images are embedded (base64) so the file can be mailed or copied off a cluster on its own. Outputs made
with random extractor weights get a red banner: their numbers say nothing about real accuracy.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.report.page import img, link, markdown_to_html, table, write_page
from models.run.metrics import distractors_reported

_FLOW_ONLY_FIELDS = {"raft": ("raft_iters", "raft_weights")}


def provenance_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as the page shows it: without the fields of a flow method the recipe does not use
    (``raft_iters``/``raft_weights`` beside ``flow: farneback`` read as if RAFT had run). A visual model
    without optical flow (R(2+1)D) shows no flow fields at all."""
    shown = dict(recipe)
    uses_flow = shown.get("visual", "i3d") == "i3d"
    for method, fields in _FLOW_ONLY_FIELDS.items():
        if not uses_flow or shown.get("flow") != method:
            for f in fields:
                shown.pop(f, None)
    if not uses_flow:
        shown.pop("flow", None)
    return shown


def dataset_facts(annotations: Path | str) -> dict[str, Any]:
    """Counts read from a UnAV-format annotation file: clips per subset, classes, events, durations, and the
    generator's unannotated single-modality distractors (``distractors.json`` beside it, synthetic data
    only). Why read them: text that states the data's size by hand goes stale when the config changes."""
    ann = Path(annotations)
    db = json.loads(ann.read_text()).get("database", {})
    subsets: dict[str, int] = {}
    classes: set[str] = set()
    n_events = n_test_events = 0
    durations = []
    for rec in db.values():
        subsets[str(rec.get("subset", "?"))] = subsets.get(str(rec.get("subset", "?")), 0) + 1
        for a in rec.get("annotations", []):
            classes.add(str(a["label"]))
            n_events += 1
            n_test_events += rec.get("subset") == "test"
        if rec.get("duration") is not None:
            durations.append(float(rec["duration"]))
    facts: dict[str, Any] = {"n_videos": len(db), "subsets": subsets, "classes": sorted(classes),
                             "n_events": n_events, "n_test_events": n_test_events,
                             "durations": (min(durations), max(durations)) if durations else None}
    dis_path = ann.parent / "distractors.json"
    if dis_path.exists():
        dis = json.loads(dis_path.read_text())
        test_dis = [(vid, e) for vid, events in sorted(dis.items()) if db.get(vid, {}).get("subset") == "test"
                    for e in events]
        facts["distractors"] = {"all": sum(len(v) for v in dis.values()), "test": len(test_dis),
                                "test_events": test_dis}
    return facts


def distractor_hits(predictions_json: Path | str, test_distractors: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """How many single-modality distractors a model reported as events, read from its ``predictions.json``
    (:func:`models.run.metrics.distractors_reported`: a prediction of the distractor's class with tIoU >= 0.5)."""
    return distractors_reported(json.loads(Path(predictions_json).read_text()), test_distractors)


def _data_section(facts: dict[str, Any], generator: dict[str, Any] | None) -> list[str]:
    """What the data is, in one paragraph: where a reader looks first to judge the numbers below."""
    order = {"train": 0, "training": 0, "validation": 1, "val": 1, "test": 2}
    split = " / ".join(f"{facts['subsets'][k]} {k}" for k in sorted(facts["subsets"], key=lambda k: (order.get(k, 3), k)))
    what = ("synthetic clips made by the demo generator (<code>generate_demo</code>: ffmpeg patterns and tones, "
            f"seed {html.escape(str(generator.get('seed', 0)))}; extractors/synthetic_videos.py)"
            if generator is not None else "annotated videos")
    dur = facts.get("durations")
    length = "" if not dur else (f", each {dur[0]:.2f} s long" if abs(dur[1] - dur[0]) < 1e-6
                                 else f", {dur[0]:.1f}–{dur[1]:.1f} s long")
    classes = ", ".join(html.escape(c) for c in facts["classes"])
    text = (f"<p><b>{facts['n_videos']}</b> {what}{length}; <b>{len(facts['classes'])} classes</b> ({classes}); "
            f"{facts['n_events']} annotated audio-visual events; split {html.escape(split)}.")
    dis = facts.get("distractors")
    if dis is not None:
        text += (f" Besides the events, {dis['all']} unannotated single-modality distractors (a class pattern "
                 f"without its sound or the reverse; {dis['test']} in the test split).")
    return ["<h2>Data</h2>", text + "</p>"]


def selected_epoch(log_jsonl: Path | str) -> dict[str, Any] | None:
    """The epoch :func:`models.run.train.train` kept (the earliest best validation ``avg``, its strict
    ``>``), the number of epochs and the range of the selection curve; None without validation records."""
    recs = [json.loads(line) for line in Path(log_jsonl).read_text().splitlines() if line.strip()]
    vals = [(int(r["epoch"]), float(r["val"]["avg"])) for r in recs if r.get("val")]
    if not vals:
        return None
    best = max(vals, key=lambda ev: (ev[1], -ev[0]))
    scores = [v for _, v in vals]
    return {"epoch": best[0], "score": best[1], "epochs": max(int(r["epoch"]) for r in recs),
            "min": min(scores), "max": max(scores)}


def _selection_line(name: str, met: dict[str, Any], log_jsonl: Path) -> str:
    """Which epoch a model's test numbers come from and what chose it (a 2-clip holdout is noisy)."""
    sel = met.get("selection") or {}
    best = selected_epoch(log_jsonl) if log_jsonl.exists() else None
    where = {"validation": "the validation split",
             "train-holdout": "a seeded holdout of the training clips (held out of training; never the test split)"
             }.get(str(sel.get("split")), html.escape(str(sel.get("split", "?"))))
    n = sel.get("n")
    ids = sel.get("video_ids") or []
    shown = f" ({html.escape(', '.join(map(str, ids[:6])))}{' …' if len(ids) > 6 else ''})" if ids else ""
    text = f"<p><b>{html.escape(name)}</b>: "
    if best is not None:
        text += (f"checkpoint of epoch {best['epoch']} of {best['epochs']}, the best Avg mAP "
                 f"({100 * best['score']:.1f} %) on ")
    else:
        text += "checkpoint chosen on "
    text += f"{where}: {n} clip(s){shown}."
    if best is not None:
        text += f" Over the epochs that curve ranged {100 * best['min']:.1f}–{100 * best['max']:.1f} %."
    if isinstance(n, int) and n < 5:
        text += (f" With {n} clip(s) the selection score jumps from epoch to epoch (one event more or less found "
                 "moves it by tens of points), so the chosen epoch is partly luck; the test numbers are not "
                 "tuned on the test split, but they carry that noise.")
    return text + "</p>"


def audio_less(feature_files: Sequence[Path]) -> list[str]:
    """Ids of the videos whose source had no audio track (VGGish provenance ``has_audio: false``)."""
    out = []
    for f in feature_files:
        f = Path(f)
        prov_path = f.with_suffix(".json")
        if f.parent.name != "vggish" or not prov_path.exists():
            continue
        if json.loads(prov_path.read_text()).get("has_audio") is False:
            out.append(f.stem)
    return sorted(out)


def _clasp_vs_mil(avg: dict[tuple[str, bool], float], facts: dict[str, Any] | None,
                  generator: dict[str, Any] | None, predictions: dict[str, Path]) -> list[str]:
    """Why the MIL baseline can match or beat CLASP on the demo's synthetic clips (issue 24, item 9): only
    for generated data with both models, from this run's numbers and predictions."""
    if generator is None or facts is None or ("clasp", False) not in avg or ("mil", False) not in avg:
        return []
    clasp, mil = avg[("clasp", False)], avg[("mil", False)]
    n_test = facts["subsets"].get("test", 0)
    dis = facts.get("distractors") or {}
    ahead = "CLASP" if clasp > mil else "MIL" if mil > clasp else "neither"
    noise = generator.get("noise", 0)
    text = (f"<h3>CLASP vs the MIL baseline on these clips</h3><p>CLASP {clasp:.1f} vs MIL {mil:.1f} Avg mAP "
            f"({ahead} ahead by {abs(clasp - mil):.1f}). CLASP's additions over MIL are cross-modal: it scores how "
            "far the audio and visual class predictions agree at each step and builds its anchors and propagation "
            "from the agreeing steps, which pays where one stream shows something the other does not. Here every "
            "annotated event is in both streams, with a distinct pattern and tone per class (noise "
            f"{html.escape(str(noise))}), so MIL's linear classifier on the concatenated streams finds them too.")
    if dis.get("test_events") and all(m in predictions and Path(predictions[m]).exists() for m in ("clasp", "mil")):
        hits = {m: distractor_hits(predictions[m], dis["test_events"]) for m in ("clasp", "mil")}
        c, m = hits["clasp"], hits["mil"]
        verdict = ("so on these clips the cross-modal part has nothing to win over the baseline" if c == m else
                   "the part of CLASP's design that should pay here, but too few events to carry the Avg" if c < m else
                   "so here the cross-modal part did not help")
        text += (f" The streams disagree only at the {dis['test']} single-modality distractors of the test clips: "
                 f"CLASP reported {c} of them as events and MIL {m} (its class, tIoU ≥ 0.5), {verdict}.")
    text += (f" The gap comes from how the {facts.get('n_test_events', '?')} annotated events of the {n_test} test "
             "clips are localized and scored, where one event found or missed moves a class's AP by tens of points: "
             "this demo shows that the chain from pixels to events works, not which model is better.</p>")
    return [text]


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


NO_ACCURACY = "they say nothing about real accuracy"  # every demo banner keeps this clause


def write_summary(out_html: Path | str, dataset: str, recipe: dict[str, Any],
                  metrics: Sequence[Path] = (), compare_md: Path | None = None,
                  feature_files: Sequence[Path] = (), predictions: Sequence[Path] = (),
                  rejected: dict[str, str] | None = None, annotations: Path | str | None = None,
                  generator: dict[str, Any] | None = None, predict_with: dict[str, str] | None = None) -> None:
    """Assemble the summary page from the workflow's outputs (paths as Snakemake gives them).

    ``annotations``: the dataset's annotation file (the page says what the data is, from the file);
    ``generator``: the dataset's ``generate_demo`` spec when its clips are synthetic; ``predict_with``:
    ``{dataset, model, checkpoint}`` of the model that made ``predictions``."""
    out_dir = Path(out_html).parent
    prov_rows, any_random = provenance_rows([Path(f) for f in feature_files])
    failed = failed_rows([Path(f) for f in feature_files])
    silent = audio_less([Path(f) for f in feature_files])
    any_random |= recipe.get("weights") == "random"
    parts = [f"<h1>avloc summary — dataset <code>{html.escape(dataset)}</code></h1>"]
    if any_random:
        parts.append('<div class="banner">WEIGHTS: RANDOM — features come from randomly initialised '
                     f"extractors (offline demo). Metrics and predictions below exercise the pipeline; {NO_ACCURACY}."
                     "</div>")
    facts = None
    if annotations is not None and Path(annotations).is_file():
        try:
            facts = dataset_facts(annotations)
        except (ValueError, KeyError, TypeError, AttributeError):  # not UnAV-format JSON: the page goes without
            facts = None
    if facts is not None:
        parts.extend(_data_section(facts, generator))
    if silent:
        parts.append(f"<p><b>{len(silent)} of {sum(1 for f in feature_files if Path(f).parent.name == 'vggish')} "
                     f"clip(s) have no audio track</b> ({html.escape(', '.join(silent))}): their audio stream is a "
                     "silent 16 kHz track of the video's length (extractors/media.py), so VGGish features of silence "
                     "stand in for audio and anything predicted for them comes from the visual stream alone.</p>")
    if metrics:
        from models.run.compare import COLUMNS, metrics_row
        from models.run.pipeline import split_control

        rows, avg, n_videos, selection = [], {}, set(), []
        for m in metrics:
            met = json.loads(Path(m).read_text())
            row = metrics_row(met)
            name, control = split_control(Path(m).parent.name)
            avg[(name, control)] = row["Avg"]
            n_videos.add(met.get("n_videos"))
            rows.append([f"{name} (shuffled labels: control)" if control else name]
                        + [f"{row[c]:.2f}" for c in COLUMNS])
            if not control:
                selection.append(_selection_line(Path(m).parent.name, met, Path(m).parent / "log.jsonl"))
        parts.append("<h2>Test-split mAP (%)</h2>")
        parts.append(table(["model", *COLUMNS], rows))
        videos = ", ".join(str(n) for n in sorted(n_videos, key=str))
        parts.append(f"<p>Avg = mean over tIoU 0.1…0.9 (UnAV-100 protocol, docs/recipes.md), on {html.escape(videos)} test video(s).</p>")
        parts.extend(_control_verdicts(avg))
        parts.append("<h3>Which checkpoint was scored</h3>")
        parts.extend(selection)
        parts.extend(_clasp_vs_mil(avg, facts, generator,
                                   {Path(m).parent.name: Path(m).parent / "predictions.json" for m in metrics}))
        for m in metrics:
            mdir = Path(m).parent
            if split_control(mdir.name)[1]:
                continue  # a control's timelines show nothing new; its row above is the point
            curve = mdir / "curve.png"
            if curve.exists():
                parts.append(f"<h3>Training curve — {html.escape(mdir.name)}</h3>{img(curve, 700)}")
            timelines = sorted((mdir / "timelines").glob("*.png"))
            if timelines:
                parts.append(f"<h3>Timelines (test split) — {html.escape(mdir.name)}</h3>")
                parts.extend(img(t) for t in timelines[:12])
    if compare_md is not None and Path(compare_md).exists():
        md_link = link(Path(compare_md), out_dir)
        parts.append(f"<h2>Comparison</h2><p>{md_link} (and the .csv beside it, all digits): the table above at one "
                     "decimal, as it goes into a paper.</p>")
        parts.append(markdown_to_html(Path(compare_md).read_text()))
    if predictions:
        parts.append("<h2>Predicted timelines (new videos)</h2>")
        if predict_with:
            ck = predict_with.get("checkpoint", "")
            parts.append(f"<p>Model <b>{html.escape(predict_with.get('model', '?'))}</b> trained on dataset "
                         f"<code>{html.escape(predict_with.get('dataset', '?'))}</code>, checkpoint "
                         f"{link(Path(ck), out_dir) if ck else '?'} (<code>predict_with</code> in the config). "
                         "Each video's events are in a JSON (<code>events: [{start_s, end_s, label, score}]</code> with the "
                         "checkpoint and recipe) and a CSV (<code>start_s,end_s,label,score</code>, one event per row) "
                         "beside its plot (README, \"Predict on your own videos\").</p>")
        for p in predictions:
            png = Path(p).with_suffix(".png")
            events = json.loads(Path(p).read_text()).get("events", [])
            no_audio = " (no audio track: visual stream only)" if Path(p).stem in silent else ""
            files = " · ".join(link(f, out_dir) for f in (Path(p), Path(p).with_suffix(".csv")) if f.exists())
            parts.append(f"<h3>{html.escape(Path(p).stem)} — {len(events)} event(s){html.escape(no_audio)}</h3>"
                         f"<p>{files}</p>")
            if png.exists():
                parts.append(img(png))
    parts.append("<h2>Provenance</h2>")
    parts.append(f"<pre>{html.escape(json.dumps(provenance_recipe(recipe), indent=2, sort_keys=True))}</pre>")
    if prov_rows:
        parts.append(table(["features", "weights", "weights sha256", "videos"], prov_rows))
    parts.append("<h2>Rejected videos</h2>")
    if rejected:
        parts.append(table(["file", "reason"], sorted(rejected.items())))
    else:
        parts.append("<p>None: every video in the folder was decodable.</p>")
    parts.append("<h2>Failed videos</h2>")
    if failed:
        parts.append(f"<p>{len(failed)} admitted video(s) failed in their own job and are left out of the store, "
                     "training and evaluation (their ground truth counts as missed); delete the video's "
                     "media manifest / feature .json to retry it.</p>")
        parts.append(table(["video", "stage", "reason"], failed))
    else:
        parts.append("<p>None: every admitted video gave features.</p>")
    write_page(out_html, f"avloc {dataset}", parts)


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
