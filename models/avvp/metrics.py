"""AVVP (LLP) segment- and event-level F-scores, the ten numbers of the HAN protocol.

Re-implemented from the behaviour of YapengTian/AVVP-ECCV20 (``utils/eval_metrics.py`` and the
``eval`` loop of ``main_avvp.py``), checked against that source:

- Inputs per video are binary (C, T=10) matrices; audio-visual GT/prediction is the element-wise
  product of the audio and visual ones (``GT_av = GT_a * GT_v``, ``SO_av = SO_a * SO_v``).
- **Segment level**, per video: for each class, TP/FP/FN over the 10 segments, F = 2TP / (2TP + FP
  + FN); classes with no prediction and no GT (TP+FP = 0 and TP+FN = 0) are skipped; the video's
  score is the mean over the remaining classes, or 1.0 when none remain (all true negatives).
- **Event level**, per video and class: events are maximal runs of 1s; a predicted event is a TP
  when some GT event of the class has IoU >= 0.5 with it (IoU of the 1-s masks), else an FP; a GT
  event matched by no predicted event (same IoU rule) is an FN. F per class, skipping and
  averaging as above. The reference has **no 1-s onset/offset tolerance**: the HAN paper's
  "event-level" matching is this mask-IoU >= 0.5 rule; we follow the code.
- ``Type@AV`` = mean of the audio, visual and audio-visual scores; ``Event@AV`` = per video, F
  from the *pooled* audio+visual counts of each class (TP_a + TP_v etc.), averaged over classes
  as above. Every number is averaged over videos. Values here are fractions in [0, 1] (the
  reference prints them x100).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

KEYS = ("seg_a", "seg_v", "seg_av", "seg_type", "seg_event",
        "evt_a", "evt_v", "evt_av", "evt_type", "evt_event")


def _f_mean(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Mean per-class F over classes with any prediction or GT; 1.0 when there are none."""
    valid = (tp + fp != 0) | (tp + fn != 0)
    if not valid.any():
        return 1.0
    t, p, n = tp[valid], fp[valid], fn[valid]
    return float(np.mean(2 * t / (2 * t + p + n)))


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = (pred * gt).sum(axis=1)
    fp = (pred * (1 - gt)).sum(axis=1)
    fn = ((1 - pred) * gt).sum(axis=1)
    return tp, fp, fn


def extract_events(seq: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of 1s in a binary sequence as half-open ``(start, end)`` index pairs."""
    s = np.asarray(seq).astype(bool).astype(np.int8)
    d = np.diff(np.concatenate([[0], s, [0]]))
    return list(zip(np.nonzero(d == 1)[0].tolist(), np.nonzero(d == -1)[0].tolist(), strict=True))


def _run_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union


def _event_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = pred.shape[0]
    tp, fp, fn = np.zeros(c), np.zeros(c), np.zeros(c)
    for k in range(c):
        pe, ge = extract_events(pred[k]), extract_events(gt[k])
        for p in pe:
            if any(_run_iou(p, g) >= 0.5 for g in ge):
                tp[k] += 1
            else:
                fp[k] += 1
        for g in ge:
            if not any(_run_iou(g, p) >= 0.5 for p in pe):
                fn[k] += 1
    return tp, fp, fn


def video_scores(pred_a: np.ndarray, pred_v: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray) -> dict[str, float]:
    """The eight per-video numbers (a, v, av, pooled 'event' at segment and event level)."""
    pa, pv = (np.asarray(pred_a) > 0).astype(np.float64), (np.asarray(pred_v) > 0).astype(np.float64)
    ga, gv = (np.asarray(gt_a) > 0).astype(np.float64), (np.asarray(gt_v) > 0).astype(np.float64)
    pav, gav = pa * pv, ga * gv
    out: dict[str, float] = {}
    for level, counts in (("seg", _segment_counts), ("evt", _event_counts)):
        ca, cv, cav = counts(pa, ga), counts(pv, gv), counts(pav, gav)
        out[f"{level}_a"] = _f_mean(*ca)
        out[f"{level}_v"] = _f_mean(*cv)
        out[f"{level}_av"] = _f_mean(*cav)
        out[f"{level}_event"] = _f_mean(ca[0] + cv[0], ca[1] + cv[1], ca[2] + cv[2])
    return out


def avvp_scores(pred_a: Sequence[np.ndarray] | np.ndarray, pred_v: Sequence[np.ndarray] | np.ndarray,
                gt_a: Sequence[np.ndarray] | np.ndarray, gt_v: Sequence[np.ndarray] | np.ndarray) -> dict[str, float]:
    """HAN's ten AVVP numbers over videos; inputs are per-video binary (C, T) arrays (or stacked
    (N, C, T)). Keys: seg_a, seg_v, seg_av, seg_type, seg_event, evt_a, evt_v, evt_av, evt_type,
    evt_event (fractions; multiply by 100 for the papers' tables)."""
    n = len(pred_a)
    if not (len(pred_v) == len(gt_a) == len(gt_v) == n) or n == 0:
        raise ValueError("avvp_scores needs the same non-zero number of videos in all four inputs")
    per = [video_scores(pred_a[i], pred_v[i], gt_a[i], gt_v[i]) for i in range(n)]
    res = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    res["seg_type"] = (res["seg_a"] + res["seg_v"] + res["seg_av"]) / 3.0
    res["evt_type"] = (res["evt_a"] + res["evt_v"] + res["evt_av"]) / 3.0
    return {k: res[k] for k in KEYS}
