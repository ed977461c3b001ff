"""Decoding, the last named stage of every localizer: model outputs -> segments in feature steps.

**Full supervision** (the point-based pyramid models): per-point class probabilities and class-aware
offsets -> segments, top-k per level, per-class Soft-NMS (:func:`decode_dense`). :class:`DecodeConfig` is
the one place its inference defaults (UnAV-100's ``test_cfg``) are written; the pyramid model configs
inherit its fields (``models.localizers.pyramid.PyramidConfig``).

**Weak supervision** (CLASP, MIL, AVEL/DAVE/CCNet weak and the planted matched-filter oracle): per-step
class probabilities and video-level scores -> segments (:func:`decode_weak`), with :class:`WeakDecodeConfig`:

- ``mode: paper`` -- the paper's literal rule, exactly today's
  :func:`models.localizers.pooling.detect_from_probs`: classes whose gate score reaches 0.5, runs of steps
  with probability >= 0.5, score = mean probability in the run. CLASP's paper says no more than "the
  conventional threshold of 0.5" and no official CLASP code is public.
- ``mode: standard`` -- the post-processing every public weak-localization codebase applies to its class
  activation sequence (BaS-Net, ``Pilhyeon/BaSNet-pytorch`` ``test.py`` / ``utils.get_proposal_oic``; CoLA,
  ``zhang-can/CoLA`` ``core/utils.py``; W-TALC's minimum length; ASM-Loc, ``boheumd/ASM-Loc``), re-implemented
  from their behaviour and vectorised: (1) a moving average of ``smooth`` steps over the valid steps only
  (a top-k MIL pool leaves isolated peaks inside an event; averaging joins them into one run); (2) the
  ``top_classes`` classes of highest video-level score (and, if ``class_threshold > 0``, only those at or
  above it; the best class is always kept, as CoLA keeps its argmax); (3) per class, min-max
  normalisation of the smoothed scores over the video (BaS-Net's ``minmax_norm``: max/min clipped at 0) and
  runs of steps at or above each of ``thresholds`` (multi-threshold proposals; identical runs from
  several thresholds are kept once); (4) runs shorter than ``min_len`` steps dropped; (5) the
  outer-inner contrast score of BaS-Net/CoLA: mean smoothed score inside the run minus the mean over the
  ``outer_ratio`` x length steps on each side (0 when there are none), then ``score: mul`` multiplies it by
  the class's video-level score (this project's review of issue 31; proposals of different videos are then
  ranked by how sure the model is the class is present) or ``score: add`` adds ``video_weight`` x the video
  score (BaS-Net/CoLA's ``+ 0.2 x score``); proposals with a score <= 0 are dropped; (6) per-class NMS,
  ``nms: hard`` at ``nms_iou`` (BaS-Net 0.7, CoLA 0.6) or ``gaussian`` Soft-NMS with ``sigma`` (the
  fully supervised UnAV/CCNet: 0.4), or ``none``; at most ``max_segments`` segments per video (UnAV: 100).
  Not done: BaS-Net/CoLA's linear upsampling of the scores (x24) before thresholding, which they need
  because their features are resampled to a fixed 750 (CoLA) segments; here steps are 0.32 s and a run's
  ends are already cell edges (``models.localizers.postprocess``).

The contrast is computed on the smoothed probabilities, not on the min-max normalised ones, so that a class
the model is unsure of in one video is not scored like a confident one in another. Every parameter is
chosen on the validation split (:mod:`models.run.decoder_selection`); the model configs carry it as
``decoder`` (``auto``: selected after training, ``paper`` / ``standard`` / a dict of these fields: pinned).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from models.localizers.base import Detection
from models.localizers.pooling import detect_from_probs, paper_video_events
from models.localizers.postprocess import soft_nms
from models.localizers.targets import make_points


@dataclass
class DecodeConfig:
    """Inference settings of the UnAV-100 reference config (``test_cfg``)."""

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    duration_thresh: float = 0.05
    nms_sigma: float = 0.4
    iou_threshold: float = 0.7  # only used by linear/hard NMS; gaussian Soft-NMS ignores it
    min_score: float = 0.001
    max_seg_num: int = 100


def decode_config(cfg: Any) -> DecodeConfig:
    """The :class:`DecodeConfig` fields read from a model config (kept flat there so that configs
    survive ``dataclasses.asdict`` -> checkpoint -> ``cfg_cls(**d)``)."""
    return DecodeConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(DecodeConfig)})


def decode_dense(out: dict[str, Any], cfg: DecodeConfig) -> list[list[tuple[float, float, int, float]]]:
    """Turn per-point class probabilities and class-aware offsets into detections per video:
    ``t - left * stride``, ``t + right * stride`` (Eq. 1), top-k pre-filter per level, then per-class
    Soft-NMS (:func:`models.localizers.postprocess.soft_nms`).  Units: feature steps."""
    masks = out["level_masks"]
    B = masks[0].shape[0]
    C = out["cls_logits"][0].shape[-1]
    points = make_points([m.shape[1] for m in masks], None, masks[0].device)
    results: list[list[tuple[float, float, int, float]]] = []
    for b in range(B):
        segs_all, scores_all, labels_all = [], [], []
        for logit, off, m, pts in zip(out["cls_logits"], out["offsets"], masks, points, strict=True):
            prob = (torch.sigmoid(logit[b].float()) * m[b, :, None]).flatten()
            keep = torch.nonzero(prob > cfg.pre_nms_thresh).squeeze(1)
            prob = prob[keep]
            k = min(cfg.pre_nms_topk, keep.numel())
            prob, order = prob.sort(descending=True)
            prob, keep = prob[:k], keep[order[:k]]
            pt_idx = torch.div(keep, C, rounding_mode="floor")
            cls_idx = keep % C
            o = off[b].float()[pt_idx, cls_idx]  # (k, 2)
            t, stride = pts[pt_idx, 0], pts[pt_idx, 3]
            seg = torch.stack([t - o[:, 0] * stride, t + o[:, 1] * stride], 1)
            dur_ok = (seg[:, 1] - seg[:, 0]) > cfg.duration_thresh
            segs_all.append(seg[dur_ok])
            scores_all.append(prob[dur_ok])
            labels_all.append(cls_idx[dur_ok])
        segs = torch.cat(segs_all).detach().cpu()
        scores = torch.cat(scores_all).detach().cpu()
        labels = torch.cat(labels_all).detach().cpu()
        results.append(_soft_nms_to_list(segs, scores, labels, cfg))
    return results


def _soft_nms_to_list(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      cfg: DecodeConfig) -> list[tuple[float, float, int, float]]:
    if segs.shape[0] == 0:
        return []
    s, sc, lb, _ = soft_nms(
        segs.numpy(), scores.numpy(), labels.numpy(), sigma=cfg.nms_sigma, iou_threshold=cfg.iou_threshold,
        min_score=cfg.min_score, method="gaussian", max_seg_num=cfg.max_seg_num,
    )
    return [(float(a), float(e), int(c), float(p)) for (a, e), c, p in zip(s, lb, sc, strict=True)]


# --------------------------------------------------------------------------------------------
# weak supervision
# --------------------------------------------------------------------------------------------
#: multi-threshold sets on min-max normalised scores: the review of issue 31 (0.1:0.9), BaS-Net's
#: ``act_thresh`` (``np.arange(0, 0.25, 0.025)``) and CoLA's actionness thresholds (0.1:0.925:0.025)
THRESHOLDS: dict[str, tuple[float, ...]] = {
    "0.1:0.9": tuple(round(0.1 * i, 3) for i in range(1, 10)),
    "basnet": tuple(round(0.025 * i, 3) for i in range(10)),
    "cola": tuple(round(0.1 + 0.025 * i, 3) for i in range(34)),
}


@dataclass
class WeakDecodeConfig:
    """The weak decoder (module docstring). Defaults: the standard decoder before any selection (what a
    run validates its epochs with when ``decoder: auto``, and where the selection's search starts): the
    values the search chose on validation for CLASP, MIL and the oracle on the real-structure planted bench
    (fraction 0.05, docs/recipes.md "The weak decoder"), where every run chose 5 classes and BaS-Net's
    thresholds, and CLASP/MIL Gaussian Soft-NMS and a 15-41-step average."""

    mode: str = "standard"  # "paper" | "standard"
    smooth: int = 25  # moving-average width in steps over the valid steps (1: none)
    top_classes: int = 5  # classes kept per video by video-level score (0: all)
    class_threshold: float = 0.0  # and only those with a video score >= this (0: no threshold)
    thresholds: tuple[float, ...] = THRESHOLDS["basnet"]
    min_len: int = 1  # steps
    outer_ratio: float = 0.25  # BaS-Net/CoLA's lambda
    score: str = "mul"  # "mul": (inner - outer) x video score | "add": inner - outer + video_weight x video score
    video_weight: float = 0.2  # BaS-Net/CoLA's gamma (score: add only)
    nms: str = "gaussian"  # "hard" | "gaussian" | "none"
    nms_iou: float = 0.5
    sigma: float = DecodeConfig.nms_sigma  # Gaussian Soft-NMS width (UnAV's, written once in DecodeConfig)
    max_segments: int = DecodeConfig.max_seg_num  # per video (UnAV's max_seg_num)

    def __post_init__(self) -> None:
        self.thresholds = tuple(float(t) for t in self.thresholds)  # a list after JSON
        for name, value, allowed in (("mode", self.mode, ("paper", "standard")), ("score", self.score, ("mul", "add")),
                                     ("nms", self.nms, ("hard", "gaussian", "none"))):
            if value not in allowed:
                raise ValueError(f"weak decoder {name} must be one of {allowed}, got {value!r}")
        if self.smooth < 1 or self.min_len < 1 or not self.thresholds:
            raise ValueError(f"weak decoder needs smooth >= 1, min_len >= 1 and thresholds, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def weak_decode_config(value: Any) -> WeakDecodeConfig:
    """A model config's ``decoder`` as a :class:`WeakDecodeConfig`: ``"auto"`` (until selection has
    replaced it) and ``"standard"`` the defaults, ``"paper"`` the paper's rule, a dict its fields."""
    if isinstance(value, WeakDecodeConfig):
        return value
    if value in (None, "auto", "standard"):
        return WeakDecodeConfig()
    if value == "paper":
        return WeakDecodeConfig(mode="paper")
    if isinstance(value, dict):
        return WeakDecodeConfig(**value)
    raise ValueError(f"decoder must be 'auto', 'paper', 'standard' or a dict of WeakDecodeConfig fields, got {value!r}")


