"""Decoding of the point-based localizers (full supervision): per-point class probabilities and class-aware
offsets -> segments in feature steps, top-k per level, per-class Soft-NMS.

:class:`DecodeConfig` is the one place the inference defaults (UnAV-100's ``test_cfg``) are written; the
pyramid model configs inherit its fields (``models.localizers.pyramid.PyramidConfig``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

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
