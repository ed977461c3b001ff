"""The summary pages (models.report.summary) and their plots (models.run.plots): what a reader needs to
judge the numbers is on the page (issue 24, item 7), and the page renders in a real browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from models.report import avvp_summary, summary
from models.run import plots

COMPARE_MD = ("| Method | mAP@0.5 | mAP@0.6 | mAP@0.7 | mAP@0.8 | mAP@0.9 | Avg |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n"
              "| clasp | 70.1 | 60.0 | 50.0 | 40.0 | 30.0 | 68.5 |\n"
              "| mil | 71.0 | 61.0 | 51.0 | 41.0 | 31.0 | 69.8 |\n")
DEMO_RECIPE = {"flow": "farneback", "raft_iters": 20, "raft_weights": "raft-sintel", "visual": "i3d",
               "weights": "random", "name": "demo", "fps": 12.5}


def _capture_figures(monkeypatch) -> list:
    """Keep the figures the plot functions close, to inspect what they drew."""
    figs: list = []
    monkeypatch.setattr(plots.plt, "close", figs.append)
    return figs


# ------------------------------------------------------------------ plots
def test_score_label_colour_contrasts_with_its_bar() -> None:
    viridis = plt.get_cmap("viridis")
    assert plots.text_colour(viridis(1.0)) == "black"  # bright yellow: dark text
    assert plots.text_colour((1.0, 1.0, 0.0)) == "black"
    assert plots.text_colour(viridis(0.0)) == "white"  # dark violet: light text
    assert plots.text_colour((0.0, 0.0, 0.5, 1.0)) == "white"


def test_timeline_writes_each_score_in_a_readable_colour_and_ends_at_the_clip(tmp_path, monkeypatch) -> None:
    figs = _capture_figures(monkeypatch)
    plots.plot_timeline(tmp_path / "t.png", 5.0, [(0.0, 1.0, "a", 0.98), (2.0, 3.0, "a", 0.02)],
                        [(0.0, 1.0, "a", 1.0)])
    ax = figs[0].axes[0]
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    assert colours == {"0.98": "black", "0.02": "white"}
    assert ax.get_xlim() == (0.0, 5.0)


def test_loss_curves_on_separate_axes_numbered_from_one(tmp_path, monkeypatch) -> None:
    figs = _capture_figures(monkeypatch)
    curves = {"stage 1 (generator)": [9.0, 8.0, 7.0], "stage 3, a": [0.7, 0.6], "stage 3, b": [0.8, 0.5]}
    plots.plot_loss_curves(tmp_path / "c.png", curves, panels=[["stage 1 (generator)"], ["stage 3, a", "stage 3, b"]])
    axes = figs[0].axes
    assert len(axes) == 2
    assert [line.get_label() for line in axes[0].lines] == ["stage 1 (generator)"]
    assert [line.get_label() for line in axes[1].lines] == ["stage 3, a", "stage 3, b"]
    assert list(axes[0].lines[0].get_xdata()) == [1, 2, 3]
    assert list(axes[1].lines[0].get_xdata()) == [1, 2]
    plots.plot_loss_curves(tmp_path / "d.png", {"x": [1.0, 0.5]})  # default: one axis
    assert len(figs[1].axes) == 1 and list(figs[1].axes[0].lines[0].get_xdata()) == [1, 2]


def test_avvp_parses_end_at_the_clips_real_length(tmp_path, monkeypatch) -> None:
    """5 s clips zero-padded to 10 LLP segments: the x axis ends at 5 s, not 10."""
    from models.avvp.train import clip_seconds, plot_parses

    mask = np.zeros((2, 10), bool)
    mask[0, :5], mask[1, :7] = True, True
    assert clip_seconds({"mask": mask}, 0, 10) == 5.0 and clip_seconds({}, 0, 10) == 10.0
    binary = np.zeros((2, 3, 10))
    binary[0, 1, 1:3] = 1
    pred = {"pred_a": binary, "pred_v": binary, "prob_a": binary * 0.9, "prob_v": binary * 0.9}
    test = {"video_ids": np.array(["v0", "v1"]), "mask": mask, "gt_a": binary, "gt_v": binary}
    figs = _capture_figures(monkeypatch)
    plot_parses(tmp_path, pred, test, ["a", "b", "c"])
    assert [f.axes[0].get_xlim()[1] for f in figs] == [5.0, 7.0]


# ------------------------------------------------------------------ page pieces
def test_provenance_shows_only_the_fields_of_the_flow_method_used() -> None:
    shown = summary.provenance_recipe(DEMO_RECIPE)
    assert shown["flow"] == "farneback" and "raft_iters" not in shown and "raft_weights" not in shown
    raft = summary.provenance_recipe({**DEMO_RECIPE, "flow": "raft"})
    assert raft["raft_iters"] == 20 and raft["raft_weights"] == "raft-sintel"
    r21d = summary.provenance_recipe({**DEMO_RECIPE, "flow": "raft", "visual": "r21d"})
    assert not {"flow", "raft_iters", "raft_weights"} & set(r21d)
    assert DEMO_RECIPE["raft_iters"] == 20  # the caller's dict is untouched
    from extractors.recipes import get_recipe  # what a prediction JSON records (models.run.predict)

    assert "raft_iters" not in get_recipe("demo").provenance() and "raft_iters" in get_recipe("unav100").provenance()


def test_selected_epoch_is_the_earliest_best(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"epoch": e, "val": {"avg": v}}) + "\n"
                           for e, v in ((1, 0.18), (2, 0.65), (3, 0.40), (4, 0.65), (5, 0.30))))
    assert summary.selected_epoch(log) == {"epoch": 2, "score": 0.65, "epochs": 5, "min": 0.18, "max": 0.65}


def _demo_dataset(tmp: Path) -> Path:
    db = {f"demo_{i:03d}": {"subset": "test" if i >= 10 else "train", "duration": 9.64,
                            "annotations": [{"segment": [0.96, 2.88], "label": ["red_beep", "bars_hum", "grid_buzz"][i % 3],
                                             "label_id": i % 3}]} for i in range(18)}
    ann = tmp / "data" / "annotations.json"
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps({"database": db}))
    (tmp / "data" / "distractors.json").write_text(json.dumps(
        {"demo_000": [{"segment": [3.84, 5.76], "label": "bars_hum", "kind": "audio_only"}],
         "demo_011": [{"segment": [5.76, 7.68], "label": "grid_buzz", "kind": "visual_only"}],
         "demo_012": [{"segment": [0.0, 1.92], "label": "red_beep", "kind": "visual_only"}]}))
    return ann


TIOUS = [round(0.1 * k, 1) for k in range(1, 10)]


def _model_run(res: Path, name: str, avg: float, n_holdout: int = 2) -> Path:
    d = res / "models" / name
    d.mkdir(parents=True)
    per_class = {"red_beep": [avg + 0.1] * 9, "bars_hum": [avg] * 9, "grid_buzz": [avg - 0.1] * 9}
    met = {"avg": avg, "reported": {k: avg for k in ("0.5", "0.6", "0.7", "0.8", "0.9")}, "n_videos": 8,
           "tious": TIOUS, "mAP": {str(t): avg for t in TIOUS}, "per_class": per_class,
           "n_events_per_class": {"red_beep": 3, "bars_hum": 3, "grid_buzz": 2},
           "selection": {"split": "train-holdout", "n": n_holdout, "frac": 0.2, "video_ids": ["demo_003", "demo_007"]}}
    (d / "metrics.json").write_text(json.dumps(met))
    hit = [{"segment": [6.0, 7.68], "label": "grid_buzz", "score": 0.8}] if name == "mil" else []  # tIoU 0.87
    (d / "predictions.json").write_text(json.dumps({"results": {
        "demo_011": [{"segment": [0.96, 2.88], "label": "grid_buzz", "score": 0.9}, *hit],
        "demo_012": [{"segment": [1.2, 1.92], "label": "red_beep", "score": 0.9}]}}))  # tIoU 0.375: not a hit
    (d / "log.jsonl").write_text("".join(json.dumps({"epoch": e, "val": {"avg": v}}) + "\n"
                                         for e, v in ((1, 0.18), (2, 0.65), (3, 0.2))))
    return d / "metrics.json"


def test_demo_page_says_what_the_data_is_and_which_epoch(tmp_path) -> None:
    from models.run.compare import metrics_row

    ann = _demo_dataset(tmp_path)
    res = tmp_path / "results" / "demo"
    metrics = [_model_run(res, "clasp", 0.685), _model_run(res, "mil", 0.698), _model_run(res, "clasp_shuffled", 0.09)]
    assert metrics_row(json.loads(metrics[0].read_text()))["Avg"] == pytest.approx(68.5)
    (res / "compare.md").write_text(COMPARE_MD)
    summary.write_summary(res / "summary.html", "demo", DEMO_RECIPE, metrics=metrics, compare_md=res / "compare.md",
                          annotations=ann, generator={"seed": 0, "noise": 0})
    page = (res / "summary.html").read_text()
    assert "<b>18</b> synthetic clips made by the demo generator" in page
    assert "<b>3 classes</b> (bars_hum, grid_buzz, red_beep)" in page and "split 10 train / 8 test" in page
    assert "3 unannotated single-modality distractors (a class pattern without its sound or the reverse; 2 in the test" in page
    assert "<b>clasp</b>: checkpoint of epoch 2 of 3, the best Avg mAP (65.0 %)" in page
    assert "2 clip(s) (demo_003, demo_007)" in page and "ranged 18.0–65.0 %" in page and "partly luck" in page
    assert "<b>clasp_shuffled</b>: checkpoint" not in page  # the control gets no selection line
    # every tIoU column the Avg is taken over, the Avg's range in its header, and no second (Comparison) table
    scores = page.split("<h2>Test-split mAP (%) at each tIoU threshold</h2>")[1].split("</table>")[0]
    assert "".join(f"<th>{t}</th>" for t in TIOUS) + "<th>Avg (0.1:0.9)</th>" in scores
    assert "<tr><td>clasp</td>" + "<td>68.5</td>" * 10 + "</tr>" in scores
    assert "<h2>Comparison</h2>" not in page and "| Method |" not in page and page.count("<th>0.5</th>") == 1
    assert 'href="compare.md"' in page
    # per-class AP, worst class first, with the test events of each class; sortable in the browser
    per_class = page.split("Per-class AP (%), worst class first</h3>")[1].split("</table>")[0]
    assert per_class.startswith('<table class="sortable per-class"><tr><th>class</th><th>test events</th>'
                                "<th>clasp AP@0.5</th><th>clasp Avg (0.1:0.9)</th>")
    assert per_class.index("grid_buzz") < per_class.index("bars_hum") < per_class.index("red_beep")
    assert "<tr><td>grid_buzz</td><td>2</td><td>58.5</td><td>58.5</td>" in per_class
    assert "<script>" in page and "table.sortable" in page
    # the recipe differs from the README's default: said in words
    assert "uses Farneback optical flow (OpenCV, classical, no weights) at 12.5 FPS" in page
    assert "not the README's default, RAFT optical flow at 25 FPS" in page and "minutes on 2 CPU cores" in page
    # one timeline figure per test clip: model, then its control; distractors and false positives named
    assert page.count("<figure class='timeline'") == 8
    fig = page.split("id='timeline-demo_011'>")[1].split("</figure>")[0]
    assert "1 distractor(s) (grid_buzz visual only 5.76–7.68 s)" in fig
    assert "mil: 1 true positive, 1 distractor" in fig and "clasp — shuffled-label control: 1 true positive" in fig
    assert page.index("clasp — shuffled-label control:") > page.index("clasp: ") and "explain_predictions" in page
    provenance = html.unescape(page.split("<h2>Provenance</h2>")[1].split("</pre>")[0])
    assert '"flow": "farneback"' in provenance and "raft" not in provenance
    assert "CLASP 68.5 vs MIL 69.8 Avg mAP (MIL ahead by 1.3)" in page
    assert ("the 2 single-modality distractors of the test clips: CLASP reported 0 of them as events and MIL 1 "
            "(its class, tIoU ≥ 0.5), the part of CLASP's design that should pay here") in page
    assert "how the 8 annotated events of the 8 test clips are localized" in page
    assert "say nothing about real accuracy" in page


def test_prediction_page_names_the_model_links_outputs_and_flags_silent_clips(tmp_path) -> None:
    res = tmp_path / "results" / "samples"
    feats = []
    for vid, has_audio in (("bikes", False), ("bigbuckbunny", True)):
        for kind in ("i3d", "vggish"):
            f = res / "features" / kind / f"{vid}.npy"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
            prov = {"weights": "random", **({"has_audio": has_audio} if kind == "vggish" else {})}
            f.with_suffix(".json").write_text(json.dumps(prov))
            feats.append(f)
    preds = []
    for vid in ("bikes", "bigbuckbunny"):
        p = res / "predictions" / "clasp" / f"{vid}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"events": [{"start_s": 0, "end_s": 1, "label": "x", "score": 0.5}]}))
        p.with_suffix(".csv").write_text("start_s,end_s,label,score\n0,1,x,0.5\n")
        preds.append(p)
    ck = tmp_path / "results" / "demo" / "models" / "clasp" / "best.pt"
    summary.write_summary(res / "summary.html", "samples", DEMO_RECIPE, feature_files=feats, predictions=preds,
                          predict_with={"dataset": "demo", "model": "clasp", "checkpoint": str(ck)})
    page = (res / "summary.html").read_text()
    assert "Model <b>clasp</b> trained on dataset <code>demo</code>" in page
    assert '<a href="../demo/models/clasp/best.pt">best.pt</a>' in page
    assert '<a href="predictions/clasp/bikes.json">bikes.json</a> · <a href="predictions/clasp/bikes.csv">bikes.csv</a>' in page
    assert "<b>1 of 2 clip(s) have no audio track</b> (bikes)" in page
    assert "bikes — 1 event(s) (no audio track: visual stream only)" in page
    assert "bigbuckbunny — 1 event(s)</h3>" in page


def _avvp_run(root: Path, mode: str, seg_type: float) -> Path:
    from models.avvp.metrics import KEYS

    m = root / mode / "metrics.json"
    m.parent.mkdir(parents=True)
    m.write_text(json.dumps({"test": {k: seg_type for k in KEYS}, "log": [{"epoch": 1, "loss": 1.0}],
                             "selection": {"by": "last epoch", "epoch": 1, "val": None},
                             "test_videos": {"scored": 2, "listed": 2, "missing": 0, "missing_ids": []}}))
    return m


def test_avvp_page_keeps_the_accuracy_warning_and_shows_the_control(tmp_path) -> None:
    runs = [_avvp_run(tmp_path, "pseudo", 0.30), _avvp_run(tmp_path, "video", 0.05)]
    avvp_summary.write_avvp_summary(tmp_path / "a.html", "demo_llp", runs,
                               banner="WEIGHTS: RANDOM - features from randomly initialised extractors")
    page = (tmp_path / "a.html").read_text()
    assert re.search(r'<div class="banner">WEIGHTS: RANDOM[^<]*say nothing about real accuracy\.</div>', page)
    assert "No label-shuffled control" in page
    runs.append(_avvp_run(tmp_path, "shuffled", 0.10))
    avvp_summary.write_avvp_summary(tmp_path / "b.html", "demo_llp", runs)
    page = (tmp_path / "b.html").read_text()
    assert "No label-shuffled control" not in page and 'class="banner"' not in page
    assert "<b>generated pseudo-labels</b>: segment Type@AV 30.0 % vs 10.0 % with shuffled labels: above its control" in page
    assert "<b>video-level labels only</b>: segment Type@AV 5.0 % vs 10.0 % with shuffled labels: NOT above" in page
    assert "Only 2 test clip(s)" in page


def test_avvp_page_says_when_a_run_predicted_nothing(tmp_path) -> None:
    """A run that predicts no event scores 0.0 wherever there is ground truth: the page says so."""
    from models.avvp.metrics import avvp_scores

    gt = np.zeros((2, 3, 10))
    gt[:, 0, 1:4] = 1
    silent = avvp_scores(np.zeros_like(gt), np.zeros_like(gt), gt, gt)
    assert all(v == 0.0 for v in silent.values())  # by hand: every class with ground truth has F = 0
    runs = [_avvp_run(tmp_path, "video", 0.0), _avvp_run(tmp_path, "pseudo", 0.3)]
    (tmp_path / "video" / "predictions.json").write_text(json.dumps(
        {"segment_seconds": 1.0, "videos": {"a": {"audio": [], "visual": []}, "b": {"audio": [], "visual": []}}}))
    (tmp_path / "pseudo" / "predictions.json").write_text(json.dumps(
        {"segment_seconds": 1.0, "videos": {"a": {"audio": [[1, 4, "x", 0.9]], "visual": [[1, 4, "x", 0.8],
                                                                                        [5, 6, "y", 0.6]]}}}))
    avvp_summary.write_avvp_summary(tmp_path / "p.html", "demo_llp", runs)
    page = (tmp_path / "p.html").read_text()
    assert "<b>video-level labels only</b>: predicted no event on the test clips" in page
    assert "<b>generated pseudo-labels</b>: 1 audio and 2 visual event(s) predicted" in page


# ------------------------------------------------------------------ a real browser
def _chromium() -> str | None:
    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _dom(page_html: Path) -> str:
    """The DOM headless Chromium builds from a page, after its scripts ran. CI installs Chromium and sets
    AVLOC_BROWSER_REQUIRED=1 (.ci/run), so there a missing browser fails."""
    if _chromium() is None:
        why = "no headless Chromium on PATH (apt-get install chromium)"
        if os.environ.get("AVLOC_BROWSER_REQUIRED") == "1":
            pytest.fail(why)
        pytest.skip(why)
    out = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          page_html.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def test_page_renders_in_headless_chromium(tmp_path) -> None:
    """In the DOM a browser builds: the score table with every tIoU column, the per-class AP table (sortable:
    its headers got their click handler), one timeline figure per test clip whose caption names the
    distractor a prediction hit and the shuffled-label control's panel."""
    ann = _demo_dataset(tmp_path)
    res = tmp_path / "demo"
    metrics = [_model_run(res, "mil", 0.698), _model_run(res, "mil_shuffled", 0.05)]
    (res / "compare.md").write_text(COMPARE_MD)
    summary.write_summary(res / "summary.html", "demo", DEMO_RECIPE, metrics=metrics, compare_md=res / "compare.md",
                          annotations=ann, generator={"seed": 0, "noise": 0})
    dom = _dom(res / "summary.html")
    assert "<th>0.1</th><th>0.2</th>" in dom and "<th>Avg (0.1:0.9)</th>" in dom and "<h2>Comparison</h2>" not in dom
    per_class = dom.split('<table class="sortable per-class">')[1].split("</table>")[0]
    assert '<th title="click to sort"' in per_class  # the inline script ran on it
    assert per_class.count("<tr>") == 4 and "<td>grid_buzz</td><td>2</td>" in per_class
    figures = re.findall(r"<figure class=\"timeline\" id=\"timeline-(demo_\d+)\"><img [^>]*>"
                         r"<figcaption class=\"note\">([^<]*)</figcaption>", dom)
    assert [v for v, _ in figures] == [f"demo_{i:03d}" for i in range(10, 18)]
    caption = dict(figures)["demo_011"]
    assert "grid_buzz visual only 5.76–7.68 s" in caption and "mil: 1 true positive, 1 distractor" in caption
    assert caption.endswith("mil — shuffled-label control: 1 true positive.")  # the control panel
    # a click on "test events" sorts by it, a second one reverses
    clicked = res / "clicked.html"
    clicked.write_text((res / "summary.html").read_text().replace(
        "</body>", "<script>const h=document.querySelectorAll('table.sortable th')[1];h.click();h.click();</script></body>"))
    rows = _dom(clicked).split('<table class="sortable per-class">')[1].split("</table>")[0]
    assert re.findall(r"<tr><td>(\w+)</td><td>(\d+)</td>", rows)[-1] == ("grid_buzz", "2")


