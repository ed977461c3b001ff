"""DAVE, the UnAV-100 baseline (Geng et al., CVPR 2023, "Dense-localizing audio-visual events in
untrimmed videos"): cross-modal pyramid transformer (CMPT) + temporal dependency modelling (TDM) +
ActionFormer-style point heads.

Structure (read from ttgeng233/UnAV ``libs/modeling``; re-implemented, not copied):

- Embedding: two masked conv layers (k=3, ReLU) per modality to ``d``; sinusoidal position code.
- Stem: ``n_stem`` self-attention blocks per modality (UnAV ``backbone_arch = (2, 3, 5)``, its
  ``libs/core/config.py`` default, builds ``arch[1] - 1 = 2``).
- Attention blocks follow UnAV's ``TransformerBlock(x1, x2)`` / ``MaskedMHCA`` (``libs/modeling/blocks.py``):
  keys and values come from the block's *own* stream ``x1`` (which also carries the residual), queries
  from ``x2`` -- the other modality in the cross-modal blocks, ``x1`` itself in the stem; queries, keys
  and values each get their own depthwise conv (stride 1 or 2) + LayerNorm before the attention's linear
  projections, and a strided block max-pools the residual path (:class:`MHCABlock`).
- Cross-modal pyramid: at stride 1 ``V1 = Block(V, A)`` (visual attends with audio queries) and
  ``A1 = Block(A, V)``; then ``n_levels - 1`` stride-2 blocks ``V_{l+1} = Block_s2(V_l, A_l)``,
  ``A_{l+1} = Block_s2(A_l, V_l)``.  Six levels (strides 1..32), UnAV ``arch[2] = 5``.
- ``[V_l ; A_l]`` per level -> TDM (shared across levels; per-class expansion with a temporal and a
  class co-occurrence transformer) -> class head + class-aware regression head (3 convs each).
- Loss: focal + 1-D GIoU (UnAV uses a centre-distance IoU; we use the GIoU of ``models.localizers.losses`` for
  both pyramid models so their comparison isolates the backbone — documented deviation).  Target
  assignment as UnAV's loader: class-aware, any point inside a segment (``center_sample_radius=None``)
  and within the level's regression range.  Inference: Eq. 1 decoding + per-class Soft-NMS (sigma 0.4).

Weak supervision (CLASP Table 1): identical to ``models.localizers.ccnet``'s weak mode — class head only, each
level's per-point probabilities MIL-pooled (top-k as this project's CLASP; ``max`` = Tian et al. 2018's code) into a video-level BCE averaged over
levels, from a zero-bias class head (``class_head_prior``); inference decodes the stride-1 level's
probabilities with the weak ``decoder`` (``models.localizers.decoding.decode_weak``: the paper's gate and 0.5
runs, or the standard weak decoder, chosen on validation).

Training recipe: :class:`models.localizers.pyramid.PyramidConfig`'s fields, the same as CCNet's (see
``models.localizers.ccnet``; UnAV ``configs/avel_unav100.yaml``: AdamW, lr 1e-4, weight decay 1e-4, 40
epochs, 5 warm-up epochs, batch 16; ``libs/core/config.py``: crop ratio (0.9, 1.0), clipping 1.0, width
512, LayerNorm in embedding and heads; ``train.py``: EMA 0.999 weights evaluated).  Not reproduced:
drop-path 0.1 (UnAV's ``AffineDropPath``); dropout 0.1 is used instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.localizers.heads import PointHeads
from models.localizers.layers import (
    ConvEmbedding,
    FeedForward,
    add_position,
    maxpool_downsample,
    sinusoid_encoding,
)
from models.localizers.losses import DenseLossState
from models.localizers.pyramid import PYRAMID_MODULES, PyramidConfig, PyramidLocalizer, class_head_prior
from models.localizers.registry import register_localizer
from models.localizers.tdm import TemporalDependency


@dataclass
class DAVEConfig(PyramidConfig):
    n_stem: int = 2
    n_levels: int = 6


class DepthwiseProj(nn.Module):
    """Depthwise conv (kernel 3, stride 1 or 2, no bias) + LayerNorm: MaskedMHCA's per-input projection."""

    def __init__(self, d: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(d, d, 3, stride=stride, padding=1, groups=d, bias=False)
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * mask[..., None].to(x.dtype)
        y = self.ln(self.conv(x.transpose(1, 2)).transpose(1, 2))
        m = mask[:, :: self.stride]
        return y * m[..., None].to(y.dtype), m


class MHCABlock(nn.Module):
    """UnAV's ``TransformerBlock(x1, x2)``: ``out = skip(x1) + MHA(q=P_q(LN x2), k=P_k(LN x1), v=P_v(LN x1))``
    then a pre-LN FFN; ``P_*`` separate :class:`DepthwiseProj` (stride ``stride``), ``skip`` identity or,
    at stride 2, a max-pool.  ``x1`` is the block's own stream, ``x2`` supplies the queries."""

    def __init__(self, d: int, heads: int, dropout: float, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.ln_own, self.ln_query = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q_proj, self.k_proj, self.v_proj = DepthwiseProj(d, stride), DepthwiseProj(d, stride), DepthwiseProj(d, stride)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = FeedForward(d, 4, dropout)

    def forward(self, own: torch.Tensor, query: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = self.ln_own(own), self.ln_query(query)
        q, m2 = self.q_proj(x2, mask)
        k, _ = self.k_proj(x1, mask)
        v, _ = self.v_proj(x1, mask)
        att = self.attn(q, k, v, key_padding_mask=~m2, need_weights=False)[0] * m2[..., None].to(q.dtype)
        skip = own * mask[..., None].to(own.dtype) if self.stride == 1 else maxpool_downsample(own, mask)[0]
        return self.ffn(skip + att, m2), m2


@register_localizer("dave", config=DAVEConfig, supervision=("weak", "full"), uses=PYRAMID_MODULES)
class DAVE(PyramidLocalizer):
    """DAVE localizer following the ``models.localizers.base`` contract (see module docstring)."""

    def __init__(self, cfg: DAVEConfig) -> None:
        super().__init__()
        d, L = cfg.d_model, cfg.n_levels
        self.init_pyramid(cfg, L)
        self.embed_a = ConvEmbedding(cfg.audio_dim, d, with_ln=cfg.with_ln)
        self.embed_v = ConvEmbedding(cfg.visual_dim, d, with_ln=cfg.with_ln)
        self.register_buffer("pe", sinusoid_encoding(self.t_pad, d) / d**0.5, persistent=False)
        self.stem_a = nn.ModuleList([MHCABlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_stem)])
        self.stem_v = nn.ModuleList([MHCABlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.n_stem)])
        self.cross0_v = MHCABlock(d, cfg.n_heads, cfg.dropout)
        self.cross0_a = MHCABlock(d, cfg.n_heads, cfg.dropout)
        self.cross_v = nn.ModuleList([MHCABlock(d, cfg.n_heads, cfg.dropout, stride=2) for _ in range(L - 1)])
        self.cross_a = nn.ModuleList([MHCABlock(d, cfg.n_heads, cfg.dropout, stride=2) for _ in range(L - 1)])
        self.tdm = TemporalDependency(2 * d, cfg.tdm_dim, cfg.num_classes) if cfg.use_tdm else None
        self.heads = PointHeads(
            2 * d, cfg.head_dim, cfg.num_classes, L, cfg.head_layers, prior_prob=class_head_prior(cfg),
            with_reg=cfg.supervision == "full", with_ln=cfg.with_ln,
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
            xa, xv = blk_a(xa, xa, m)[0], blk_v(xv, xv, m)[0]
        va, _ = self.cross0_v(xv, xa, m)  # own stream V (keys/values, residual), audio queries
        av, _ = self.cross0_a(xa, xv, m)
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

