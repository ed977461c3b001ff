"""CLASP: Cross-modal saLient Anchor-based Semantic Propagation (Zhou et al., W-DAVEL).

Paper: *CLASP: Cross-modal Salient Anchor-based Semantic Propagation for Weakly-supervised Dense
Audio-Visual Event Localization* (Zhou et al.).  Pipeline per video (``T`` steps, ``L`` valid); each
step's choices are documented where it is computed:

1. **Projection** -- two ``Conv1d`` + ReLU per modality to ``d`` (:class:`models.localizers.mil.Projection`,
   masked so padding never leaks into valid steps).  These projected ``a, v`` are the paper's
   "initial features" (Eq. 1 needs ``W_1 in R^{d x d}``, so MEAE acts after the projection).
2. **MEAE** -- per-modality classifiers ``P_m = sigmoid(LeakyReLU(x W_1^m) W_2^m)`` (Eq. 1) and a
   per-step agreement ``s_t = 1 - JSD(q_a,t || q_v,t)`` (Eqs. 2-3, :func:`agreement_score`).
3. **CSAI** -- global (GAI) and local (LAI) anchors: the steps of highest agreement, over the video
   and inside ``M`` windows (:func:`topk_eligible`, :func:`local_windows`), fused into ``Z_av``
   (:meth:`CLASP._anchors`).
4. **ATP** -- one-layer Transformer encoder per modality, then cross-attention from each modality to
   the anchors ``Z_av`` (Eq. 5).
5. **Classification** -- foreground-weighted per-step ``p_av``, MIL-pooled to the video label
   (:meth:`CLASP.loss`); inference decodes it into segments (:meth:`CLASP.detect`: the paper's 0.5
   threshold or the standard weak decoder, chosen on validation).

Padded steps are zeroed in every per-step output and never pooled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from models.localizers.base import Detection
from models.localizers.decoding import WeakOutputs, decode_weak
from models.localizers.mil import MILConfig, Projection, check_mask, fp32_head, weak_bce, weak_outputs
from models.localizers.pooling import mil_pool
from models.localizers.registry import register_localizer

_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# functional pieces (tested directly)
# --------------------------------------------------------------------------------------------
def agreement_score(p_a: torch.Tensor, p_v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``1 - JSD_2`` between the class-normalised audio and visual scores, per step (MEAE, Eqs. 2-3).

    ``p_a, p_v``: ``(..., C)`` sigmoid probabilities.  Returns ``(...)`` in ``[0, 1]``.  The sigmoid scores
    are multi-label, so to compare them as distributions each step's scores are normalised over the
    class axis: ``q_m,t = (P_m,t + eps) / sum_c (P_m,t,c + eps)``.  The JSD is the standard symmetric one,
    ``1/2 KL(q_a || m) + 1/2 KL(q_v || m)`` with ``m = (q_a + q_v) / 2`` (the cited Fuglede & Topsoe
    definition; the paper's ``D_KL(P_bar, P_a)`` notation, read literally as ``KL(P_bar || P_a)``, would be
    unbounded), with log base 2 so ``s in [0, 1]``; ``s = 1`` iff the normalised audio and visual
    predictions are identical.
    """
    with torch.autocast(device_type=p_a.device.type, enabled=False):
        qa = p_a.float() + eps
        qv = p_v.float() + eps
        qa = qa / qa.sum(dim=-1, keepdim=True)
        qv = qv / qv.sum(dim=-1, keepdim=True)
        m = 0.5 * (qa + qv)
        xlogy = torch.special.xlogy  # 0 * log 0 = 0 (exact zeros when eps = 0)
        kl_a = (xlogy(qa, qa) - xlogy(qa, m)).sum(dim=-1)
        kl_v = (xlogy(qv, qv) - xlogy(qv, m)).sum(dim=-1)
        jsd = (0.5 * kl_a + 0.5 * kl_v) / _LN2
        return (1.0 - jsd).clamp(0.0, 1.0)