def test_avvp_page_names_test_classes_never_seen_in_training(tmp_path) -> None:
    """demo_llp: 3 training clips, 2 test clips whose classes are mostly absent from training -> every
    test score 0.0 is the data, not the metric; the page says which classes."""
    from extractors.io import save_npz

    names = np.array(["bars_hum", "blue_chirp", "fractal_hiss", "red_beep"])
    save_npz(tmp_path / "train.npz", labels=np.array([[0, 1, 0, 0], [0, 1, 1, 0], [1, 1, 0, 0]], np.float32),
             class_names=names)
    save_npz(tmp_path / "test.npz", labels=np.array([[0, 0, 1, 1], [1, 0, 0, 1]], np.float32), class_names=names)
    cov = avvp_summary.unseen_test_classes(tmp_path / "train.npz", tmp_path / "test.npz")
    assert cov == {"test": ["bars_hum", "fractal_hiss", "red_beep"], "unseen": ["red_beep"], "n_train": 3, "n_test": 2}
    runs = [_avvp_run(tmp_path, "video", 0.0)]
    avvp_summary.write_avvp_summary(tmp_path / "u.html", "demo_llp", runs, train_npz=tmp_path / "train.npz",
                               test_npz=tmp_path / "test.npz")
    page = (tmp_path / "u.html").read_text()
    assert "<b>1 of the 3 classes in the 2 test clip(s) never occur in the 3 training clip(s)' labels</b> (red_beep)" in page


