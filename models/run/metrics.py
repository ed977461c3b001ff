"""Dense localization mAP at temporal IoU thresholds (UnAV-100 / ActivityNet protocol, docs/recipes.md "Evaluation").

Re-implemented (not copied) from the behaviour of the reference evaluator used by UnAV-100
(ttgeng233/UnAV ``libs/utils/metrics.py``, itself ActionFormer's ``ANETdetection``, adapted from
ActivityNet's ``eval_detection.py``). The rules it follows, checked against that source:

1. Ground truth: per video, duplicate segments (same label, start and end within 1e-3 s) are
   removed, keeping the first (UnAV's ``remove_duplicate_annotations``; ActionFormer upstream does
   not do this). Classes = labels present in the ground truth; mAP is the mean over them.
2. Per class, predictions are ordered by ``np.argsort(scores)[::-1]`` over the class's
   predictions in input order (videos in dict order, then list order). That sort is NumPy's
   default (not stable) and reversed, so for tied scores the *later* prediction usually comes first;
   we call exactly the same function on the same order, so ties resolve identically.
3. Each prediction, against the ground truth of its class in its video: candidates are visited in
   ``np.argsort(tiou)[::-1]`` order; the first with tIoU < θ ends the search (false positive);
   locked (already matched) ground truth is skipped; the first unlocked one with tIoU ≥ θ becomes a
   true positive and is locked. No unlocked candidate -> false positive. A prediction in a video
   without ground truth of that class is a false positive (also for videos not in the ground truth).
4. precision/recall from cumulative TP/FP (recall denominator = number of GT of the class), then
   ActivityNet's ``interpolated_prec_rec`` (VOC 2011 all-points interpolation). A class without
   predictions scores AP 0.
5. Avg = mean of the per-θ mAP over the dataset's tIoU set (:func:`tious_for`): UnAV-100
   ``np.linspace(0.1, 0.9, 9)`` (its loader's ``tiou_thresholds``), ActivityNet 1.3
   ``np.linspace(0.5, 0.95, 10)`` (the ActivityNet protocol, ``0.5:0.05:0.95``); papers report θ 0.5 ... 0.9.

Deliberate difference: predictions whose label is absent from the ground truth are ignored. The
reference remaps label ids with ``DataFrame.replace`` and leaves unknown ids unmapped, so such a
prediction can be counted for whichever present class happens to receive that index; this only
differs from ours when the evaluated subset lacks some classes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from extractors.io import write_text

DEFAULT_TIOUS = np.linspace(0.1, 0.9, 9)
REPORTED_TIOUS = (0.5, 0.6, 0.7, 0.8, 0.9)
# The tIoU set whose mean is a dataset's "Avg" (keyed by recipe name). CLASP Table 2 (ActivityNet) reports
# Avg below the mean of its 0.5..0.9 columns, as a mean over 0.5:0.05:0.95 must be; its Table 1 (UnAV-100)
# and the CCNet paper report Avg above it: the mean over 0.1:0.9.
TIOUS_BY_RECIPE: dict[str, np.ndarray] = {
    "unav100": DEFAULT_TIOUS,
    "activitynet": np.linspace(0.5, 0.95, 10),
}


def tious_for(recipe: Any) -> np.ndarray:
    """The tIoU thresholds of a dataset (a :class:`extractors.recipes.Recipe` or its name); recipes
    without their own protocol (the demo, LLP) use UnAV-100's."""
    name = recipe if isinstance(recipe, str) else getattr(recipe, "name", None)
    return TIOUS_BY_RECIPE.get(str(name), DEFAULT_TIOUS)


