"""From model outputs to timed events: thresholding, step <-> seconds, Soft-NMS, results JSON.

Step <-> seconds convention (same as ``models.data.steps``): continuous step ``x`` is the time
``center_offset_s + x * step_s`` (feature ``t``'s window centre at integer ``x = t``, the mapping
of the public UnAV-100 loader). Feature ``t`` owns the cell ``[t - 0.5, t + 0.5]``, so a run of
positive steps ``a..b`` becomes the step segment ``[a - 0.5, b + 0.5]`` and the seconds
``[c + (a - 0.5) s, c + (b + 0.5) s]`` (UnAV-100: ``[0.32 a + 0.32, 0.32 b + 0.64]``). The cell of
the first feature is extended back to 0 s (no feature is centred earlier, so time before its
cell has no other owner), and, when the video duration is known, the last valid feature's cell is
extended to the duration; all times are clipped to ``[0, duration]``.

Why cells and not windows: windows overlap (0.96 s windows every 0.32 s), so mapping a run to the
union of its windows ``[a*step, b*step + window]`` makes every event 0.64 s longer than the
ground truth it came from. With cells the round trip "ground-truth segment -> per-step labels by
the centre rule -> events" is exact for segments whose boundaries lie on cell edges
``c + (k - 0.5) * step`` (or at 0 / the duration), so the post-processing gives mAP 1.0 at every
θ including 0.9 for such segments; for arbitrary boundaries the error is at most half a step at
each end (tests/test_postprocess.py).

Soft-NMS re-implements the 1-D Soft-NMS of ActionFormer (``libs/utils/csrc/nms_cpu.cpp``, used
by UnAV-100's DAVE and by CCNet) from its behaviour: per class, repeatedly take the highest
remaining score (first in the current order on ties), decay the rest by ``exp(-iou^2 / sigma)``
(gaussian, applied whatever the IoU), ``1 - iou`` when ``iou >= iou_threshold`` (linear), or 0
when ``iou >= iou_threshold`` (hard), drop those below ``min_score`` by swapping in the last
element; IoU uses lengths ``end - start + 1e-6``, in float32. Each class keeps at most
``max_seg_num``; the union is sorted by score and cut to ``max_seg_num`` (ActionFormer's
``batched_nms`` with ``multiclass=True``, where segment voting is disabled).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from extractors.recipes import Recipe

StepEvent = tuple[float, float, int, float]


def steps_to_seconds(start_step: float, end_step: float, recipe: Recipe,
                     duration: float | None = None) -> tuple[float, float]:
    """Continuous step coordinates -> seconds (``c + x * step_s``), clipped to ``[0, duration]``."""
    c, st = recipe.center_offset_s, recipe.step_s
    s, e = c + float(start_step) * st, c + float(end_step) * st
    s = max(0.0, s)
    e = max(0.0, e)
    if duration is not None:
        s, e = min(s, float(duration)), min(e, float(duration))
    return s, e


def probs_to_step_events(probs: np.ndarray, threshold: float = 0.5,
                         valid_len: int | None = None) -> list[StepEvent]:
    """Per class, runs of consecutive steps with ``prob >= threshold`` -> ``(a - 0.5, b + 0.5, c,
    mean prob over a..b)`` in step units (the ``detect()`` format of ``models/localizers/base.py``)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be (T, C), got {p.shape}")
    t_len = p.shape[0] if valid_len is None else min(int(valid_len), p.shape[0])
    p = p[:t_len]
    pos = p >= threshold
    out: list[StepEvent] = []
    for c in range(p.shape[1]):
        col = pos[:, c].astype(np.int8)
        if not col.any():
            continue
        d = np.diff(np.concatenate([[0], col, [0]]))
        starts = np.nonzero(d == 1)[0]
        ends = np.nonzero(d == -1)[0] - 1
        for a, b in zip(starts, ends, strict=True):
            out.append((a - 0.5, b + 0.5, c, float(p[a:b + 1, c].mean())))
    return out


def step_events_to_seconds(events: Sequence[StepEvent], recipe: Recipe, valid_len: int | None = None,
                           duration: float | None = None) -> list[StepEvent]:
    """Convert ``(start_step, end_step, cls, score)`` to seconds with the cell-edge extensions of
    the module docstring (first cell back to 0; last valid cell to ``duration`` if both given)."""
    out = []
    for s, e, c, sc in events:
        t0, t1 = steps_to_seconds(s, e, recipe, duration)
        if s <= -0.5:
            t0 = 0.0
        if duration is not None and valid_len is not None and e >= valid_len - 0.5:
            t1 = float(duration)
        out.append((t0, t1, int(c), float(sc)))
    return out


def probs_to_events(probs: np.ndarray, recipe: Recipe, threshold: float = 0.5,
                    valid_len: int | None = None, duration: float | None = None) -> list[StepEvent]:
    """Weak-model post-processing (docs/recipes.md, "Evaluation"): per-class threshold, merge consecutive positive
    steps, map to seconds with the cell convention, score = mean probability inside.
    Returns ``[(start_s, end_s, class_idx, score)]``."""
    t_len = np.asarray(probs).shape[0] if valid_len is None else int(valid_len)
    ev = probs_to_step_events(probs, threshold, t_len)
    return step_events_to_seconds(ev, recipe, t_len, duration)