# ------------------------------------------------------------------ issue 33
def test_each_false_positive_is_named_by_the_documented_rule() -> None:
    from models.run.metrics import explain_predictions

    gt = [(0.96, 2.88, "red_beep"), (4.8, 6.72, "grid_buzz")]
    dis = [(7.68, 9.6, "bars_hum")]
    pred = [(0.96, 2.88, "red_beep", 0.95), (1.0, 2.5, "red_beep", 0.6),  # found; found again
            (7.7, 9.6, "bars_hum", 0.9), (4.8, 5.2, "grid_buzz", 0.4),  # a distractor; an event cut short
            (4.8, 6.72, "red_beep", 0.3), (3.0, 3.5, "fractal_hiss", 0.1)]  # another class's event; nothing
    assert explain_predictions(pred, gt, dis) == ["TP", "duplicate", "distractor", "mistimed", "wrong class",
                                                  "background"]
    # the AP's matching: the higher score takes the event, whatever the input order
    assert explain_predictions(pred[1::-1], gt) == ["duplicate", "TP"]


def test_timeline_draws_distractors_tags_and_a_colour_bar(tmp_path, monkeypatch) -> None:
    figs = _capture_figures(monkeypatch)
    plots.plot_timeline_panels(tmp_path / "t.png", 9.64, [("clasp", [(7.7, 9.6, "bars_hum", 0.9)], ["distractor"]),
                                                           ("clasp — shuffled-label control", [], [])],
                               [(0.96, 2.88, "red_beep", 1.0)], title="demo_003",
                               distractors=[(7.68, 9.6, "bars_hum", "visual_only")])
    fig = figs[0]
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 and len(fig.axes) == 3  # two runs over the same rows, and the score's colour bar
    texts = [t.get_text() for t in panels[0].texts]
    assert "distractor" in texts and "visual only" in texts and "0.90" in texts
    assert [t.get_text() for t in panels[1].texts] == ["visual only"]  # drawn in the control's panel too
    assert panels[0].get_title(loc="left") == "demo_003 — clasp"