def segment_iou(target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """tIoU of one ``[start, end]`` against ``(N, 2)`` candidates (intersection clipped at 0)."""
    candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
    inter = (np.minimum(target[1], candidates[:, 1]) - np.maximum(target[0], candidates[:, 0])).clip(0)
    union = (candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def interpolated_prec_rec(prec: np.ndarray, rec: np.ndarray) -> float:
    """ActivityNet's interpolated AP (VOC 2011): area under the monotone envelope of precision."""
    mprec = np.concatenate([[0.0], np.asarray(prec, np.float64), [0.0]])
    mrec = np.concatenate([[0.0], np.asarray(rec, np.float64), [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(
    gt_by_video: Mapping[str, np.ndarray], pred_videos: Sequence[str], pred_segments: np.ndarray,
    pred_scores: np.ndarray, tious: Sequence[float] = DEFAULT_TIOUS,
) -> np.ndarray:
    """AP of one class at each θ (rules 2-4 of the module docstring).

    ``gt_by_video``: vid -> (M, 2) ground-truth segments of this class (deduplicated);
    predictions: parallel ``pred_videos`` (N,), ``pred_segments`` (N, 2), ``pred_scores`` (N,).
    """
    tious = np.asarray(tious, dtype=np.float64)
    ap = np.zeros(len(tious))
    n = len(pred_videos)
    npos = float(sum(len(v) for v in gt_by_video.values()))
    if n == 0 or npos == 0:
        return ap
    pred_segments = np.asarray(pred_segments, dtype=np.float64).reshape(-1, 2)
    order = np.asarray(pred_scores, dtype=np.float64).argsort()[::-1]
    locked = {vid: np.zeros((len(tious), len(g)), dtype=bool) for vid, g in gt_by_video.items()}
    tp = np.zeros((len(tious), n))
    fp = np.zeros((len(tious), n))
    for rank, i in enumerate(order):
        gt = gt_by_video.get(pred_videos[i])
        if gt is None or len(gt) == 0:
            fp[:, rank] = 1
            continue
        iou = segment_iou(pred_segments[i], gt)
        cand = iou.argsort()[::-1]
        lock = locked[pred_videos[i]]
        for k, thr in enumerate(tious):
            for j in cand:
                if iou[j] < thr:
                    break
                if lock[k, j]:
                    continue
                tp[k, rank] = 1
                lock[k, j] = True
                break
            if tp[k, rank] == 0:
                fp[k, rank] = 1
    tp_c = np.cumsum(tp, axis=1)
    fp_c = np.cumsum(fp, axis=1)
    rec = tp_c / npos
    prec = tp_c / (tp_c + fp_c)
    for k in range(len(tious)):
        ap[k] = interpolated_prec_rec(prec[k], rec[k])
    return ap


def _dedup(segs: list[tuple[float, float, Hashable]], tol: float = 1e-3) -> list[tuple[float, float, Hashable]]:
    kept: list[tuple[float, float, Hashable]] = []
    for s, e, lab in segs:
        if not any(abs(s - ks) <= tol and abs(e - ke) <= tol and lab == kl for ks, ke, kl in kept):
            kept.append((s, e, lab))
    return kept


def _normalize_gt(ground_truth: Any, subset: str | None) -> dict[str, list[tuple[float, float, Hashable]]]:
    """Accept {vid: [(s, e, label)]}, {vid: VideoAnnotation}, or an ActivityNet/UnAV JSON dict."""
    if isinstance(ground_truth, Mapping) and "database" in ground_truth:
        out = {}
        for vid, v in ground_truth["database"].items():
            if subset is not None and str(v.get("subset", "")).lower() != subset:
                continue
            out[vid] = [(float(a["segment"][0]), float(a["segment"][1]), a["label"])
                        for a in v.get("annotations", [])]
        return out
    out = {}
    for vid, v in ground_truth.items():
        if hasattr(v, "segments"):  # VideoAnnotation
            if subset is not None and v.subset != subset:
                continue
            out[vid] = [(float(s.start), float(s.end), s.label) for s in v.segments]
        else:
            out[vid] = [(float(s), float(e), lab) for s, e, lab in v]
    return out


def _normalize_pred(predictions: Any) -> dict[str, list[tuple[float, float, Hashable, float]]]:
    """Accept {vid: [(s, e, label, score)]} or ActivityNet results {"results": {vid: [{...}]}}."""
    if isinstance(predictions, Mapping) and "results" in predictions:
        return {vid: [(float(p["segment"][0]), float(p["segment"][1]), p["label"], float(p["score"]))
                      for p in lst] for vid, lst in predictions["results"].items()}
    return {vid: [(float(s), float(e), lab, float(sc)) for s, e, lab, sc in lst]
            for vid, lst in predictions.items()}


def _tkey(t: float) -> str:
    return f"{t:.2f}".rstrip("0").rstrip(".") if not float(t).is_integer() else f"{t:.1f}"


def compute_map(
    ground_truth: Any, predictions: Any, tious: Sequence[float] = DEFAULT_TIOUS,
    subset: str | None = None, dedup_gt: bool = True,
) -> dict[str, Any]:
    """mAP at each θ, per-class AP, and ``avg`` (mean over ``tious``), UnAV/ActionFormer rules.

    Returns ``{"tious": [...], "mAP": {"0.1": ..}, "avg": float, "per_class": {label: [AP per θ]},
    "n_events_per_class": {label: ground-truth events}, "reported": {"0.5": .., ..., "0.9": .., "avg": ..},
    "num_classes": K}`` (values in [0, 1]).
    """
    tious = np.asarray(tious, dtype=np.float64)
    gt = _normalize_gt(ground_truth, subset)
    pred = _normalize_pred(predictions)
    if dedup_gt:
        gt = {vid: _dedup(segs) for vid, segs in gt.items()}
    classes = sorted({lab for segs in gt.values() for _, _, lab in segs}, key=lambda x: (str(type(x)), x))
    gt_cls: dict[Hashable, dict[str, list[tuple[float, float]]]] = {c: {} for c in classes}
    for vid, segs in gt.items():
        for s, e, lab in segs:
            gt_cls[lab].setdefault(vid, []).append((s, e))
    pr_cls: dict[Hashable, tuple[list[str], list[tuple[float, float]], list[float]]] = {
        c: ([], [], []) for c in classes}
    for vid, lst in pred.items():
        for s, e, lab, sc in lst:
            if lab in pr_cls:  # predictions for classes absent from the GT are ignored
                pr_cls[lab][0].append(vid)
                pr_cls[lab][1].append((s, e))
                pr_cls[lab][2].append(sc)
    per_class: dict[Hashable, list[float]] = {}
    ap = np.zeros((len(tious), len(classes)))
    for ci, c in enumerate(classes):
        g = {vid: np.asarray(v, dtype=np.float64) for vid, v in gt_cls[c].items()}
        vids, segs, scores = pr_cls[c]
        ap[:, ci] = average_precision(g, vids, np.asarray(segs, dtype=np.float64).reshape(-1, 2),
                                      np.asarray(scores, dtype=np.float64), tious)
        per_class[c] = ap[:, ci].tolist()
    m = ap.mean(axis=1) if classes else np.zeros(len(tious))
    by_t = {_tkey(t): float(v) for t, v in zip(tious, m, strict=True)}
    reported = {k: by_t[k] for k in (_tkey(t) for t in REPORTED_TIOUS) if k in by_t}
    reported["avg"] = float(m.mean()) if len(m) else 0.0
    n_events = {c: int(sum(len(v) for v in gt_cls[c].values())) for c in classes}  # the recall denominators
    return {"tious": [float(t) for t in tious], "mAP": by_t, "avg": float(m.mean()) if len(m) else 0.0,
            "per_class": per_class, "n_events_per_class": n_events, "reported": reported,
            "num_classes": len(classes)}


def write_predictions_json(predictions: Mapping[str, Sequence[tuple[float, float, Any, float]]],
                           path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> None:
    """Write ActivityNet results format ``{"version", "results": {vid: [{"segment", "label",
    "score"}]}, "external_data"}`` atomically. ``predictions`` maps vid -> (s, e, label, score)."""
    res = {vid: [{"segment": [float(s), float(e)], "label": lab, "score": float(sc)}
                 for s, e, lab, sc in lst] for vid, lst in predictions.items()}
    doc = {"version": "VERSION 1.3", "results": res, "external_data": dict(extra or {})}
    write_text(path, json.dumps(doc))


def load_predictions_json(path: str | os.PathLike[str]) -> dict[str, list[tuple[float, float, Any, float]]]:
    """Read ActivityNet results format into vid -> [(s, e, label, score)]."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if "results" not in doc:
        raise ValueError(f"{path}: not an ActivityNet results file (no 'results' key)")
    return _normalize_pred(doc)


# What a prediction is, as the timelines mark it (docs/recipes.md "Evaluation"): why a false positive is one.
FP_KINDS = ("duplicate", "mistimed", "distractor", "wrong class", "background")


def explain_predictions(predicted: Sequence[tuple[float, float, Hashable, float]],
                        ground_truth: Sequence[tuple[float, float, Hashable]],
                        distractors: Sequence[tuple[float, float, Hashable]] = (),
                        theta: float = 0.5, min_overlap: float = 0.1) -> list[str]:
    """One tag per prediction of one video (same order): ``"TP"`` or the kind of false positive it is.

    The rule, in this order: **TP** -- tIoU >= ``theta`` with a ground-truth event of its class that no
    higher-scoring prediction took (the AP matching of :func:`average_precision` at ``theta``);
    **duplicate** -- tIoU >= ``theta`` with such an event already taken; otherwise the segment it overlaps
    most (tIoU >= ``min_overlap``) says what it is: a ground-truth event of its own class -> **mistimed**
    (right class, boundaries off), a single-modality distractor of its class -> **distractor** (an unannotated
    pattern or sound that only one stream shows), a ground-truth event or distractor of another class ->
    **wrong class**; nothing there -> **background**. Ties go to the earlier kind of that list.
    Why: a timeline of bare false positives does not say whether the model mistimed, confused or invented."""
    def tiou(a: tuple[float, float], b: tuple[float, float]) -> float:
        inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
        return inter / max(max(a[1], b[1]) - min(a[0], b[0]), 1e-9)

    tags = [""] * len(predicted)
    taken: set[int] = set()
    for i in sorted(range(len(predicted)), key=lambda k: -float(predicted[k][3])):
        s, e, lab, _ = predicted[i]
        own = sorted(((tiou((s, e), (g[0], g[1])), j) for j, g in enumerate(ground_truth) if g[2] == lab),
                     reverse=True)
        hit = next((j for t, j in own if t >= theta and j not in taken), None)
        if hit is not None:
            taken.add(hit)
            tags[i] = "TP"
            continue
        if own and own[0][0] >= theta:
            tags[i] = "duplicate"
            continue
        best = {"mistimed": own[0][0] if own else 0.0,
                "distractor": max((tiou((s, e), (d[0], d[1])) for d in distractors if d[2] == lab), default=0.0),
                "wrong class": max((tiou((s, e), (g[0], g[1])) for g in (*ground_truth, *distractors)
                                    if g[2] != lab), default=0.0)}
        kind = max(best, key=lambda k: (best[k], -FP_KINDS.index(k)))
        tags[i] = kind if best[kind] >= min_overlap else "background"
    return tags


def distractors_reported(predictions: Any, distractors: Sequence[tuple[str, Mapping[str, Any]]],
                         min_tiou: float = 0.5) -> int:
    """How many unannotated single-modality distractors ``[(vid, {"segment": [s, e], "label": ...})]`` a model
    reported as events: a prediction of the distractor's class with tIoU >= ``min_tiou`` against it, whatever
    its score (``predictions``: ``{vid: [(s, e, label, score)]}`` or ActivityNet results). Why: rejecting
    what only one stream shows is what CLASP's cross-modal agreement is for (issue #31); the one home of
    this count for the synthetic videos' report and the planted benchmarks."""
    preds = _normalize_pred(predictions)
    n = 0
    for vid, e in distractors:
        cand = [(s, t) for s, t, lab, _ in preds.get(vid, []) if lab == e["label"]]
        if cand and float(np.nanmax(segment_iou(np.asarray(e["segment"], float), np.asarray(cand)))) >= min_tiou:
            n += 1
    return n
