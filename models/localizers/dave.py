"""DAVE, the UnAV-100 baseline (Geng et al., CVPR 2023, "Dense-localizing audio-visual events in
untrimmed videos"): cross-modal pyramid transformer (CMPT) + temporal dependency modelling (TDM) +
ActionFormer-style point heads.

Structure (read from ttgeng233/UnAV ``libs/modeling``; re-implemented, not copied):

- Embedding: two masked conv layers (k=3, ReLU) per modality to ``d``; sinusoidal position code.
- Stem: ``n_stem`` self-attention transformer blocks per modality (UnAV ``arch[1]-1`` = 1).
- Cross-modal pyramid: at stride 1, ``V1 = Block(V <- A)`` and ``A1 = Block(A <- V)`` (query one
  modality, key/value the other); then ``n_levels - 1`` strided cross-attention blocks, each halving
  time: ``V_{l+1} = Block_s2(V_l <- A_l)``, ``A_{l+1} = Block_s2(A_l <- V_l)`` (strided depthwise conv
  projections for queries/keys and a max-pool skip path, as ActionFormer's strided MHA).  Six levels
  (strides 1..32) by default, the UnAV ``arch = (2, 2, 5)``.
- ``[V_l ; A_l]`` per level -> TDM (shared across levels; per-class expansion with a temporal and a
  class co-occurrence transformer) -> class head + class-aware regression head (3 convs each).
- Loss: focal + 1-D GIoU (UnAV uses a centre-distance IoU; we use the GIoU of ``models.localizers.losses`` for
  both pyramid models so their comparison isolates the backbone — documented deviation).  Target
  assignment as UnAV's loader: class-aware, any point inside a segment (``center_sample_radius=None``)
  and within the level's regression range.  Inference: Eq. 1 decoding + per-class Soft-NMS (sigma 0.4).

Weak supervision (CLASP Table 1): identical to ``models.localizers.ccnet``'s weak mode — class head only, each
level's per-point probabilities MIL-pooled (top-k as this project's CLASP; ``max`` = Tian et al. 2018's code) into a video-level BCE averaged over
levels; inference thresholds the stride-1 level's probabilities at 0.5 and merges runs of positive steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.localizers.heads import (
    ConvEmbedding,
    DenseLossState,
    FeedForward,
    MaskedMHA,
    PointHeads,
    PyramidConfig,
    PyramidLocalizer,
    StridedConvDownsample,
    TemporalDependency,
    TransformerBlock,
    add_position,
    maxpool_downsample,
    sinusoid_encoding,
)


@dataclass
class DAVEConfig(PyramidConfig):
    n_stem: int = 1
    n_levels: int = 6
    warmup_epochs: int = 5

class StridedCrossBlock(nn.Module):
    """Cross-attention transformer block that halves time (query: one modality, key/value: the other)."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.q_down = StridedConvDownsample(d)
        self.kv_down = StridedConvDownsample(d)
        self.ln_q, self.ln_kv = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mha = MaskedMHA(d, heads, dropout)
        self.ffn = FeedForward(d, 4, dropout)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip, m2 = maxpool_downsample(x, mask)
        q, _ = self.q_down(x, mask)
        kv, _ = self.kv_down(ctx, mask)
        y = skip + self.mha(self.ln_q(q), self.ln_kv(kv), m2, m2)
        return self.ffn(y, m2), m2


class DAVE(PyramidLocalizer):
    """DAVE localizer following the ``models.localizers.base`` contract (see module docstring)."""

    optimizer_kind = "adamw"  # UnAV-100 config: AdamW, weight decay 1e-4, 5 linear warm-up epochs then cosine decay (ActionFormer).

    def __init__(self, cfg: DAVEConfig) -> None:
        super().__init__()
        if cfg.supervision not in ("full", "weak"):
            raise ValueError(f"supervision must be 'full' or 'weak', got {cfg.supervision!r}")
        cfg.reg_ranges = tuple((float(lo), float(hi)) for lo, hi in cfg.reg_ranges)  # lists after JSON
        self.cfg = cfg
        self.supervision = cfg.supervision
        d, L = cfg.d_model, cfg.n_levels
        self.max_stride = 2 ** (L - 1)
        self.t_pad = -(-cfg.t_max // self.max_stride) * self.max_stride
        self.embed_a = ConvEmbedding(cfg.audio_dim, d)
        self.embed_v = ConvEmbedding(cfg.visual_dim, d)
        self.register_buffer("pe", sinusoid_encoding(self.t_pad, d) / d**0.5, persistent=False)
        self.stem_a = nn.ModuleList([TransformerBlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_stem)])
        self.stem_v = nn.ModuleList([TransformerBlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_stem)])
        self.cross0_v = TransformerBlock(d, cfg.n_heads, cfg.dropout)
        self.cross0_a = TransformerBlock(d, cfg.n_heads, cfg.dropout)
        self.cross_v = nn.ModuleList([StridedCrossBlock(d, cfg.n_heads, cfg.dropout) for _ in range(L - 1)])
        self.cross_a = nn.ModuleList([StridedCrossBlock(d, cfg.n_heads, cfg.dropout) for _ in range(L - 1)])
        self.tdm = TemporalDependency(2 * d, cfg.tdm_dim, cfg.num_classes) if cfg.use_tdm else None
        self.heads = PointHeads(
            2 * d, cfg.head_dim, cfg.num_classes, L, cfg.head_layers, prior_prob=cfg.cls_prior_prob,
            with_reg=cfg.supervision == "full",
        )
        self.loss_state = DenseLossState(normalizer=cfg.init_loss_norm)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        a, v, m = batch["audio"].float(), batch["visual"].float(), batch["mask"].bool()
        T = a.shape[1]
        target = max(self.t_pad, -(-T // self.max_stride) * self.max_stride)
        if target > T:  # inputs are padded to a multiple of the largest stride (UnAV preprocessing)
            a, v = F.pad(a, (0, 0, 0, target - T)), F.pad(v, (0, 0, 0, target - T))
            m = F.pad(m, (0, target - T), value=False)
        xa, xv = self.embed_a(a, m), self.embed_v(v, m)
        if self.cfg.use_abs_pe:
            xa, xv = add_position(xa, m, self.pe), add_position(xv, m, self.pe)
        for blk_a, blk_v in zip(self.stem_a, self.stem_v, strict=True):
            xa, xv = blk_a(xa, m), blk_v(xv, m)
        va = self.cross0_v(xv, m, xa, m)
        av = self.cross0_a(xa, m, xv, m)
        feats_v, feats_a, masks = [va], [av], [m]
        for blk_v, blk_a in zip(self.cross_v, self.cross_a, strict=True):
            nv, m2 = blk_v(feats_v[-1], feats_a[-1], masks[-1])
            na, _ = blk_a(feats_a[-1], feats_v[-1], masks[-1])
            feats_v.append(nv)
            feats_a.append(na)
            masks.append(m2)
        feats = [torch.cat([fv, fa], dim=-1) for fv, fa in zip(feats_v, feats_a, strict=True)]
        if self.tdm is not None:
            feats = [self.tdm(f, mk) for f, mk in zip(feats, masks, strict=True)]
        out: dict[str, Any] = self.heads(feats, masks)
        out["level_masks"] = masks
        out["input_len"] = T
        if self.supervision == "weak":
            out["step_probs"] = self._weak_step_probs(out, m.shape[1])[:, :T]
        return out

