"""Pyramid points and the class-aware ActionFormer/UnAV target assignment of the point-based localizers.

A pyramid level ``l`` (0-based) has stride ``2**l`` feature steps; its point ``i`` sits at feature step
``i * 2**l`` (no half-stride offset, as the UnAV-100 / ActionFormer point generator). Segments are
``[start_step, end_step, class]`` in continuous feature-step units; the regression targets are
``(t - start, end - t) / stride`` (distances normalised by the level stride).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ActionFormer / UnAV-100 default regression ranges (feature steps) for a 6-level, stride-2 pyramid.
DEFAULT_REG_RANGES: tuple[tuple[float, float], ...] = (
    (0.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, 10000.0),
)


def make_points(
    lengths: list[int], reg_ranges: tuple[tuple[float, float], ...] | None, device: torch.device | str = "cpu"
) -> list[torch.Tensor]:
    """Per level ``(T_l, 4)`` rows ``(t, range_lo, range_hi, stride)``; ``t = i * 2**l`` in feature steps.
    ``reg_ranges=None`` (decoding, where ranges play no role) fills the ranges with 0."""
    if reg_ranges is None:
        reg_ranges = ((0.0, 0.0),) * len(lengths)
    if len(reg_ranges) < len(lengths):
        raise ValueError(f"{len(lengths)} pyramid levels but only {len(reg_ranges)} regression ranges")
    pts = []
    for lvl, n in enumerate(lengths):
        stride = float(2**lvl)
        t = torch.arange(n, dtype=torch.float32, device=device) * stride
        lo, hi = reg_ranges[lvl]
        pts.append(torch.stack([t, torch.full_like(t, lo), torch.full_like(t, hi), torch.full_like(t, stride)], 1))
    return pts


def assign_targets(
    points: torch.Tensor, segments: torch.Tensor, num_classes: int, center_sample_radius: float | None = 1.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class-aware ActionFormer/UnAV target assignment for one video.

    ``points``: ``(P, 4)`` from :func:`make_points` (all levels concatenated); ``segments``: ``(N, 3)``
    ``[start, end, class]`` in feature steps.  A point is a positive of a ground truth when it lies
    inside it (or, with ``center_sample_radius=r``, within ``r * stride`` of its centre and inside it)
    and the larger of its two distances falls in the level's regression range.  Class-aware: a point
    may be positive for several classes; per class the shortest matching segment is its target.

    Returns ``cls_targets (P, C)`` in {0, 1} and ``reg_targets (P, C, 2)`` = ``(t - s, e - t) / stride``
    (zeros where not positive).
    """
    P = points.shape[0]
    cls_t = points.new_zeros(P, num_classes)
    reg_t = points.new_zeros(P, num_classes, 2)
    if segments.numel() == 0:
        return cls_t, reg_t
    labels = segments[:, 2].long()
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"segment class out of range [0, {num_classes}): {labels.tolist()}")
    t, lo, hi, stride = points[:, 0:1], points[:, 1:2], points[:, 2:3], points[:, 3:4]
    s, e = segments[None, :, 0], segments[None, :, 1]
    left, right = t - s, e - t  # (P, N)
    if center_sample_radius is None:
        inside = torch.minimum(left, right) > 0
    else:
        c = 0.5 * (s + e)
        cb_s = torch.maximum(c - center_sample_radius * stride, s)
        cb_e = torch.minimum(c + center_sample_radius * stride, e)
        inside = torch.minimum(t - cb_s, cb_e - t) > 0
    far = torch.maximum(left, right)
    ok = inside & (far >= lo) & (far <= hi)
    lens = (e - s).expand(P, -1).masked_fill(~ok, float("inf"))  # (P, N)
    onehot = F.one_hot(labels, num_classes).bool()  # (N, C)
    lens_pc = lens[:, :, None].masked_fill(~onehot[None], float("inf"))  # (P, N, C)
    best_len, best = lens_pc.min(dim=1)  # (P, C)
    pos = torch.isfinite(best_len)
    cls_t[pos] = 1.0
    lr = torch.stack([left, right], -1)  # (P, N, 2)
    gathered = torch.gather(lr, 1, best[..., None].expand(-1, -1, 2))  # (P, C, 2)
    reg_t = torch.where(pos[..., None], gathered / stride[..., None], reg_t)
    return cls_t, reg_t