def test_avvp_page_compares_every_column_with_the_control_and_shows_the_selection_curve(tmp_path, monkeypatch) -> None:
    from models.avvp.metrics import KEYS

    runs = [_avvp_run(tmp_path, "pseudo", 0.30), _avvp_run(tmp_path, "shuffled", 0.10)]
    for m, best in zip(runs, (2, 1), strict=True):
        met = json.loads(m.read_text())
        met["log"] = [{"epoch": e, "loss": 1.0 / e, "val_seg_type": v} for e, v in ((1, 0.2), (2, 0.5), (3, 0.4))]
        met["selection"] = {"by": "best validation seg_type", "epoch": best, "val": {"seg_type": 0.5}}
        met["test"]["seg_av"] = 0.05 if m.parent.name == "pseudo" else 0.43  # a silent control's free seg_av
        m.write_text(json.dumps(met))
    figs = _capture_figures(monkeypatch)
    avvp_summary.write_avvp_summary(tmp_path / "v.html", "planted", runs)
    page = (tmp_path / "v.html").read_text()
    delta = page.split("minus its label-shuffled control, every column (points)</h3>")[1].split("</table>")[0]
    assert "".join(f"<th>{k}</th>" for k in KEYS) in delta
    assert "<tr><td>generated pseudo-labels</td><td>+20.0</td><td>+20.0</td><td>-38.0</td>" in delta
    assert "above it on 9 of the 10 columns" in page
    val = [ax for ax in figs[-1].axes if ax.get_ylabel() == "validation seg Type@AV (%)"][0]
    assert [list(line.get_ydata()) for line in val.lines[::2]] == [[20.0, 50.0, 40.0]] * 2
    assert [list(line.get_xdata()) for line in val.lines[1::2]] == [[2], [1]]  # each run's selected epoch, starred
    assert "the star marks the epoch kept" in page


