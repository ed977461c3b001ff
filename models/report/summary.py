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

from extractors.recipes import provenance_fields
from models.report.page import img, link, table, write_page
from models.run.metrics import distractors_reported


def provenance_recipe(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as the page shows it (:func:`extractors.recipes.provenance_fields`)."""
    return provenance_fields(recipe)


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
        from models.report.tables import avg_header, map_table, per_class_table
        from models.run.compare import metrics_row
        from models.run.pipeline import split_control

        runs, avg, n_videos, selection = [], {}, set(), []
        for m in _ordered_runs(metrics):
            met = json.loads(Path(m).read_text())
            name, control = split_control(Path(m).parent.name)
            avg[(name, control)] = metrics_row(met)["Avg"]
            n_videos.add(met.get("n_videos"))
            runs.append((f"{name} (control)" if control else name, met))
            if not control:
                selection.append(_selection_line(Path(m).parent.name, met, Path(m).parent / "log.jsonl"))
        header = avg_header(runs[0][1].get("tious", []))
        parts.append("<h2>Test-split mAP (%) at each tIoU threshold</h2>")
        parts.append(map_table(runs))
        videos = ", ".join(str(n) for n in sorted(n_videos, key=str))
        paper = ""
        if compare_md is not None and Path(compare_md).exists():
            csv = Path(compare_md).with_suffix(".csv")
            paper = (f" The papers' columns (mAP@0.5…0.9 and {html.escape(header)}) at one decimal: "
                     f"{link(Path(compare_md), out_dir)}{' and ' + link(csv, out_dir) if csv.exists() else ''} "
                     "(all digits).")
        parts.append(f"<p>{html.escape(header)} = the mean of the columns shown, tIoU 0.1 to 0.9 in steps of 0.1 "
                     f"(UnAV-100 protocol, docs/recipes.md), on {html.escape(videos)} test video(s); <i>(control)</i>: the "
                     "same model trained on labels shuffled across videos, the chance level. The papers "
                     f"print mAP@0.5…0.9 beside it, so their Avg can sit above every column they show.{paper}</p>")
        parts.extend(_control_verdicts(avg))
        test_events = _test_events_per_class(annotations)
        parts.append("<h3>Per-class AP (%), worst class first</h3>")
        parts.append(per_class_table(runs, test_events))
        parts.append(f"<p class='note'>Sorted by the first model's {html.escape(header)}; click a column header to "
                     "sort by it. test events: the annotated events of that class in the test split, the recall "
                     "denominator of its AP.</p>")
        parts.append("<h3>Which checkpoint was scored</h3>")
        parts.extend(selection)
        parts.extend(_clasp_vs_mil(avg, facts, generator,
                                   {Path(m).parent.name: Path(m).parent / "predictions.json" for m in metrics}))
        for m in metrics:
            curve = Path(m).parent / "curve.png"
            if curve.exists() and not split_control(Path(m).parent.name)[1]:
                parts.append(f"<h3>Training curve — {html.escape(Path(m).parent.name)}</h3>{img(curve, 700)}")
        parts.extend(_timelines_section(_ordered_runs(metrics), annotations, recipe))
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
            if predict_with.get("synthetic"):
                parts.append(_synthetic_classes_line(predict_with))
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
    parts.append(recipe_note(recipe))
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


def _ordered_runs(metrics: Sequence[Path | str]) -> list[Path]:
    """The runs' ``metrics.json`` with each model directly followed by its label-shuffled control."""
    from models.run.pipeline import split_control

    names = [split_control(Path(m).parent.name) for m in metrics]
    order = sorted(range(len(metrics)), key=lambda i: ([n for n, c in names if not c] + [names[i][0]]).index(
        names[i][0]) * 2 + names[i][1])
    return [Path(metrics[i]) for i in order]


def _test_events_per_class(annotations: Path | str | None) -> dict[str, int]:
    """Annotated events per class in the test split (for ``metrics.json`` files without the count)."""
    if annotations is None or not Path(annotations).is_file():
        return {}
    try:
        db = json.loads(Path(annotations).read_text()).get("database", {})
    except (ValueError, AttributeError):
        return {}
    out: dict[str, int] = {}
    for rec in db.values():
        if rec.get("subset") == "test":
            for a in rec.get("annotations", []):
                out[str(a["label"])] = out.get(str(a["label"]), 0) + 1
    return out


FP_RULE = ("Each prediction is matched at tIoU 0.5 as the AP is (highest score first): a match is a true positive "
           "(no outline); every other prediction is outlined in red and tagged with what it is: <b>duplicate</b> (its "
           "event was already found by a higher-scoring prediction), else by the segment it overlaps most (tIoU ≥ "
           "0.1): <b>mistimed</b> (an event of its own class, boundaries off), <b>distractor</b> (an unannotated "
           "single-modality pattern or sound of its class, hatched), <b>wrong class</b> (an event or distractor of "
           "another class), or <b>background</b> (nothing there). The rule: models/run/metrics.py "
           "<code>explain_predictions</code>.")


def _timelines_section(metrics: Sequence[Path], annotations: Path | str | None, recipe: dict[str, Any],
                       max_videos: int = 12) -> list[str]:
    """Per test video one figure: every run (a model, then its shuffled-label control) in its own panel over
    the same class rows, with the ground truth, the distractors and each false positive's kind. Without
    an annotation file, the evaluate rule's per-model PNGs instead."""
    import tempfile

    from models.data.unav import read_distractors, read_unav
    from models.run.metrics import FP_KINDS, explain_predictions, load_predictions_json
    from models.run.pipeline import split_control
    from models.run.plots import plot_timeline_panels
    from models.run.predict import RANDOM_BANNER

    if annotations is None or not Path(annotations).is_file():
        out = []
        for m in metrics:
            timelines = sorted((Path(m).parent / "timelines").glob("*.png"))
            if timelines:
                out.append(f"<h3>Timelines (test split) — {html.escape(Path(m).parent.name)}</h3>")
                out.extend(img(t) for t in timelines[:max_videos])
        return out
    ann = read_unav(annotations)
    dis = read_distractors(annotations)
    preds = {Path(m).parent.name: load_predictions_json(Path(m).parent / "predictions.json") for m in metrics
             if (Path(m).parent / "predictions.json").exists()}
    vids = sorted(v for v, a in ann.items() if a.subset == "test")
    out = [f"<h2>Timelines (test split, {min(len(vids), max_videos)} of {len(vids)} clips)</h2>",
           "<p>One figure per clip, one panel per run: " + ", ".join(
               html.escape(r + (" (its label-shuffled control: the chance level)" if split_control(r)[1] else ""))
               for r in preds) + f". {FP_RULE}</p>"]
    with tempfile.TemporaryDirectory() as tmp:
        for vid in vids[:max_videos]:
            gt = [(s.start, s.end, s.label, 1.0) for s in ann[vid].segments]
            d = dis.get(vid, [])
            panels, said = [], []
            for run, p in preds.items():
                ev = p.get(vid, [])
                label = f"{split_control(run)[0]} — shuffled-label control" if split_control(run)[1] else run
                tags = explain_predictions(ev, [g[:3] for g in gt], [x[:3] for x in d])
                panels.append((label, ev, tags))
                counts = {t: tags.count(t) for t in ("TP", *FP_KINDS) if t in tags}
                said.append(f"{label}: " + (", ".join(f"{n} {'true positive' if t == 'TP' else t}"
                                                      for t, n in counts.items()) or "no prediction"))
            png = Path(tmp) / f"{vid}.png"
            plot_timeline_panels(png, ann[vid].duration, panels, gt, title=vid, distractors=d,
                                 banner=RANDOM_BANNER if recipe.get("weights") == "random" else None)
            shown = f"{len(gt)} event(s)" + (f", {len(d)} distractor(s) (" + ", ".join(
                f"{x[2]} {x[3].replace('_', ' ')} {x[0]:.2f}–{x[1]:.2f} s" for x in d) + ")" if d else "")
            caption = f"{vid} — {shown}. " + "; ".join(said) + "."
            out.append(f"<figure class='timeline' id='timeline-{html.escape(vid, quote=True)}'>"
                       f"{img(png, 1000, alt=caption)}<figcaption class='note'>{html.escape(caption)}</figcaption>"
                       "</figure>")
    return out


def _synthetic_classes_line(predict_with: dict[str, Any]) -> str:
    """Why the labels below mean nothing when the model was trained on the demo's generated clips: the only
    classes it knows are the generator's patterns and tones (from the checkpoint's class list)."""
    classes: list[str] = []
    ck = predict_with.get("checkpoint")
    if ck and Path(ck).exists():
        from models.run.runtime import load_checkpoint

        classes = [str(c) for c in load_checkpoint(ck).get("classes") or []]
    named = f" ({html.escape(', '.join(classes))})" if classes else ""
    return (f"<p><b>The {len(classes) or ''} classes{named} are the demo's synthetic ones</b>: dataset "
            f"<code>{html.escape(str(predict_with.get('dataset', '?')))}</code> is made of generated clips (a coloured "
            "pattern and a tone per class), and the model knows nothing else, so it names whichever of them a real "
            "clip's features happen to resemble most. <b>The labels and scores below mean nothing about these "
            "clips</b>; they show that the prediction path runs. Train on annotated real videos (README, \"Your own "
            "videos\") for predictions that mean something.</p>")


def recipe_note(recipe: dict[str, Any]) -> str:
    """A sentence where the dataset's recipe extracts differently from the README's default (the UnAV-100
    recipe: RAFT flow at 25 FPS): provenance lists the fields, this says what they mean and why."""
    from extractors.recipes import RECIPES

    ref = RECIPES["unav100"]
    if recipe.get("visual", "i3d") != "i3d":
        return ""
    flow, fps = recipe.get("flow", ref.flow), float(recipe.get("fps", ref.fps))
    if flow == ref.flow and fps == ref.fps:
        return ""
    names = {"raft": "RAFT optical flow", "farneback": "Farneback optical flow (OpenCV, classical, no weights)"}
    step = float(recipe.get("step", ref.step)) / fps
    text = (f"<p><b>Recipe <code>{html.escape(str(recipe.get('name', '?')))}</code></b> uses "
            f"{html.escape(names.get(flow, str(flow)))} at {fps:g} FPS ({recipe.get('stack', '?')}-frame I3D windows, "
            f"one feature every {step:.2f} s), not the README's default, RAFT optical flow at {ref.fps:g} FPS "
            f"({ref.stack}-frame windows every {ref.step_s:.2f} s, the UnAV-100 recipe)")
    if recipe.get("name") == "demo":
        text += (": this demo recipe is made so that the whole chain runs in minutes on 2 CPU cores (RAFT and "
                 "25 FPS cost several times more per clip); its features are not the papers'")
    return text + ".</p>"


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
