"""Building blocks shared by the pyramid localizers (CCNet and DAVE): masked layers, transformer
blocks, the temporal dependency module, ActionFormer-style point heads, target assignment, the dense
loss, decoding with per-class Soft-NMS, and the weak (MIL) losses built on :mod:`models.localizers.pooling`.

One implementation serves both models so that their comparison measures the backbones, not
differences in target assignment or decoding.

Conventions (shared with ``models.localizers.base``):

- Features inside the networks are ``(B, T, D)``; convolutions transpose internally.
- A pyramid level ``l`` (0-based here) has stride ``2**l`` feature steps; its point ``i`` sits at
  feature step ``i * 2**l`` (no half-stride offset, as the UnAV-100 / ActionFormer point generator).
- Segments are ``[start_step, end_step, class]`` in continuous feature-step units; the regression
  targets are ``(t - start, end - t) / stride`` (distances normalised by the level stride).
- Every layer zeroes padded steps of its output, so padded input values never reach valid outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.localizers.base import ModelConfig
from models.localizers.losses import giou_loss_1d, masked_mil_bce, sigmoid_focal_loss
from models.localizers.pooling import class_gate, detect_from_probs, mil_pool

# ActionFormer / UnAV-100 default regression ranges (feature steps) for a 6-level, stride-2 pyramid.
DEFAULT_REG_RANGES: tuple[tuple[float, float], ...] = (
    (0.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0), (32.0, 64.0), (64.0, 10000.0),
)


# ----------------------------------------------------------------------------------------- layers
def sinusoid_encoding(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position table ``(length, dim)`` (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    i = torch.arange(dim, dtype=torch.float32)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(i, 2, rounding_mode="floor") / dim)
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(angle[:, 0::2])
    pe[:, 1::2] = torch.cos(angle[:, 1::2])
    return pe


def add_position(x: torch.Tensor, mask: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """Add a position table ``(L, D)`` to ``x (B, T, D)``, linearly re-sampled when ``T > L`` (as the
    UnAV reference does for over-length test videos); padded steps stay zero."""
    T = x.shape[1]
    if T > pe.shape[0]:
        pe = F.interpolate(pe.t()[None], size=T, mode="linear", align_corners=False)[0].t()
    return (x + pe[:T][None].to(x.dtype)) * mask[..., None].to(x.dtype)


class MaskedConv1d(nn.Module):
    """Conv1d over ``(B, T, D)`` whose padded outputs are zeroed (inputs must be zero there too)."""

    def __init__(self, d_in: int, d_out: int, kernel: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_in, d_out, kernel, padding=kernel // 2, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return y * mask[..., None].to(y.dtype)


class ConvEmbedding(nn.Module):
    """``n`` masked conv (+ LayerNorm) + ReLU layers projecting one modality to ``d`` (UnAV/CCNet 'two
    conv layers'). ``with_ln``: a LayerNorm after each conv, as UnAV's ``embd_with_ln: True`` default
    (ttgeng233/UnAV ``libs/core/config.py``, ``libs/modeling/multimodal_backbones.py``)."""

    def __init__(self, d_in: int, d: int, n: int = 2, kernel: int = 3, with_ln: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MaskedConv1d(d_in if i == 0 else d, d, kernel, bias=not with_ln)
                                     for i in range(n)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) if with_ln else nn.Identity() for _ in range(n)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mf = mask[..., None].to(x.dtype)
        x = x * mf
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = F.relu(norm(layer(x, mask))) * mf
        return x


class MaskedMHA(nn.Module):
    """Multi-head attention ``MHA(Q, K, V)`` ignoring padded keys; padded queries give zeros."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0, kdim: int | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True, kdim=kdim, vdim=kdim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, q_mask: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(q, kv, kv, key_padding_mask=~kv_mask, need_weights=False)
        return out * q_mask[..., None].to(out.dtype)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * d, d),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x + self.net(x)) * mask[..., None].to(x.dtype)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block: ``x + MHA(LN x, LN ctx)`` then ``+ FFN``.  ``ctx`` defaults to ``x``
    (self-attention); with another modality as ``ctx`` it is the cross-attention block of UnAV's CMPT."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0, ffn_mult: int = 4) -> None:
        super().__init__()
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(d)
        self.mha = MaskedMHA(d, heads, dropout)
        self.ffn = FeedForward(d, ffn_mult, dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, ctx: torch.Tensor | None = None,
        ctx_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        ctx_mask = mask if ctx_mask is None else ctx_mask
        x = x + self.mha(self.ln_q(x), self.ln_kv(ctx), mask, ctx_mask)
        return self.ffn(x, mask)


def downsample_mask(mask: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """Mask of a stride-``stride`` level: point ``i`` is valid when step ``i * stride`` is."""
    return mask[:, ::stride]


def maxpool_downsample(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal max-pool (kernel 3, stride 2, padding 1) of masked features; returns the new mask."""
    x = x * mask[..., None].to(x.dtype)
    y = F.max_pool1d(x.transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)
    m = downsample_mask(mask)
    return y * m[..., None].to(y.dtype), m


class StridedConvDownsample(nn.Module):
    """Learned stride-2 downsampling (depthwise conv + LayerNorm), the query/key projection that
    ActionFormer/UnAV use inside their strided transformer blocks."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, 3, stride=2, padding=1, groups=d, bias=False)
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * mask[..., None].to(x.dtype)
        y = self.ln(self.conv(x.transpose(1, 2)).transpose(1, 2))
        m = downsample_mask(mask)
        return y * m[..., None].to(y.dtype), m


class TemporalDependency(nn.Module):
    """Temporal Dependency Modelling (TDM) of UnAV-100 (Geng et al. 2023), applied to one level.

    The fused feature is expanded into one ``h``-dim feature per class ``(B, C, T, h)``; a temporal
    transformer relates the steps of each class (consecutive-segment dependency) and a co-occurrence
    transformer relates the classes at each step (concurrent events); their sum is squeezed back to
    ``d`` channels.  As in the reference, the output replaces the input (no outer residual).
    """

    def __init__(self, d: int, h: int, num_classes: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.c, self.h = num_classes, h
        self.expand = MaskedConv1d(d, num_classes * h, 3, bias=False)
        self.temporal = TransformerBlock(h, heads, dropout, ffn_mult=1)
        self.cooccur = TransformerBlock(h, heads, dropout, ffn_mult=1)
        self.squeeze = MaskedConv1d(num_classes * h, d, 3, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # The expanded tensor is (B, T, C, h): at 100 classes and h = 128, 12.5x the level's channels at UnAV's
        # width 512, 200x at width 32; it and the padded steps of a batch padded to t_max (~40 % of it) were most of a
        # pyramid epoch (issue #27). So the convolutions stop one step after the longest video (that step
        # keeps the kernel's right neighbour of the last valid step) and both transformers run per video
        # on its valid steps only. Padded keys are masked and padded outputs zeroed in the padded form
        # too, so the values are the same (tests/test_dave_avel.py checks outputs and gradients).
        B, T_in, _ = x.shape
        last = int((mask * torch.arange(1, T_in + 1, device=mask.device)).amax()) if mask.numel() else 0
        T = min(T_in, last + 1)  # one step past the last valid one
        x, mask = x[:, :T], mask[:, :T]
        e = F.relu(self.expand(x, mask)).view(B, T, self.c, self.h)
        outs = []
        for e_b, m_b in zip(e.unbind(0), mask, strict=True):  # unbind: one gradient buffer, not one per video
            idx = m_b.nonzero().squeeze(1)
            n = int(idx.numel())
            if n == 0:
                outs.append(e.new_zeros(T, self.c, self.h))
                continue
            eb = e_b.index_select(0, idx)  # (n, C, h)
            # temporal branch: one sequence over the valid steps per class
            t_out = self.temporal(eb.transpose(0, 1), mask.new_ones(self.c, n)).transpose(0, 1)
            # co-occurrence branch: one sequence over the classes per valid step
            c_out = self.cooccur(eb, mask.new_ones(n, self.c))
            outs.append(e.new_zeros(T, self.c, self.h).index_copy(0, idx, t_out + c_out))
        out = torch.stack(outs) if outs else e
        return F.pad(self.squeeze(out.reshape(B, T, self.c * self.h), mask), (0, 0, 0, T_in - T))


# ------------------------------------------------------------------------------------------ heads
class Scale(nn.Module):
    """A learnable scalar per pyramid level (ActionFormer) so one shared head can regress distances of
    different magnitude on every level."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PointHeads(nn.Module):
    """Classification and (class-aware) regression heads shared over pyramid levels.

    Each is ``num_layers`` masked 1-D convolutions (ReLU between, CCNet: three each).  The class head
    ends in logits (sigmoid at use) with the RetinaNet prior-probability bias; the regression head ends
    in ``2*C`` channels (start/end distance per class, class-aware as UnAV/CCNet), a per-level
    :class:`Scale` and a ReLU.  ``with_reg=False`` builds the class head only (weak supervision).
    The two output convolutions run in float32 even under AMP, so scores are not bf16-quantised.
    """

    def __init__(
        self, d_in: int, d_head: int, num_classes: int, num_levels: int, num_layers: int = 3,
        kernel: int = 3, prior_prob: float = 0.01, with_reg: bool = True, with_ln: bool = False,
    ) -> None:
        super().__init__()
        self.c = num_classes
        n_hidden = num_layers - 1
        self.cls_convs = nn.ModuleList(
            [MaskedConv1d(d_in if i == 0 else d_head, d_head, kernel, bias=not with_ln) for i in range(n_hidden)]
        )
        # UnAV/ActionFormer ``head_with_ln: True``: a LayerNorm after each hidden head conv
        self.cls_norms = nn.ModuleList([nn.LayerNorm(d_head) if with_ln else nn.Identity() for _ in range(n_hidden)])
        self.cls_out = MaskedConv1d(d_head if num_layers > 1 else d_in, num_classes, kernel)
        nn.init.constant_(self.cls_out.conv.bias, -math.log((1 - prior_prob) / prior_prob))
        self.with_reg = with_reg
        if with_reg:
            self.reg_convs = nn.ModuleList(
                [MaskedConv1d(d_in if i == 0 else d_head, d_head, kernel, bias=not with_ln) for i in range(n_hidden)]
            )
            self.reg_norms = nn.ModuleList(
                [nn.LayerNorm(d_head) if with_ln else nn.Identity() for _ in range(n_hidden)])
            self.reg_out = MaskedConv1d(d_head if num_layers > 1 else d_in, 2 * num_classes, kernel)
            self.scales = nn.ModuleList([Scale() for _ in range(num_levels)])

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        cls_logits, offsets = [], []
        for lvl, (x, m) in enumerate(zip(feats, masks, strict=True)):
            mf = m[..., None].to(x.dtype)
            h = x
            for conv, norm in zip(self.cls_convs, self.cls_norms, strict=True):
                h = F.relu(norm(conv(h, m))) * mf
            with torch.autocast(device_type=h.device.type, enabled=False):  # output layers in fp32 under AMP
                cls_logits.append(self.cls_out(h.float(), m))
            if self.with_reg:
                h = x
                for conv, norm in zip(self.reg_convs, self.reg_norms, strict=True):
                    h = F.relu(norm(conv(h, m))) * mf
                with torch.autocast(device_type=h.device.type, enabled=False):
                    o = F.relu(self.scales[lvl](self.reg_out(h.float(), m)))
                offsets.append(o.view(o.shape[0], o.shape[1], self.c, 2))
        out: dict[str, list[torch.Tensor]] = {"cls_logits": cls_logits}
        if self.with_reg:
            out["offsets"] = offsets
        return out


# ---------------------------------------------------------------------------- points and targets
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


# ------------------------------------------------------------------------------------ dense loss
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


# -------------------------------------------------------------------------------------- decoding
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
    import dataclasses

    return DecodeConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(DecodeConfig)})


def decode_dense(out: dict[str, Any], cfg: DecodeConfig) -> list[list[tuple[float, float, int, float]]]:
    """Turn per-point class probabilities and class-aware offsets into detections per video:
    ``t - left * stride``, ``t + right * stride`` (Eq. 1), top-k pre-filter per level, then per-class
    Soft-NMS (``models.localizers.postprocess.soft_nms``).  Units: feature steps."""
    from models.localizers.postprocess import soft_nms

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
        results.append(_soft_nms_to_list(soft_nms, segs, scores, labels, cfg))
    return results


def _soft_nms_to_list(soft_nms: Any, segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      cfg: DecodeConfig) -> list[tuple[float, float, int, float]]:
    if segs.shape[0] == 0:
        return []
    s, sc, lb, _ = soft_nms(
        segs.numpy(), scores.numpy(), labels.numpy(), sigma=cfg.nms_sigma, iou_threshold=cfg.iou_threshold,
        min_score=cfg.min_score, method="gaussian", max_seg_num=cfg.max_seg_num,
    )
    return [(float(a), float(e), int(c), float(p)) for (a, e), c, p in zip(s, lb, sc, strict=True)]


# ------------------------------------------------------------------------------- weak supervision
def fuse_level_probs(level_probs: list[torch.Tensor], length: int) -> torch.Tensor:
    """Per-step probabilities ``(B, T, C)`` = mean over pyramid levels of each level's probabilities
    repeated back to stride 1 (point ``i`` of level ``l`` covers steps ``[i 2^l, (i+1) 2^l)``)."""
    ups = [p.repeat_interleave(2**lvl, dim=1)[:, :length] for lvl, p in enumerate(level_probs)]
    return torch.stack(ups, 0).mean(0)


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


# ----------------------------------------------------------------------------------- optimisation
def param_groups(model: nn.Module, weight_decay: float, decay_1d: bool = False) -> list[dict[str, Any]]:
    """Weight decay on weight matrices/kernels only; biases, norm weights and per-level scales (every
    parameter with ``ndim <= 1``) get none, as ActionFormer's ``make_optimizer``
    (happyharrycn/actionformer_release ``libs/utils/train_utils.py``, the code UnAV's
    ``libs/utils/train_utils.py`` reuses). ``decay_1d=True`` decays everything (one group)."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if decay_1d:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    decay = [p for _, p in params if p.ndim > 1]
    no_decay = [p for _, p in params if p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, kind: str, lr: float, weight_decay: float, warmup_epochs: int, epochs: int,
                   steps_per_epoch: int, decay_1d: bool = False) -> tuple[torch.optim.Optimizer, Any]:
    """Adam/AdamW over :func:`param_groups`; with ``warmup_epochs > 0`` a per-step linear warm-up then
    cosine decay to 0 over the remaining epochs (UnAV/ActionFormer ``LinearWarmupCosineAnnealingLR``,
    stepped every iteration), else a constant learning rate (scheduler ``None``)."""
    groups = param_groups(model, weight_decay, decay_1d)
    if kind == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups, lr=lr)
    elif kind == "adam":
        opt = torch.optim.Adam(groups, lr=lr)
    else:
        raise ValueError(f"unknown optimizer {kind!r}")
    if warmup_epochs <= 0:
        return opt, None
    warm = max(1, warmup_epochs * steps_per_epoch)
    total = max(warm + 1, epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm) / (total - warm))))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


@dataclass
class PyramidConfig(ModelConfig):
    """Fields shared by the point-based pyramid localizers (CCNet, DAVE): width, TDM, heads, target
    assignment, UnAV-100 decoding, weak-supervision MIL and optimisation."""

    supervision: str = "full"  # "full" | "weak"
    d_model: int = 512  # UnAV-100 ``embd_dim`` / ``head_dim`` 512 (ttgeng233/UnAV libs/core/config.py)
    n_heads: int = 4
    dropout: float = 0.1
    use_abs_pe: bool = True
    use_tdm: bool = True
    tdm_dim: int = 128
    head_dim: int = 512
    with_ln: bool = True  # LayerNorm after the embedding and hidden head convs (UnAV embd/head_with_ln)
    head_layers: int = 3
    cls_prior_prob: float | None = None  # None: class_head_prior's per-supervision default
    reg_ranges: tuple[tuple[float, float], ...] = DEFAULT_REG_RANGES
    center_sample_radius: float | None = None
    reg_weight: float = 1.0
    init_loss_norm: float = 100.0
    # inference (UnAV-100 test_cfg; see models.localizers.heads.DecodeConfig)
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    duration_thresh: float = 0.05
    nms_sigma: float = 0.4
    iou_threshold: float = 0.7
    min_score: float = 0.001
    max_seg_num: int = 100
    mil_pool: str = "topk"  # as this project's CLASP; Tian's weak AVEL code max-pools ("max")
    mil_topk_ratio: int = 8
    weak_threshold: float = 0.5
    gate_pool: str = "max"  # weak inference class gate, decoupled from mil_pool (models.localizers.pooling.class_gate)
    weak_inference: str = "finest"  # "finest" (stride-1 level) | "fuse" (mean of all levels, repeated)
    # training recipe, the same for CCNet and DAVE so their comparison is fair (models.run.train reads
    # these; sources: ttgeng233/UnAV configs/avel_unav100.yaml, libs/core/config.py, train.py,
    # libs/utils/train_utils.py; happyharrycn/actionformer_release libs/utils/train_utils.py)
    optimizer: str = "adamw"  # "adamw" | "adam"
    lr: float = 1e-4
    epochs: int = 40
    batch_size: int = 16
    weight_decay: float = 1e-4
    decay_1d: bool = False  # False: no decay on biases / norm weights / scales (ActionFormer make_optimizer)
    warmup_epochs: int = 5  # linear warm-up, then cosine to 0 (per iteration)
    grad_clip: float | None = 1.0  # clip_grad_l2norm
    ema_decay: float | None = 0.999  # evaluation / selection / best.pt on EMA weights (ModelEma); None: off
    crop_ratio: tuple[float, float] | None = (0.9, 1.0)  # random crop of training videos (UnAV/ActionFormer)
    trunc_thresh: float = 0.5  # a cropped segment survives if more than this fraction of it is kept


def class_head_prior(cfg: PyramidConfig) -> float:
    """Initial probability of the class head (its output bias is ``-log((1 - p) / p)``).

    Full supervision keeps RetinaNet's 0.01 (Lin et al. 2017 §4.1, ActionFormer/UnAV ``cls_prior_prob``):
    it exists for the dense focal loss, where background points outnumber positives a hundredfold.
    The weak MIL BCE has no such imbalance (one pooled score per class and video), and there the prior
    only starts every pooled positive at ``-log 0.01 = 4.6`` nats behind, so the head spends the
    short warm-up climbing out of it: weak DAVE's validation mAP stayed at 0 for half of the planted
    bench's 40 epochs (docs/recipes.md). Weak heads therefore start at 0.5 (zero bias), the default
    ``nn.Linear`` initialisation of the weak MIL heads of Tian et al.'s AVEL and of HAN. An explicit
    ``cls_prior_prob`` wins. Weak models then move this start to the training label prior
    (``class_prior: label``, :mod:`models.localizers.class_prior`); 0.5 is where ``class_prior: none`` leaves it."""
    if cfg.cls_prior_prob is not None:
        return float(cfg.cls_prior_prob)
    return 0.5 if cfg.supervision == "weak" else 0.01


class PyramidLocalizer(nn.Module):
    """``loss`` / ``detect`` / optimizer shared by the point-based pyramid localizers (CCNet, DAVE).

    Full supervision: focal + GIoU on the pyramid points (:func:`dense_loss`), Soft-NMS decoding.
    Weak supervision: MIL over each level's class probabilities to the video label
    (:func:`pyramid_weak_loss`), then thresholded per-step probabilities of the classes whose
    video-level score passes (:func:`detect_from_probs`). Subclasses have ``cfg`` (a
    :class:`PyramidConfig`, whose recipe fields choose the optimizer) and ``supervision``; ``forward`` must put ``step_probs`` in its output when weak.
    """

    def _weak_step_probs(self, out: dict[str, Any], length: int) -> torch.Tensor:
        probs = [torch.sigmoid(lg.float()) for lg in out["cls_logits"]]
        if self.cfg.weak_inference == "finest":
            return probs[0]
        return fuse_level_probs(probs, length)

    def class_prior_heads(self) -> list[tuple[torch.Tensor, float]]:
        """The point heads' class output bias, shared by every level (models.localizers.class_prior)."""
        return [(self.heads.cls_out.conv.bias, 1.0)]

    def configure_optimizers(self, lr: float, epochs: int, steps_per_epoch: int) -> tuple[Any, Any]:
        return make_optimizer(self, self.cfg.optimizer, lr, self.cfg.weight_decay, self.cfg.warmup_epochs, epochs,
                              steps_per_epoch, self.cfg.decay_1d)

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        if self.supervision == "weak":
            total = pyramid_weak_loss(out["cls_logits"], out["level_masks"], batch["labels"], self.cfg.mil_pool,
                                      self.cfg.mil_topk_ratio)
            out["loss_terms"] = {"mil_bce": float(total.detach())}
            return total
        total, terms = dense_loss(
            out, batch, self.cfg.num_classes, self.cfg.reg_ranges, self.cfg.center_sample_radius,
            self.loss_state, self.cfg.reg_weight, update_state=self.training,
        )
        out["loss_terms"] = terms
        return total

    @torch.no_grad()
    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[tuple[float, float, int, float]]]:
        if self.supervision == "weak":
            m = batch["mask"].bool()
            gate = class_gate(out["step_probs"], m, self.cfg.gate_pool, self.cfg.mil_pool, self.cfg.mil_topk_ratio)
            return detect_from_probs(out["step_probs"], m, self.cfg.weak_threshold, gate)
        return decode_dense(out, decode_config(self.cfg))