class WeakOutputs(NamedTuple):
    """What a weak model hands its decoder: per-step probabilities ``(B, T, C)``, the valid-step mask,
    the video-level scores the standard decoder ranks classes by (the model's training MIL pool), the
    paper rule's gate scores (``None``: no gate), its threshold, and whether its events are sorted by score."""

    step_probs: torch.Tensor
    mask: torch.Tensor
    video: torch.Tensor
    gate: torch.Tensor | None
    threshold: float = 0.5
    by_score: bool = False


def decode_weak(w: WeakOutputs, decoder: Any) -> list[list[Detection]]:
    """Per video, ``(start_step, end_step, class, score)`` from a weak model's outputs with its ``decoder``
    (a model config's ``decoder`` value or a :class:`WeakDecodeConfig`)."""
    cfg = weak_decode_config(decoder)
    if cfg.mode == "paper":
        return detect_from_probs(w.step_probs, w.mask, w.threshold, w.gate, w.by_score)
    p = w.step_probs.detach().float().cpu().numpy()
    v = w.video.detach().float().cpu().numpy()
    lengths = w.mask.detach().bool().sum(dim=1).cpu().tolist()
    return [standard_video_events(p[b, :n], v[b], cfg) for b, n in enumerate(lengths)]


def decode_weak_video(p: np.ndarray, video: np.ndarray, gate: np.ndarray | None, cfg: WeakDecodeConfig,
                      threshold: float = 0.5, by_score: bool = False) -> list[Detection]:
    """:func:`decode_weak` for one video's valid steps ``p (n, C)`` on NumPy arrays (decoder selection)."""
    if cfg.mode == "paper":
        return paper_video_events(p, gate, threshold, by_score)
    return standard_video_events(p, video, cfg)