def _iou_1d(seg: np.ndarray, segs: np.ndarray, area: np.float32, areas: np.ndarray) -> np.ndarray:
    inter = np.maximum(np.float32(0), np.minimum(seg[1], segs[:, 1]) - np.maximum(seg[0], segs[:, 0]))
    return inter / (area + areas - inter)


def _soft_nms_single(segs: np.ndarray, scores: np.ndarray, iou_threshold: float, sigma: float,
                     min_score: float, method: int, max_keep: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One class; returns (kept original indices in selection order, their decayed scores).

    Stops after ``max_keep`` selections (> 0): later steps only decay segments that the
    reference would cut anyway (it keeps the first ``max_seg_num`` in selection order)."""
    x = segs.astype(np.float32).copy()
    sc = scores.astype(np.float32).copy()
    areas = (x[:, 1] - x[:, 0] + np.float32(1e-6)).astype(np.float32)
    inds = np.arange(len(sc))
    n = len(sc)
    sel_scores = []
    i = 0
    thr, sig, mins = np.float32(iou_threshold), np.float32(sigma), np.float32(min_score)
    while i < n and (max_keep <= 0 or i < max_keep):
        m = i + int(np.argmax(sc[i:n]))
        for arr in (x, sc, areas, inds):
            arr[[i, m]] = arr[[m, i]]
        sel_scores.append(sc[i])
        if i + 1 < n:
            ovr = _iou_1d(x[i], x[i + 1:n], areas[i], areas[i + 1:n]).astype(np.float32)
            if method == 2:
                w = np.exp(-(ovr * ovr) / sig).astype(np.float32)
            elif method == 1:
                w = np.where(ovr >= thr, np.float32(1) - ovr, np.float32(1)).astype(np.float32)
            else:
                w = np.where(ovr >= thr, np.float32(0), np.float32(1)).astype(np.float32)
            sc[i + 1:n] *= w
            rm = sc[i + 1:n] < mins
            if rm.any():
                # reproduce the reference's swap-with-last compaction (it fixes tie order)
                rest = np.arange(i + 1, n)
                keep_pos = rest[~rm]
                k = len(keep_pos)
                holes = rest[:k][rm[:k]]
                donors = keep_pos[keep_pos >= i + 1 + k][::-1]
                order = rest[:k].copy()
                order[rm[:k]] = donors[:len(holes)]
                for arr in (x, sc, areas, inds):
                    arr[i + 1:i + 1 + k] = arr[order]
                n = i + 1 + k
        i += 1
    return inds[:i], np.asarray(sel_scores, dtype=np.float32)


def soft_nms(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, sigma: float = 0.4,
             iou_threshold: float = 0.7, min_score: float = 0.001, method: str = "gaussian",
             max_seg_num: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class 1-D Soft-NMS (module docstring). Returns ``(segments (K, 2), scores (K,),
    labels (K,), indices (K,))`` sorted by decayed score (stable), ``indices`` pointing into the input.

    Defaults are UnAV-100's ``test_cfg`` (ttgeng233/UnAV ``configs/avel_unav100.yaml``: sigma 0.4,
    iou_threshold 0.7 (unused by the gaussian method), min_score 0.001, max_seg_num 100, multiclass).
    ``max_seg_num <= 0`` keeps everything."""
    methods = {"hard": 0, "linear": 1, "gaussian": 2}
    if method not in methods:
        raise ValueError(f"unknown Soft-NMS method {method!r}; expected one of {sorted(methods)}")
    segments = np.asarray(segments, dtype=np.float32).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if len(segments) == 0:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.float32), labels[:0], np.zeros(0, np.int64)
    all_idx, all_sc = [], []
    for c in np.unique(labels):
        cidx = np.nonzero(labels == c)[0]
        kept, ksc = _soft_nms_single(segments[cidx], scores[cidx], iou_threshold, sigma, min_score,
                                     methods[method], max_seg_num)
        all_idx.append(cidx[kept])
        all_sc.append(ksc)
    idx = np.concatenate(all_idx)
    sc = np.concatenate(all_sc)
    order = np.argsort(-sc, kind="stable")[:max_seg_num if max_seg_num > 0 else None]
    idx, sc = idx[order], sc[order]
    return segments[idx], sc, labels[idx], idx.astype(np.int64)


def events_to_results(video_events: dict[str, Sequence[tuple[float, float, int, float]]],
                      classes: Sequence[str]) -> dict[str, Any]:
    """``{vid: [(start_s, end_s, class_idx, score)]}`` -> ActivityNet results dict
    ``{"version", "results": {vid: [{"segment": [s, e], "label": name, "score"}]}, "external_data"}``."""
    res = {vid: [{"segment": [float(s), float(e)], "label": classes[int(c)], "score": float(sc)}
                 for s, e, c, sc in evs] for vid, evs in video_events.items()}
    return {"version": "VERSION 1.3", "results": res, "external_data": {}}
