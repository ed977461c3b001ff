"""CCNet (Zhou et al., AAAI 2025): dense audio-visual event localization with
Cross-Modal Consistency Collaboration (CMCC) and Multi-Temporal Granularity Collaboration (MTGC).

Pipeline (paper section in brackets):

1. Unimodal embedding: two masked conv layers (k=3, ReLU) per modality project to ``d``, a sinusoidal
   position code is added (as the UnAV reference it builds on), then ``L_s`` transformer blocks per
   modality give ``F_A, F_V`` ("Unimodal Feature Embedding").
2. ``L_c`` CMCC layers (Eq. 2-5).  Layer ``l`` (1-based) first max-pools its input by 2 when ``l > 1``,
   so level ``l`` has ``T / 2^(l-1)`` steps and the pyramid has ``L_c`` levels (6 by default, strides
   1..32, matching DAVE's six levels).  Inside a layer:
   - CMI, literally Eq. 2: ``F^_A = F_A + MHA(Q=F_V, K=F_A, V=F_A)`` and symmetrically for V;
   - TCG, Eq. 3: ``g_V = sigmoid(MHA(F_V, F_V, F_V) W_v)`` (``T x 1``), ``F^_A <- F^_A + g_V * F^_A``,
     and symmetrically ``g_A`` gates ``F^_V``;
   - the feed-forward layers the paper says it omits from the notation (pre-LN, residual).
   ``Z^l = [F^_A^l ; F^_V^l]`` (``2d`` channels).
3. MTGC: C2F (Eq. 6-7) ``U^k = ReLU(W_u Z^{k+1})`` with ``W_u`` a *temporal* linear map
   ``T_{k+1} -> T_k`` (so the model is built for ``t_max`` steps; longer inputs resample ``W_u``
   bilinearly, scaled to keep its row sums), ``G^k = MHA(Q=U^k, K=Z^k, V=Z^k)``, ``G^{L_c} = Z^{L_c}``;
   then TDM (UnAV's temporal dependency module, one per model shared across levels as in UnAV); then
   F2C (Eq. 8) ``O^m = G^m + MHA(G^m, maxpool(O^{m-1}), maxpool(O^{m-1}))``, ``O^1 = G^1``.
   Deviation (documented, ``c2f_residual``): Eq. 7 has no residual; by default we add ``Z^k`` to
   ``G^k`` (as Eq. 2 and Eq. 8 do) because without it the fine features reach the heads only through
   attention values; ``c2f_residual=False`` gives the literal form.
4. Decoder: class head and class-aware start/end regression head, three 1-D convs each
   (``models.localizers.heads.PointHeads``); focal + GIoU loss (Eq. 9, alpha = beta = 1 as the UnAV config's
   ``loss_weight: 1``); inference: Eq. 1 then per-class Soft-NMS (sigma 0.4, UnAV ``test_cfg``).

Supervision:

- ``full``: ``batch['segments']`` (feature steps) assigned to pyramid points ActionFormer-style:
  class-aware, regression ranges (0,4),(4,8),...,(64,inf) steps, centre sampling with radius 1.5
  strides (``center_sample_radius``; ``None`` = any point inside the segment, as UnAV's loader).
- ``weak`` (CLASP Table 1 setting: "all methods are trained and evaluated under weakly supervised
  settings"; CLASP formulates W-DAVEL as per-step classification, MIL-pools over time as Tian et al.
  2018 and thresholds at 0.5 — it does not say more about how it ran CCNet, so this is our reading):
  the same backbone and class head, **no regression head** (no boundary supervision exists).  Training:
  every pyramid level's per-point sigmoid class probabilities are MIL-pooled over its valid points
  (``mil_pool``, default ``topk``: the mean of the ``ceil(T/8)`` highest points, the pooling this
  project's CLASP uses, so the weak rows of the table differ only in architecture; Tian's weak AVEL
  code max-pools, ``max``) and trained with BCE against
  ``batch['labels']``; the loss is the mean over levels.  The class head starts at probability 0.5 (zero
  bias), not at the focal loss's 0.01 prior (``models.localizers.pyramid.class_head_prior``).  Inference
  goes through the weak ``decoder`` (``models.localizers.decoding.decode_weak``; ``decoder: auto`` picks the
  paper rule below or the standard weak decoder on validation). The paper rule
  (``weak_inference="finest"``): classes whose stride-1 gate score (``gate_pool``, default the highest step
  probability; ``models.localizers.pooling.class_gate``) is below 0.5 are dropped (as CLASP's inference); the stride-1
  level's probabilities (its features already carry coarse context through C2F) are
  thresholded at 0.5 and runs of positive steps merged into events scored by their mean probability
  (``models.localizers.postprocess.probs_to_step_events``; a run ``a..b`` -> ``[a - 0.5, b + 0.5]`` steps).
  ``weak_inference="fuse"`` averages all levels repeated to stride 1 instead; on the planted benchmark
  its maps were blocky (the coarse levels dominate the average), hence the default.

Training recipe (:class:`models.localizers.pyramid.PyramidConfig`, shared with DAVE so the two are trained
alike): the paper gives Adam, lr 1e-4, weight decay 1e-4, 40 epochs, batch 16, ``T = 224``, and is
silent on the rest; CCNet builds on UnAV's code, so the rest follows the baseline's official code
(ttgeng233/UnAV ``configs/avel_unav100.yaml``, ``libs/core/config.py``, ``train.py``,
``libs/utils/train_utils.py``, itself ActionFormer's happyharrycn/actionformer_release
``libs/utils/train_utils.py``): AdamW with no decay on biases/norm weights/scales, 5 linear warm-up
epochs then per-iteration cosine decay, gradient clipping at L2 norm 1.0, evaluation and checkpoint
selection on EMA(0.999) weights (``ModelEma``), a random crop of each training video (90-100 % of its
length, or a random ``t_max`` window of a longer one; segments kept when more than half of them
survives), width 512 and LayerNorm after the embedding and head convs (``embd_with_ln``,
``head_with_ln``). AdamW rather than the paper's Adam: with no decay on the 1-D parameters the two
differ only in how the decay is applied, and one optimizer for both pyramid models keeps the
comparison about the backbones. Not reproduced: UnAV's drop-path (0.1).
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
    MaskedMHA,
    TransformerBlock,
    add_position,
    downsample_mask,
    maxpool_downsample,
    sinusoid_encoding,
)
from models.localizers.losses import DenseLossState
from models.localizers.pyramid import PYRAMID_MODULES, PyramidConfig, PyramidLocalizer, class_head_prior
from models.localizers.registry import register_localizer
from models.localizers.tdm import TemporalDependency


@dataclass
class CCNetConfig(PyramidConfig):
    l_s: int = 2  # unimodal transformer layers
    l_c: int = 6  # CMCC layers = pyramid levels
    c2f_residual: bool = True
    center_sample_radius: float | None = 1.5

class CMCCLayer(nn.Module):
    """One Cross-Modal Consistency Collaboration layer: CMI (Eq. 2) + TCG (Eq. 3) + FFN per modality."""

    def __init__(self, d: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_a, self.ln_v = nn.LayerNorm(d), nn.LayerNorm(d)
        self.cmi_a = MaskedMHA(d, heads, dropout)  # MHA(F_V, F_A, F_A) -> updates audio
        self.cmi_v = MaskedMHA(d, heads, dropout)  # MHA(F_A, F_V, F_V) -> updates visual
        self.sa_a = MaskedMHA(d, heads, dropout)  # intra-modal attention for g_A
        self.sa_v = MaskedMHA(d, heads, dropout)
        self.w_a = nn.Linear(d, 1)
        self.w_v = nn.Linear(d, 1)
        self.ffn_a = FeedForward(d, 4, dropout)
        self.ffn_v = FeedForward(d, 4, dropout)

    def forward(self, fa: torch.Tensor, fv: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mf = m[..., None].to(fa.dtype)
        a, v = self.ln_a(fa), self.ln_v(fv)
        ha = fa + self.cmi_a(v, a, m, m)
        hv = fv + self.cmi_v(a, v, m, m)
        g_v = torch.sigmoid(self.w_v(self.sa_v(v, v, m, m))) * mf  # (B, T, 1)
        g_a = torch.sigmoid(self.w_a(self.sa_a(a, a, m, m))) * mf
        ha = ha + g_v * ha
        hv = hv + g_a * hv
        return self.ffn_a(ha, m), self.ffn_v(hv, m), g_a, g_v


class C2FBlock(nn.Module):
    """Coarse-to-fine collaboration for one level pair (Eq. 6-7)."""

    def __init__(self, d2: int, heads: int, t_fine: int, t_coarse: int, dropout: float, residual: bool) -> None:
        super().__init__()
        self.t_fine, self.t_coarse = t_fine, t_coarse
        self.w_u = nn.Linear(t_coarse, t_fine)  # W_u in R^{T_k x T_{k+1}}, acting on time
        self.ln_q, self.ln_kv = nn.LayerNorm(d2), nn.LayerNorm(d2)
        self.mha = MaskedMHA(d2, heads, dropout)
        self.residual = residual

    def _temporal_linear(self, zc: torch.Tensor, t_fine: int) -> torch.Tensor:
        w, b = self.w_u.weight, self.w_u.bias
        if zc.shape[1] != self.t_coarse or t_fine != self.t_fine:
            # longer (inference) inputs: resample W_u, keeping the mass each output row draws
            w = F.interpolate(w[None, None], size=(t_fine, zc.shape[1]), mode="bilinear", align_corners=False)[0, 0]
            w = w * (self.t_coarse / zc.shape[1])
            b = F.interpolate(b[None, None], size=t_fine, mode="linear", align_corners=False)[0, 0]
        return torch.einsum("ft,btd->bfd", w, zc) + b[None, :, None]

    def forward(self, zf: torch.Tensor, mf: torch.Tensor, zc: torch.Tensor) -> torch.Tensor:
        u = F.relu(self._temporal_linear(zc, zf.shape[1])) * mf[..., None].to(zf.dtype)
        g = self.mha(self.ln_q(u), self.ln_kv(zf), mf, mf)
        return (zf + g) if self.residual else g


class F2CBlock(nn.Module):
    """Fine-to-coarse collaboration (Eq. 8): ``O^m = G^m + MHA(G^m, maxpool(O^{m-1}), ...)``."""

    def __init__(self, d2: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln_q, self.ln_kv = nn.LayerNorm(d2), nn.LayerNorm(d2)
        self.mha = MaskedMHA(d2, heads, dropout)

    def forward(self, g: torch.Tensor, m: torch.Tensor, o_prev: torch.Tensor, m_prev: torch.Tensor) -> torch.Tensor:
        pooled, pm = maxpool_downsample(o_prev, m_prev)
        pooled = pooled[:, : g.shape[1]]
        return g + self.mha(self.ln_q(g), self.ln_kv(pooled), m, pm[:, : g.shape[1]])


@register_localizer("ccnet", config=CCNetConfig, supervision=("weak", "full"), uses=PYRAMID_MODULES)
class CCNet(PyramidLocalizer):
    """CCNet localizer following the ``models.localizers.base`` contract (see module docstring)."""

    def __init__(self, cfg: CCNetConfig) -> None:
        super().__init__()
        d, d2, L = cfg.d_model, 2 * cfg.d_model, cfg.l_c
        self.init_pyramid(cfg, L)
        self.embed_a = ConvEmbedding(cfg.audio_dim, d, with_ln=cfg.with_ln)
        self.embed_v = ConvEmbedding(cfg.visual_dim, d, with_ln=cfg.with_ln)
        self.register_buffer("pe", sinusoid_encoding(self.t_pad, d) / d**0.5, persistent=False)
        self.uni_a = nn.ModuleList([TransformerBlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.l_s)])
        self.uni_v = nn.ModuleList([TransformerBlock(d, cfg.n_heads, cfg.dropout) for _ in range(cfg.l_s)])
        self.cmcc = nn.ModuleList([CMCCLayer(d, cfg.n_heads, cfg.dropout) for _ in range(L)])
        lens = [self.t_pad // 2**i for i in range(L)]
        self.c2f = nn.ModuleList(
            [C2FBlock(d2, cfg.n_heads, lens[k], lens[k + 1], cfg.dropout, cfg.c2f_residual) for k in range(L - 1)]
        )
        self.tdm = TemporalDependency(d2, cfg.tdm_dim, cfg.num_classes) if cfg.use_tdm else None
        self.f2c = nn.ModuleList([F2CBlock(d2, cfg.n_heads, cfg.dropout) for _ in range(L - 1)])
        self.heads = PointHeads(
            d2, cfg.head_dim, cfg.num_classes, L, cfg.head_layers, prior_prob=class_head_prior(cfg),
            with_reg=cfg.supervision == "full", with_ln=cfg.with_ln,
        )
        self.loss_state = DenseLossState(normalizer=cfg.init_loss_norm)

    def _pad(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        a, v, m = batch["audio"], batch["visual"], batch["mask"].bool()
        T = a.shape[1]
        target = max(self.t_pad, -(-T // self.max_stride) * self.max_stride)
        if target > T:
            a = F.pad(a, (0, 0, 0, target - T))
            v = F.pad(v, (0, 0, 0, target - T))
            m = F.pad(m, (0, target - T), value=False)
        return a.float(), v.float(), m, T

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        a, v, m, T = self._pad(batch)
        fa, fv = self.embed_a(a, m), self.embed_v(v, m)
        if self.cfg.use_abs_pe:
            fa, fv = add_position(fa, m, self.pe), add_position(fv, m, self.pe)
        for blk_a, blk_v in zip(self.uni_a, self.uni_v, strict=True):
            fa, fv = blk_a(fa, m), blk_v(fv, m)
        zs, masks, gates = [], [], []
        cm = m
        for lvl, layer in enumerate(self.cmcc):
            if lvl > 0:
                fa, _ = maxpool_downsample(fa, cm)
                fv, cm = maxpool_downsample(fv, cm)
            fa, fv, g_a, g_v = layer(fa, fv, cm)
            zs.append(torch.cat([fa, fv], dim=-1))
            masks.append(cm)
            gates.append((g_a, g_v))
        L = len(zs)
        # C2F: G^k from Z^k and Z^{k+1}; G^L = Z^L
        gs = [self.c2f[k](zs[k], masks[k], zs[k + 1]) for k in range(L - 1)] + [zs[-1]]
        if self.tdm is not None:
            gs = [self.tdm(g, mk) for g, mk in zip(gs, masks, strict=True)]
        # F2C: O^1 = G^1, O^m = F2C(O^{m-1}, G^m)
        os_ = [gs[0]]
        for mlev in range(1, L):
            os_.append(self.f2c[mlev - 1](gs[mlev], masks[mlev], os_[-1], masks[mlev - 1]))
        out: dict[str, Any] = self.heads(os_, masks)
        out["level_masks"] = masks
        out["gates"] = [(ga[:, :, 0], gv[:, :, 0]) for ga, gv in gates]
        out["input_len"] = T
        if self.supervision == "weak":
            out["step_probs"] = self._weak_step_probs(out, m.shape[1])[:, :T]
        return out


__all__ = ["CCNet", "CCNetConfig", "CMCCLayer", "C2FBlock", "F2CBlock", "downsample_mask"]