def test_metrics_page_is_rounded_tables_not_raw_json(tmp_path) -> None:
    from models.report.tables import write_metrics_page

    d = tmp_path / "models" / "clasp"
    met = json.loads(_model_run(tmp_path, "clasp", 0.3).read_text())
    met["tious"] = [0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    (d / "metrics.json").write_text(json.dumps(met))
    write_metrics_page(d / "metrics.json", d / "metrics.html", "Metrics — demo/models/clasp")
    page = (d / "metrics.html").read_text()
    assert "<th>Avg (0.1:0.9)</th>" in page and "<td>30.0</td>" in page and "0.30000000000000004" not in page
    assert '<table class="sortable per-class">' in page and "<td>grid_buzz</td><td>2</td><td>20.0</td>" in page
    ear = tmp_path / "pseudo"
    _avvp_run(tmp_path, "pseudo", 0.25)
    write_metrics_page(ear / "metrics.json", ear / "metrics.html", "Metrics — avvp/planted/pseudo")
    assert "<tr><td>test</td>" + "<td>25.0</td>" * 10 + "</tr>" in (ear / "metrics.html").read_text()


def test_samples_page_says_the_classes_are_synthetic(tmp_path, monkeypatch) -> None:
    from models.run import runtime

    ck = tmp_path / "best.pt"
    ck.write_bytes(b"")
    monkeypatch.setattr(runtime, "load_checkpoint", lambda p: {"classes": ["red_beep", "bars_hum"]})
    text = summary._synthetic_classes_line({"dataset": "demo", "model": "clasp", "checkpoint": str(ck),
                                            "synthetic": True})
    assert "<b>The 2 classes (red_beep, bars_hum) are the demo's synthetic ones</b>" in text
    assert "mean nothing about these clips" in text


def test_avvp_page_measures_why_events_score_zero_where_segments_do_not(tmp_path) -> None:
    """A parse that covers an event's seconds but runs past its ends: seg F high, evt F 0.0 (IoU < 0.5)."""
    from extractors.io import save_npz
    from models.avvp.metrics import avvp_scores

    gt = np.zeros((1, 2, 10), np.float32)
    gt[0, 0, 1:3] = 1  # class a, 1-3 s
    pred = np.zeros_like(gt)
    pred[0, 0, 0:5] = 1  # 0-5 s: IoU 2/5
    scores = avvp_scores(pred, pred, gt, gt)
    assert scores["seg_type"] > 0.5 and scores["evt_type"] == 0.0  # by hand: seg F 2*2/(2*2+3) = 0.57
    save_npz(tmp_path / "test.npz", gt_a=gt, gt_v=gt, video_ids=np.array(["v0"]), class_names=np.array(["a", "b"]))
    m = _avvp_run(tmp_path, "video", 0.0)
    met = json.loads(m.read_text())
    met["test"] = scores
    m.write_text(json.dumps(met))
    (m.parent / "predictions.json").write_text(json.dumps(
        {"segment_seconds": 1.0, "videos": {"v0": {"audio": [[0, 5, "a", 0.9]], "visual": [[0, 5, "a", 0.8]]}}}))
    em = avvp_summary.event_matches(m.parent / "predictions.json", tmp_path / "test.npz")
    assert (em["n_gt"], em["overlapped"], em["matched"], em["best_ious"]) == (2, 2, 0, [0.4, 0.4])
    avvp_summary.write_avvp_summary(tmp_path / "e.html", "demo_llp", [m], test_npz=tmp_path / "test.npz")
    page = (tmp_path / "e.html").read_text()
    assert "but every event-level score 0.0, measured" in page
    assert "predicted runs of the right class overlap 2 and reach IoU 0.5 on 0; the best IoUs are 0.40, 0.40" in page
    assert "(e.g. v0, audio a: event 1–3 s, predicted 0–5 s, IoU 0.40)" in page


def test_pseudo_label_rows_with_segments_but_no_events_are_explained(tmp_path) -> None:
    """Pseudo-labels that mark a clip's class over the whole 5 s clip, events of 2 s: seg F > 0, evt F 0."""
    from extractors.io import save_npz

    gt = np.zeros((1, 2, 10), np.float32)
    gt[0, 0, 1:3] = 1
    mask = np.zeros((1, 10), bool)
    mask[0, :5] = True
    pseudo = np.zeros((1, 10, 2), np.float32)
    pseudo[0, :5, 0] = 0.9  # (N, T, C), the whole clip
    save_npz(tmp_path / "train.npz", gt_a=gt, gt_v=gt, mask=mask)
    save_npz(tmp_path / "pseudo_labels.npz", pseudo_a=pseudo, pseudo_v=pseudo)
    m = avvp_summary.pseudo_label_runs(tmp_path / "pseudo_labels.npz", tmp_path / "train.npz")
    assert (m["n_gt"], m["matched"], m["best_ious"], m["run_len"], m["gt_len"], m["clip_s"]) == (2, 0, [0.4, 0.4],
                                                                                              5.0, 2.0, 5.0)
    row = [("generated pseudo-labels", "val", {"seg_type": 0.57, "evt_type": 0.0})]
    text = "".join(avvp_summary._pseudo_label_lines(row, tmp_path / "pseudo_labels.npz", tmp_path / "train.npz", 0.5))
    assert "their runs last 5.0 s on average on clips of 5.0 s, the events 2.0 s" in text
    assert "best IoUs 0.40, 0.40, 0 of 2 events matched" in text
