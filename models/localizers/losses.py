"""Losses of the localizers: sigmoid focal loss, 1-D GIoU loss and the dense loss built on them
(CCNet, DAVE under full supervision), and the MIL-pooled video-level BCE of weak supervision.

CCNet (Zhou et al., AAAI 2025, Eq. 9) trains its class head with the focal loss of Lin et al. (2017)
and its boundary-regression head with the generalized IoU loss of Rezatofighi et al. (2019), both
summed over pyramid points and divided by a normaliser (the number of positive points).  The UnAV-100
reference (DAVE) uses a centre-distance IoU variant instead; we use GIoU for both, as CCNet states, so
the two models differ only in their backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from models.localizers.pooling import mil_pool
from models.localizers.targets import assign_targets, make_points


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.mean() if loss.numel() > 0 else loss.sum()
    raise ValueError(f"unknown reduction {reduction!r}; expected 'none', 'sum' or 'mean'")


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Focal loss on independent sigmoid outputs (Lin et al. 2017, RetinaNet form).

    ``loss = -alpha_t (1 - p_t)^gamma log(p_t)`` with ``p_t = p`` for target 1 and ``1 - p`` for target
    0 and ``alpha_t = alpha`` / ``1 - alpha`` likewise (``alpha < 0`` disables the weighting).  Targets
    may be soft (label smoothing): the BCE term and ``p_t`` are then the usual linear interpolations.
    Computed from logits with ``binary_cross_entropy_with_logits`` so that it is stable for large
    logits, which matters with the 0.01 prior-probability bias of the class head.
    """
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return _reduce(loss, reduction)


def giou_loss_1d(
    pred: torch.Tensor,
    target: torch.Tensor,
    mode: str = "offsets",
    reduction: str = "none",
    eps: float = 1e-8,
) -> torch.Tensor:
    """Generalized IoU loss ``1 - GIoU`` between 1-D segments, shape ``(N, 2)`` each.

    Conventions (``mode``):

    - ``"offsets"`` (default, what the regression heads predict): each row is ``(left, right)``, the
      non-negative distances from the *same* anchor point to the segment's start and end, i.e. the
      segment is ``[t - left, t + right]``.  Pred and target rows must share the anchor point.
    - ``"segments"``: each row is ``(start, end)`` with ``end >= start`` in any common unit.

    ``GIoU = IoU - (|enclosing| - |union|) / |enclosing|``; the loss is 0 for identical segments,
    in [0, 1) for overlapping ones and in [1, 2) for disjoint ones (so it still has a gradient there,
    the reason GIoU is used instead of IoU).
    """
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred and target must both be (N, 2); got {tuple(pred.shape)} and {tuple(target.shape)}")
    if mode == "offsets":
        lp, rp = pred[..., 0], pred[..., 1]
        lt, rt = target[..., 0], target[..., 1]
        inter = (torch.minimum(lp, lt) + torch.minimum(rp, rt)).clamp(min=0)
        enclose = torch.maximum(lp, lt) + torch.maximum(rp, rt)
        len_p, len_t = lp + rp, lt + rt
    elif mode == "segments":
        sp, ep = pred[..., 0], pred[..., 1]
        st, et = target[..., 0], target[..., 1]
        inter = (torch.minimum(ep, et) - torch.maximum(sp, st)).clamp(min=0)
        enclose = torch.maximum(ep, et) - torch.minimum(sp, st)
        len_p, len_t = ep - sp, et - st
    else:
        raise ValueError(f"unknown mode {mode!r}; expected 'offsets' or 'segments'")
    union = len_p + len_t - inter
    iou = inter / union.clamp(min=eps)
    giou = iou - (enclose - union) / enclose.clamp(min=eps)
    return _reduce(1.0 - giou, reduction)


def masked_mil_bce(probs: torch.Tensor, labels: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Video-level binary cross-entropy between MIL-pooled probabilities ``(B, C)`` and multi-hot labels.

    Clamped so that a pooled probability of exactly 0 or 1 does not produce an infinite loss.
    """
    with torch.autocast(device_type=probs.device.type, enabled=False):  # BCE is not autocast-safe
        p = probs.float().clamp(eps, 1 - eps)
        return F.binary_cross_entropy(p, labels.float(), reduction="mean")


@dataclass
class DenseLossState:
    """EMA of the number of positives, ActionFormer's loss normaliser (stabilises small batches)."""

    normalizer: float = 100.0
    momentum: float = 0.9


def dense_loss(
    out: dict[str, Any], batch: dict[str, Any], num_classes: int, reg_ranges: tuple[tuple[float, float], ...],
    center_sample_radius: float | None, state: DenseLossState, reg_weight: float = 1.0,
    focal_alpha: float = 0.25, focal_gamma: float = 2.0, update_state: bool = True,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Eq. 9 of CCNet: focal loss over all valid points + GIoU loss over positive (point, class) pairs,
    each summed and divided by the (EMA) number of positives."""
    if "segments" not in batch or batch["segments"] is None:
        raise ValueError("full supervision needs batch['segments'] (feature-step units)")
    logits = torch.cat(out["cls_logits"], dim=1).float()  # (B, P, C); losses in float32 under AMP
    offsets = torch.cat(out["offsets"], dim=1).float()  # (B, P, C, 2)
    valid = torch.cat(out["level_masks"], dim=1)  # (B, P)
    points = torch.cat(make_points([m.shape[1] for m in out["level_masks"]], reg_ranges, logits.device), 0)
    cls_ts, reg_ts = [], []
    for seg in batch["segments"]:
        seg = torch.as_tensor(seg, dtype=torch.float32, device=logits.device).reshape(-1, 3)
        ct, rt = assign_targets(points, seg, num_classes, center_sample_radius)
        cls_ts.append(ct)
        reg_ts.append(rt)
    cls_t = torch.stack(cls_ts) * valid[..., None].to(logits.dtype)
    reg_t = torch.stack(reg_ts)
    pos = cls_t > 0  # (B, P, C)
    num_pos = int(pos.sum())
    if update_state and torch.is_grad_enabled():
        state.normalizer = state.momentum * state.normalizer + (1 - state.momentum) * max(num_pos, 1)
    norm = max(state.normalizer, 1.0)
    cls_loss = sigmoid_focal_loss(logits[valid], cls_t[valid], focal_alpha, focal_gamma, "sum") / norm
    if num_pos > 0:
        reg_loss = giou_loss_1d(offsets[pos], reg_t[pos], mode="offsets", reduction="sum") / norm
    else:
        reg_loss = offsets.sum() * 0.0
    total = cls_loss + reg_weight * reg_loss
    return total, {"cls": float(cls_loss.detach()), "reg": float(reg_loss.detach()), "num_pos": float(num_pos)}


def weak_loss(step_probs: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, mode: str = "mean",
              topk_ratio: int = 8) -> torch.Tensor:
    """MIL-pooled video-level BCE against the weak multi-hot label."""
    return masked_mil_bce(mil_pool(step_probs, mask, mode, topk_ratio), labels)


def pyramid_weak_loss(level_logits: list[torch.Tensor], level_masks: list[torch.Tensor], labels: torch.Tensor,
                      mode: str = "max", topk_ratio: int = 8) -> torch.Tensor:
    """Weak loss of a pyramid model: the MIL-pooled video-level BCE of every level's per-point
    sigmoid probabilities, averaged over levels (every level's class head learns from the label)."""
    losses = [weak_loss(torch.sigmoid(lg.float()), m, labels, mode, topk_ratio)
              for lg, m in zip(level_logits, level_masks, strict=True)]
    return torch.stack(losses).mean()
