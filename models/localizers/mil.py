"""Plain multiple-instance-learning (MIL) baseline, and the pieces it shares with CLASP.

The baseline is CLASP with everything between the projection and the final classifier removed:
per-modality projection (two ``Conv1d`` + ReLU to ``d``), concatenation ``[a; v]`` along channels,
a linear classifier with a sigmoid per step, MIL pooling over the valid steps to a video-level
probability, and BCE against the weak video-level label.  It answers "how much of CLASP's score
is the anchors/propagation and how much is just a weakly supervised per-step classifier".

Shared helpers (used by :mod:`models.localizers.clasp` too, so the two models differ only where the paper
says they do):

- :class:`Projection` -- padding-safe temporal projection.  Inputs and every intermediate
  activation are zeroed on padded steps, so a ``kernel_size > 1`` convolution sees the same
  zeros at the end of the valid sequence as its own zero padding would; outputs on valid steps
  therefore never depend on what is stored in (or how long) the padding is.
- :func:`mil_pool` -- masked pooling over time: ``"topk"`` (default; mean of the top
  ``ceil(L / topk_div)`` valid steps, W-TALC-style k-max MIL), ``"max"`` (Tian et al. 2018's weak
  AVEL pools segment scores with a max over time, the pooling CLASP cites) and ``"mean"``.  Why
  top-k is the default is measured and explained in :mod:`models.localizers.clasp`.  Padded steps never
  contribute.
- :func:`weak_bce` -- BCE on probabilities, computed in float32 outside autocast (BCE on
  probabilities is not autocast-safe), clamped to ``[eps, 1 - eps]``.
- :func:`detect_from_probs` -- the paper's inference: keep only classes whose video-level score
  is ``>= threshold``; within those, threshold the per-step probability at ``threshold`` and merge
  runs of consecutive positive valid steps into one event, score = mean per-step probability
  inside the run (:func:`models.localizers.postprocess.probs_to_step_events`).  A run of whole steps
  ``a..b`` is returned as ``(a - 0.5, b + 0.5)`` in the continuous step coordinate of
  :mod:`models.data.dataset` (integer ``x`` = centre of feature ``x``, each feature owning the cell
  ``[x - 0.5, x + 0.5)``), which :mod:`models.run.evaluate` converts to seconds with
  :func:`models.localizers.postprocess.step_events_to_seconds` (``center_offset_s + x * step_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.localizers.base import Detection, ModelConfig
from models.localizers.postprocess import probs_to_step_events

PoolMode = Literal["mean", "max", "topk"]


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
class Projection(nn.Module):
    """Two ``Conv1d`` + ReLU layers ``(B, T, D) -> (B, T, d)``, masked so padding cannot leak."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"projection kernel_size must be odd, got {kernel_size}")
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_dim, out_dim, kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(out_dim, out_dim, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = x.transpose(1, 2) * m
        h = F.relu(self.conv1(h)) * m
        h = F.relu(self.conv2(h)) * m
        return h.transpose(1, 2)


def check_mask(mask: torch.Tensor) -> torch.Tensor:
    """Validate a ``(B, T)`` mask and return it as bool; every video needs >= 1 valid step."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"videos at batch positions {empty} have no valid step (empty mask)")
    return mask


def mil_pool(p: torch.Tensor, mask: torch.Tensor, mode: PoolMode = "mean", topk_div: int = 8) -> torch.Tensor:
    """Pool per-step probabilities ``(B, T, C)`` over valid steps to ``(B, C)``."""
    m = mask.unsqueeze(-1)
    if mode == "mean":
        n = mask.sum(dim=1, keepdim=True).clamp(min=1).to(p.dtype)
        return (p * m.to(p.dtype)).sum(dim=1) / n
    if mode == "max":
        return p.masked_fill(~m, float("-inf")).amax(dim=1)
    if mode == "topk":
        lengths = mask.sum(dim=1)  # (B,)
        kk = torch.clamp(torch.ceil(lengths.float() / topk_div).long(), min=1)  # (B,)
        srt = p.masked_fill(~m, float("-inf")).sort(dim=1, descending=True).values  # (B, T, C)
        rank = torch.arange(p.shape[1], device=p.device).view(1, -1, 1)
        keep = rank < kk.view(-1, 1, 1)
        return (srt.masked_fill(~keep, 0.0)).sum(dim=1) / kk.view(-1, 1).to(p.dtype)
    raise ValueError(f"unknown MIL pooling {mode!r}; use 'mean', 'max' or 'topk'")


def weak_bce(p: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean BCE between video-level probabilities and multi-hot labels, in float32."""
    with torch.autocast(device_type=p.device.type, enabled=False):
        # written out (not F.binary_cross_entropy, which raises on NaN inputs) so that a diverged
        # model yields a NaN loss that the training loop reports with its epoch and batch
        q = p.float().clamp(eps, 1.0 - eps)
        y = y.float()
        return -(y * torch.log(q) + (1.0 - y) * torch.log1p(-q)).mean()


def detect_from_probs(
    p_step: torch.Tensor, p_video: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5
) -> list[list[Detection]]:
    """Paper inference (see module docstring): ``(B, T, C)`` step probs -> events in step units.

    Valid steps are the prefix ``[0, mask.sum())`` (the ``models.data.dataset`` padding convention).
    """
    p_step = p_step.detach().float().cpu().numpy()
    p_video = p_video.detach().float().cpu().numpy()
    lengths = mask.detach().bool().sum(dim=1).cpu().tolist()
    results: list[list[Detection]] = []
    for b, L in enumerate(lengths):
        keep = np.nonzero(p_video[b] >= threshold)[0]
        dets: list[Detection] = []
        if len(keep):
            for s, e, c, sc in probs_to_step_events(p_step[b, :L][:, keep], threshold, L):
                dets.append((float(s), float(e), int(keep[c]), float(sc)))
        dets.sort(key=lambda d: -d[3])
        results.append(dets)
    return results


# --------------------------------------------------------------------------------------------
# the baseline
# --------------------------------------------------------------------------------------------
@dataclass
class MILConfig(ModelConfig):
    """Plain MIL baseline. Its fields (projection, dropout, MIL pooling, detection threshold, optimisation)
    are the ones every weakly supervised step classifier here has: CLASPConfig extends it, so the baseline
    and CLASP share their defaults by construction."""

    hidden_dim: int = 512
    proj_kernel: int = 3
    dropout: float = 0.1
    pooling: str = "topk"
    topk_div: int = 8
    threshold: float = 0.5
    lr: float = 1e-4
    epochs: int = 40
    batch_size: int = 16


class MILBaseline(nn.Module):
    """Projection -> ``[a; v]`` -> linear classifier + sigmoid per step -> MIL pooling -> BCE."""

    supervision = "weak"

    def __init__(self, cfg: MILConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.hidden_dim
        self.proj_a = Projection(cfg.audio_dim, d, cfg.proj_kernel)
        self.proj_v = Projection(cfg.visual_dim, d, cfg.proj_kernel)
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(2 * d, cfg.num_classes)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = check_mask(batch["mask"])
        a = self.proj_a(batch["audio"], mask)
        v = self.proj_v(batch["visual"], mask)
        p = torch.sigmoid(self.classifier(self.drop(torch.cat([a, v], dim=-1))))
        p = p.masked_fill(~mask.unsqueeze(-1), 0.0)
        return {"p_av": p, "video_p": mil_pool(p, mask, self.cfg.pooling, self.cfg.topk_div), "mask": mask}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        loss = weak_bce(out["video_p"], batch["labels"])
        out["loss_terms"] = {"video": float(loss.detach())}
        return loss

    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[Detection]]:
        return detect_from_probs(out["p_av"], out["video_p"], out["mask"], self.cfg.threshold)