def smooth_steps(p: np.ndarray, width: int) -> np.ndarray:
    """Moving average of ``width`` steps of ``p (n, C)`` over its rows, each window cut to the valid rows
    and divided by the rows it holds (no zeros from padding pull the video's ends down)."""
    n = p.shape[0]
    if width <= 1 or n <= 1:
        return p
    cs = np.concatenate([np.zeros((1, p.shape[1]), p.dtype), np.cumsum(p, axis=0)])
    t = np.arange(n)
    lo, hi = np.maximum(t - (width - 1) // 2, 0), np.minimum(t + width // 2 + 1, n)
    return (cs[hi] - cs[lo]) / (hi - lo)[:, None]


def _keep_classes(video: np.ndarray, cfg: WeakDecodeConfig) -> np.ndarray:
    order = np.argsort(-video, kind="stable")
    keep = order[: cfg.top_classes] if cfg.top_classes > 0 else order
    if cfg.class_threshold > 0:
        keep = keep[video[keep] >= cfg.class_threshold]
    return keep if len(keep) else order[:1]


def standard_video_events(p: np.ndarray, video: np.ndarray, cfg: WeakDecodeConfig) -> list[Detection]:
    """The standard decoder (module docstring) on one video: ``p (n, C)`` valid step probabilities,
    ``video (C,)`` video-level scores; events sorted by score."""
    n = p.shape[0]
    if n == 0:
        return []
    keep = _keep_classes(np.asarray(video, np.float64), cfg)
    q = smooth_steps(np.asarray(p, np.float64)[:, keep], cfg.smooth)  # (n, K)
    hi, lo = np.maximum(q.max(0), 0.0), np.maximum(q.min(0), 0.0)
    delta = np.where(hi - lo > 0, hi - lo, 1.0)
    norm = (q - lo) / delta
    k = len(keep)
    thr = np.asarray(cfg.thresholds)[:, None, None]
    pos = (norm[None] >= thr).transpose(0, 2, 1).reshape(-1, n)  # (J * K, n)
    d = np.diff(np.pad(pos.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, a = np.nonzero(d == 1)
    b = np.nonzero(d == -1)[1] - 1  # same row-major order as the starts
    key = np.unique(((rows % k) * n + a) * n + b)  # (class slot, first, last) once per run
    c, a, b = key // (n * n), (key // n) % n, key % n
    ok = b - a + 1 >= cfg.min_len
    if not ok.any():
        return []
    c, a, b = c[ok], a[ok], b[ok]
    length = b - a + 1
    cs = np.concatenate([np.zeros((1, k)), np.cumsum(q, axis=0)])
    inner = (cs[b + 1, c] - cs[a, c]) / length
    grow = cfg.outer_ratio * length
    o_s = np.maximum(np.trunc(a - grow), 0).astype(np.int64)
    o_e = np.minimum(np.trunc(b + grow), n - 1).astype(np.int64)
    n_out = (a - o_s) + (o_e - b)
    outer = np.where(n_out > 0, (cs[a, c] - cs[o_s, c] + cs[o_e + 1, c] - cs[b + 1, c]) / np.maximum(n_out, 1), 0.0)
    v = np.asarray(video, np.float64)[keep][c]
    score = (inner - outer) * v if cfg.score == "mul" else inner - outer + cfg.video_weight * v
    ok = score > 0
    if not ok.any():
        return []
    segs = np.stack([a - 0.5, b + 0.5], 1)[ok]
    score, labels = score[ok], keep[c[ok]]
    idx, score = video_nms(segs, score, labels, cfg)
    return [(float(s), float(e), int(cl), float(sc)) for (s, e), cl, sc in zip(segs[idx], labels[idx], score, strict=True)]


def video_nms(segs: np.ndarray, scores: np.ndarray, labels: np.ndarray, cfg: WeakDecodeConfig,
              min_score: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """(kept indices, their scores), best first: per-class greedy NMS of one video's proposals.

    ``hard`` drops the proposals of the kept one's class with tIoU >= ``nms_iou`` (BaS-Net/CoLA's ``nms``);
    ``gaussian`` multiplies their scores by ``exp(-tIoU^2 / sigma)`` and drops those below ``min_score``
    (the Soft-NMS decay of ActionFormer/UnAV, :func:`models.localizers.postprocess.soft_nms`); ``none`` keeps
    all. All classes run in one loop (proposals of other classes have tIoU 0 with the kept one) taking the
    highest remaining score each time, and stop after ``max_segments``: kept scores never rise, so this equals
    NMS per class then a cut of the union to the ``max_segments`` best, at a tenth of the per-class loops' cost
    (decoder selection decodes every validation video a dozen times)."""
    cap = cfg.max_segments if cfg.max_segments > 0 else len(scores)
    if cfg.nms == "none":
        order = np.argsort(-scores, kind="stable")[:cap]
        return order, scores[order]
    s, e = segs[:, 0], segs[:, 1]
    lens = e - s
    sc = scores.astype(np.float64).copy()
    alive = np.ones(len(sc), bool)
    keep: list[int] = []
    kept: list[float] = []
    while len(keep) < cap and alive.any():
        i = int(np.argmax(np.where(alive, sc, -np.inf)))
        keep.append(i)
        kept.append(float(sc[i]))
        alive[i] = False
        inter = np.maximum(np.minimum(e[i], e) - np.maximum(s[i], s), 0.0)
        iou = np.where(labels == labels[i], inter / (lens[i] + lens - inter), 0.0)
        if cfg.nms == "hard":
            alive &= iou < cfg.nms_iou
        else:
            sc *= np.exp(-(iou**2) / cfg.sigma)
            alive &= sc >= min_score
    return np.asarray(keep, np.int64), np.asarray(kept)
