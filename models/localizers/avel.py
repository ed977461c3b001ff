"""AVEL (Tian et al., ECCV 2018, "Audio-visual event localization in unconstrained videos"), the
audio-guided visual attention + LSTM + fusion model, as the weakly supervised MIL baseline of CLASP's
Table 1 (W-A+V-att of the original paper).

Adaptation to DAVEL features (documented choices):

- Tian's audio-guided visual attention (AVGA) attends over the 7x7 spatial grid of VGG-19 pool5 maps.
  DAVEL features are spatially pooled vectors (I3D 2048-D), so there is no grid.  We split the visual
  vector into ``n_regions`` learned "regions": ``Linear(Dv, R*h)`` reshaped to ``(R, h)``; AVGA then
  computes, per step, ``w = softmax(W_f tanh(W_v v_r + W_g a))`` over the R regions and the attended
  visual feature ``sum_r w_r v_r`` (the paper's Eq. with the same affine/tanh/softmax form).
- Audio and attended visual sequences each go through a bidirectional LSTM (hidden ``h_lstm``, packed
  so padded steps never reach valid ones); fusion is concatenation (the A+V-att variant that the weak
  setting of the paper uses); a two-layer MLP gives per-step class logits.
- Multi-label: per-step sigmoid (UnAV events overlap) instead of the single-label softmax of AVE.
- ``weak``: MIL pooling over valid steps -> video-level BCE against ``batch['labels']``.  Tian's
  W-A+V-att (``models_weakly.py`` of YapengTian/AVE-ECCV18) max-pools the per-segment scores over time
  before a softmax (``mil_pool="max"`` is its multi-label equivalent); the default ``topk`` (mean of the
  ``ceil(T/8)`` highest steps) is the pooling of this project's CLASP, so that the weak rows of one table
  differ only in architecture.  ``full``: per-step BCE against step labels rasterised from ``batch['segments']``
  (step ``t`` is positive for class ``c`` when ``start <= t < end``), Tian's supervised setting.
- Inference, full: threshold per-step probabilities at 0.5, merge consecutive positive steps, score =
  mean probability (``models.localizers.postprocess.probs_to_events``), in feature steps. Weak: the
  ``decoder`` every weak model has (:func:`models.localizers.decoding.decode_weak`): CLASP's rule (classes
  whose gate score is >= 0.5, then the same runs) or the standard weak decoder, chosen on validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.localizers.base import ModelConfig, step_targets
from models.localizers.decoding import WeakOutputs, decode_weak
from models.localizers.losses import weak_loss
from models.localizers.pooling import class_gate, detect_from_probs, mil_pool
from models.localizers.registry import register_localizer


@dataclass
class AVELConfig(ModelConfig):
    supervision: str = "weak"  # "weak" (MIL) | "full" (per-step labels)
    hidden: int = 512  # AVGA hidden size (Tian: 512)
    n_regions: int = 8
    region_dim: int = 256
    h_lstm: int = 128  # Tian: 128
    fc_dim: int = 64
    dropout: float = 0.0
    mil_pool: str = "topk"  # as this project's CLASP; Tian's code max-pools ("max")
    mil_topk_ratio: int = 8
    threshold: float = 0.5
    gate_pool: str = "max"  # weak inference class gate, decoupled from mil_pool (models.localizers.pooling.class_gate)
    decoder: Any = "auto"  # weak only: models.localizers.mil.MILConfig.decoder


class AudioGuidedAttention(nn.Module):
    """AVGA over learned visual regions (see module docstring)."""

    def __init__(self, audio_dim: int, visual_dim: int, n_regions: int, region_dim: int, hidden: int) -> None:
        super().__init__()
        self.r, self.rd = n_regions, region_dim
        self.regions = nn.Linear(visual_dim, n_regions * region_dim)
        self.affine_v = nn.Linear(region_dim, hidden, bias=False)
        self.affine_g = nn.Linear(audio_dim, hidden, bias=False)
        self.affine_h = nn.Linear(hidden, 1, bias=False)

    def forward(self, a: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, T, _ = v.shape
        vr = F.relu(self.regions(v)).view(B, T, self.r, self.rd)
        z = torch.tanh(self.affine_v(vr) + self.affine_g(a)[:, :, None, :])
        w = torch.softmax(self.affine_h(z).squeeze(-1), dim=-1)  # (B, T, R)
        return (w[..., None] * vr).sum(2), w


@register_localizer("avel", config=AVELConfig, supervision=("weak", "full"),
                    uses=("models.localizers.losses", "models.localizers.targets"))
class AVEL(nn.Module):
    """AVEL localizer following the ``models.localizers.base`` contract."""

    def __init__(self, cfg: AVELConfig) -> None:
        super().__init__()
        if cfg.supervision not in ("full", "weak"):
            raise ValueError(f"supervision must be 'full' or 'weak', got {cfg.supervision!r}")
        self.cfg = cfg
        self.supervision = cfg.supervision
        self.avga = AudioGuidedAttention(cfg.audio_dim, cfg.visual_dim, cfg.n_regions, cfg.region_dim, cfg.hidden)
        self.lstm_a = nn.LSTM(cfg.audio_dim, cfg.h_lstm, batch_first=True, bidirectional=True)
        self.lstm_v = nn.LSTM(cfg.region_dim, cfg.h_lstm, batch_first=True, bidirectional=True)
        self.cls = nn.Sequential(  # Tian: ReLU -> L1 (4h -> 64) -> ReLU -> L2 (64 -> classes)
            nn.ReLU(), nn.Linear(4 * cfg.h_lstm, cfg.fc_dim), nn.ReLU(), nn.Dropout(cfg.dropout),
            nn.Linear(cfg.fc_dim, cfg.num_classes),
        )

    def _run_lstm(self, lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(x, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        y, _ = lstm(packed)
        y, _ = pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        return y

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        a, v, m = batch["audio"].float(), batch["visual"].float(), batch["mask"].bool()
        mf = m[..., None].to(a.dtype)
        a, v = a * mf, v * mf
        lengths = m.sum(1)
        att_v, w = self.avga(a, v)
        ha = self._run_lstm(self.lstm_a, a, lengths)
        hv = self._run_lstm(self.lstm_v, att_v, lengths)
        logits = self.cls(torch.cat([ha, hv], dim=-1))
        probs = torch.sigmoid(logits) * mf
        return {"logits": logits, "step_probs": probs, "attention": w}

    def class_prior_heads(self) -> list[tuple[torch.Tensor, float]]:
        """The last classifier layer's bias (models.localizers.class_prior)."""
        return [(self.cls[-1].bias, 1.0)]

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        m = batch["mask"].bool()
        if self.supervision == "weak":
            total = weak_loss(out["step_probs"], m, batch["labels"], self.cfg.mil_pool, self.cfg.mil_topk_ratio)
            out["loss_terms"] = {"mil_bce": float(total.detach())}
            return total
        target = step_targets(batch["segments"], m.shape[1], self.cfg.num_classes, m.device)
        bce = F.binary_cross_entropy_with_logits(out["logits"], target, reduction="none").sum(-1)
        total = (bce * m).sum() / m.sum().clamp(min=1)
        out["loss_terms"] = {"step_bce": float(total.detach())}
        return total

    def weak_outputs(self, out: dict[str, Any], batch: dict[str, Any]) -> WeakOutputs | None:
        """Weak mode's decoder inputs: step probabilities, their training MIL pool, the paper rule's gate."""
        if self.supervision != "weak":
            return None
        m, p, c = batch["mask"].bool(), out["step_probs"], self.cfg
        return WeakOutputs(p, m, mil_pool(p, m, c.mil_pool, c.mil_topk_ratio),
                           class_gate(p, m, c.gate_pool, c.mil_pool, c.mil_topk_ratio), c.threshold)

    @torch.no_grad()
    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[tuple[float, float, int, float]]]:
        if self.supervision == "weak":
            return decode_weak(self.weak_outputs(out, batch), self.cfg.decoder)
        return detect_from_probs(out["step_probs"], batch["mask"].bool(), self.cfg.threshold, None)