def topk_eligible(score: torch.Tensor, eligible: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the top-``k`` eligible positions along the last axis, descending score (CSAI's anchors).

    ``score``/``eligible``: ``(..., T)``; every row must have >= 1 eligible position.  **Padding is never
    an anchor**: ineligible scores are ``-inf`` before ``topk``.  With ``n < k`` eligible positions
    (``L < K``, or a window shorter than ``k``), slot ``j`` repeats the ``(j mod n)``-th best one, so the
    anchor tensors keep their fixed shapes for ``Linear(M*k, K)`` and no padded step is ever used.
    Selection is a hard ``topk`` and carries no gradient; the gathered features do.
    """
    T = score.shape[-1]
    masked = score.detach().float().masked_fill(~eligible, float("-inf"))
    idx = masked.topk(min(k, T), dim=-1, sorted=True).indices
    n = eligible.sum(dim=-1, keepdim=True).clamp(min=1)
    slot = torch.arange(k, device=score.device).expand(*score.shape[:-1], k)
    return idx.gather(-1, slot % n)


def local_windows(mask: torch.Tensor, n_windows: int) -> torch.Tensor:
    """Eligibility ``(B, M, T)`` of LAI's ``M`` consecutive windows over each video's valid steps.

    Window ``m`` = valid ranks ``[floor(mL/M), floor((m+1)L/M))`` (at least one step).  For
    ``L = T = 224, M = 14`` these are exactly the paper's 14 windows of ``floor(T/M) = 16`` steps;
    defining them on the valid length (instead of on the padded ``T``) keeps every window inside the video.
    """
    rank = mask.long().cumsum(dim=1) - 1  # position among valid steps
    L = mask.sum(dim=1, keepdim=True)  # (B, 1)
    m = torch.arange(n_windows, device=mask.device).view(1, -1)  # (1, M)
    start = torch.div(m * L, n_windows, rounding_mode="floor")  # (B, M)
    end = torch.maximum(torch.div((m + 1) * L, n_windows, rounding_mode="floor"), start + 1)
    r = rank.unsqueeze(1)  # (B, 1, T)
    return (r >= start.unsqueeze(-1)) & (r < end.unsqueeze(-1)) & mask.unsqueeze(1)


def gather_steps(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``x (B, T, d)``, ``idx (B, N)`` -> ``(B, N, d)``."""
    return x.gather(1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
@dataclass
class CLASPConfig(MILConfig):
    """CLASP hyper-parameters; defaults are the paper's UnAV-100 setting. The projection, pooling, threshold
    and optimisation fields come from :class:`models.localizers.mil.MILConfig`. Values the paper does not
    give and we chose: ``d = 512``, 4 attention heads, transformer feed-forward ``2d``, dropout 0.1,
    projection kernel 3.

    Ablations: ``use_gai`` / ``use_lai`` drop one term of ``Z_m``; ``anchor_modality='audio'`` /
    ``'visual'`` builds the anchors from one modality only; ``meae_on='transformer'`` computes the
    agreement from ``F_A, F_V`` instead of the projected ``a, v`` (Table 6; anchors are gathered from
    ``a, v`` either way); ``anchors_in_atp=False`` gives ``F_hat_m = F_m`` (Table 8's "w/o anchor")."""

    n_heads: int = 4
    ff_mult: int = 2
    n_global: int = 10  # K
    n_local: int = 4  # k
    n_windows: int = 14  # M (16 for ActivityNet)
    use_gai: bool = True
    use_lai: bool = True
    anchors_in_atp: bool = True
    anchor_modality: str = "both"  # 'both' | 'audio' | 'visual'
    meae_on: str = "raw"  # 'raw' (projected a, v) | 'transformer' (F_A, F_V)
    lambda_uni: float = 1.0

    def __post_init__(self) -> None:
        if not (self.use_gai or self.use_lai):
            raise ValueError("CLASP needs at least one of use_gai / use_lai")
        if self.anchor_modality not in ("both", "audio", "visual"):
            raise ValueError(f"anchor_modality must be 'both', 'audio' or 'visual', got {self.anchor_modality!r}")
        if self.meae_on not in ("raw", "transformer"):
            raise ValueError(f"meae_on must be 'raw' or 'transformer', got {self.meae_on!r}")
        if self.targets != "video":
            raise ValueError(f"CLASP is weakly supervised (targets 'video'), got targets={self.targets!r}")
        if self.hidden_dim % self.n_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} not divisible by n_heads {self.n_heads}")


def _meae_head(d: int, n_classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(), nn.Linear(d, n_classes))


@register_localizer("clasp", config=CLASPConfig, supervision=("weak",), uses=("models.localizers.mil",))
class CLASP(nn.Module):
    """The CLASP localizer (weak supervision); the module docstring maps the paper's steps to the code."""

    supervision = "weak"
    #: valid-step outputs do not depend on the padding (masked projection, key-padding masks, anchors only
    #: among valid steps): batches are trimmed to their longest video (models.data.dataset.trim_padding)
    pad_free = True

    def __init__(self, cfg: CLASPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, C = cfg.hidden_dim, cfg.num_classes
        self.proj_a = Projection(cfg.audio_dim, d, cfg.proj_kernel, cfg.proj_ln)
        self.proj_v = Projection(cfg.visual_dim, d, cfg.proj_kernel, cfg.proj_ln)
        self.drop = nn.Dropout(cfg.dropout)
        # MEAE
        self.meae_a = _meae_head(d, C)
        self.meae_v = _meae_head(d, C)
        # CSAI
        if cfg.anchors_in_atp:
            if cfg.use_lai:
                self.lai_map = nn.Linear(cfg.n_windows * cfg.n_local, cfg.n_global)
            in_fuse = 2 * d if cfg.anchor_modality == "both" else d
            self.w3 = nn.Linear(in_fuse, 2 * d)
            self.w4 = nn.Linear(2 * d, d)
            self.xattn_a = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
            self.xattn_v = nn.MultiheadAttention(d, cfg.n_heads, dropout=cfg.dropout, batch_first=True)
        # ATP unimodal transformers
        self.enc_a = self._encoder_layer()
        self.enc_v = self._encoder_layer()
        # classification
        self.fg_a = nn.Linear(d, 1)
        self.fg_v = nn.Linear(d, 1)
        self.classifier = nn.Linear(2 * d, C)

    def class_prior_heads(self) -> list[tuple[torch.Tensor, float]]:
        """MEAE's two classifiers at the prior; the AV classifier at twice it, since ``p_av`` is its
        output times ``w_bar`` (0.5 at the start) (models.localizers.class_prior)."""
        return [(self.meae_a[-1].bias, 1.0), (self.meae_v[-1].bias, 1.0), (self.classifier.bias, 2.0)]

    def _encoder_layer(self) -> nn.TransformerEncoderLayer:
        c = self.cfg
        return nn.TransformerEncoderLayer(
            c.hidden_dim, c.n_heads, dim_feedforward=c.ff_mult * c.hidden_dim, dropout=c.dropout,
            batch_first=True,
        )

    def _anchors(self, x: torch.Tensor, idx_g: torch.Tensor | None, idx_l: torch.Tensor | None) -> torch.Tensor:
        """``Z_m = f^g + f^l`` for one modality: ``(B, K, d)``.

        ``f^g``: the features of the top-``K`` steps (GAI); ``f^l``: the ``M*k`` window anchors (LAI) mapped
        to ``K`` by a ``Linear(M*k, K)`` over the anchor axis.  :meth:`forward` then fuses the modalities,
        ``Z_av = ([Z_a; Z_v] W_3) W_4`` with the concat on the channel axis (the paper: ``W_3 in R^{2d x 2d}``,
        ``W_4 in R^{2d x d}``; two linear maps with biases and no activation, as written); with one anchor
        modality ``W_3' in R^{d x 2d}``.
        """
        z = 0
        if idx_g is not None:
            z = z + gather_steps(x, idx_g)
        if idx_l is not None:
            f_l = gather_steps(x, idx_l.flatten(1))  # (B, M*k, d)
            z = z + self.lai_map(f_l.transpose(1, 2)).transpose(1, 2)
        return z

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        mask = check_mask(batch["mask"])
        pad = ~mask
        a = self.proj_a(batch["audio"], mask)
        v = self.proj_v(batch["visual"], mask)

        # ATP part 1: unimodal temporal encoders (needed first for the meae_on='transformer' ablation)
        f_a = self.enc_a(self.drop(a), src_key_padding_mask=pad)
        f_v = self.enc_v(self.drop(v), src_key_padding_mask=pad)

        # MEAE
        src_a, src_v = (a, v) if cfg.meae_on == "raw" else (f_a, f_v)
        P_a = fp32_head(self.meae_a, src_a).masked_fill(pad.unsqueeze(-1), 0.0)
        P_v = fp32_head(self.meae_v, src_v).masked_fill(pad.unsqueeze(-1), 0.0)
        score = agreement_score(P_a.detach(), P_v.detach()).masked_fill(pad, 0.0)

        out: dict[str, Any] = {"P_a": P_a, "P_v": P_v, "score": score, "mask": mask}

        # CSAI + ATP part 2
        if cfg.anchors_in_atp:
            idx_g = topk_eligible(score, mask, cfg.n_global) if cfg.use_gai else None
            idx_l = None
            if cfg.use_lai:
                elig = local_windows(mask, cfg.n_windows)  # (B, M, T)
                s_w = score.unsqueeze(1).expand_as(elig)
                idx_l = topk_eligible(s_w, elig, cfg.n_local)  # (B, M, k)
            out["anchor_idx_global"], out["anchor_idx_local"] = idx_g, idx_l
            if cfg.anchor_modality == "both":
                z = torch.cat([self._anchors(a, idx_g, idx_l), self._anchors(v, idx_g, idx_l)], dim=-1)
            else:
                z = self._anchors(a if cfg.anchor_modality == "audio" else v, idx_g, idx_l)
            z_av = self.w4(self.w3(z))  # (B, K, d)
            out["z_av"] = z_av
            # Eq. 5, F_hat_m = F_m + MHA_m(F_m, Z_av, Z_av): the paper writes one MHA symbol for both
            # modalities; separate weights let each modality learn its own query space
            h_a = f_a + self.xattn_a(f_a, z_av, z_av, need_weights=False)[0]
            h_v = f_v + self.xattn_v(f_v, z_av, z_av, need_weights=False)[0]
        else:
            h_a, h_v = f_a, f_v

        # classification
        w_a = fp32_head(self.fg_a, h_a).squeeze(-1)
        w_v = fp32_head(self.fg_v, h_v).squeeze(-1)
        w_bar = 0.5 * (w_a + w_v)
        p_raw = fp32_head(self.classifier, self.drop(torch.cat([h_a, h_v], dim=-1)))
        p_av = (p_raw * w_bar.unsqueeze(-1)).masked_fill(pad.unsqueeze(-1), 0.0)
        out.update(
            p_av=p_av,
            w_bar=w_bar.masked_fill(pad, 0.0),
            video_p=mil_pool(p_av, mask, cfg.pooling, cfg.topk_div),
            video_pa=mil_pool(P_a, mask, cfg.pooling, cfg.topk_div),
            video_pv=mil_pool(P_v, mask, cfg.pooling, cfg.topk_div),
        )
        return out

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        """``BCE(p_hat, y) + lambda_uni * (BCE(pool(P_a), y) + BCE(pool(P_v), y))``, ``lambda_uni = 1``
        ("regularized in the same way"); ``p_hat`` is the MIL pooling of ``p_av = sigmoid(Linear([F_hat_A;
        F_hat_V])) * w_bar`` (``w_bar`` the mean of the two foreground weights) over the valid steps.

        **Pooling** (``pooling``, default ``'topk'``): the paper says "MIL pooling, as in (Tian et al. 2018)";
        Tian's weak AVEL model (YapengTian/AVE-ECCV18 ``models_weakly.py``) takes the *max* over its 10
        segments.  At 224 steps max pooling puts each class's whole gradient on one step: on the planted
        benchmark it over-fitted (training BCE -> 0.01) with validation mAP ~0, and mean pooling cannot reach
        ``p_hat >= 0.5`` for short events, so the paper's 0.5 class filter dropped most true classes.  Hence
        top-k mean pooling with ``k = ceil(L / 8)`` (W-TALC's k-max MIL, used by the weakly supervised
        localization works CLASP's foreground weighting comes from), which equals Tian's max pooling for
        ``L <= 8``; ``'max'`` and ``'mean'`` remain available.
        """
        y = batch["labels"]
        l_av = weak_bce(out["video_p"], y)
        l_a = weak_bce(out["video_pa"], y)
        l_v = weak_bce(out["video_pv"], y)
        out["loss_terms"] = {"av": float(l_av.detach()), "a": float(l_a.detach()), "v": float(l_v.detach())}
        return l_av + self.cfg.lambda_uni * (l_a + l_v)

    def weak_outputs(self, out: dict[str, Any], batch: dict[str, Any]) -> WeakOutputs:
        """The decoder's inputs (:func:`models.localizers.mil.weak_outputs`): ``p_av``, ``video_p``, the gate."""
        return weak_outputs(self.cfg, out)

    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[Detection]]:
        """Segments from ``p_av`` by the ``decoder`` (:func:`models.localizers.decoding.decode_weak`).

        ``decoder: paper`` is the paper's "threshold 0.5 to identify confident event classes": classes whose
        video-level score reaches ``threshold``; their per-step ``p_av`` thresholded at ``threshold``, runs of
        positive steps merged into events.  The gate's video-level score is pooled by ``gate_pool`` (default
        ``"max"``), not by the training ``pooling``: with top-k training the top-k mean of a 4-step event in
        a 224-step video (k = 28) stays far below 0.5 however well the event is predicted, and the gate
        dropped it (``gate_pool="train"`` restores that).  The default ``decoder: auto`` chooses between it
        and the standard weak-localization decoder (smoothing, classes by ``video_p``, multi-threshold
        proposals, outer-inner contrast, NMS) on validation after training (:mod:`models.run.decoder_selection`).
        The classifier heads and their sigmoids run in float32 even under AMP (:func:`models.localizers.mil.fp32_head`).
        """
        return decode_weak(self.weak_outputs(out, batch), self.cfg.decoder)


__all__ = ["CLASP", "CLASPConfig", "agreement_score", "topk_eligible", "local_windows"]
