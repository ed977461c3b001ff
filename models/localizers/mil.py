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
- MIL pooling and decoding: :func:`models.localizers.pooling.mil_pool` and
  :func:`models.localizers.decoding.decode_weak` (the ``decoder`` field: the paper's rule or the standard
  weak-localization decoder, chosen on validation), the same two functions every weak model uses.
- :func:`weak_bce` -- BCE on probabilities, computed in float32 outside autocast (BCE on
  probabilities is not autocast-safe), clamped to ``[eps, 1 - eps]``.
- :func:`fp32_head` -- a classifier head and its sigmoid in float32 even under AMP: in bf16 the
  sigmoid outputs take only a few hundred distinct values near 0 and 1 (8 mantissa bits), which ties
  the scores the mAP ranks and zeroes the gradient of saturated classes.
- The inference class gate (``gate_pool``) is decoupled from the training pool (``pooling``): by
  default a class is kept when its *highest* step probability reaches ``threshold`` (``"max"``), so a
  short event the model predicts well is not dropped because a top-k mean over ``ceil(L / 8)`` steps
  (the training pool) dilutes it; ``"train"`` gates on the training pool as before, ``"none"`` keeps
  every class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.localizers.base import Detection, ModelConfig, step_targets
from models.localizers.decoding import WeakOutputs, decode_weak
from models.localizers.pooling import class_gate, mil_pool
from models.localizers.registry import register_localizer


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
class Projection(nn.Module):
    """Two ``Conv1d`` (+ LayerNorm) + ReLU layers ``(B, T, D) -> (B, T, d)``, masked so padding cannot leak.

    ``with_ln`` (the default of every weak model, ``proj_ln``): each convolution is followed by a
    LayerNorm over the channels of each step before the ReLU, and has no bias, as the embedding of the
    UnAV backbone CLASP says it follows ("two convolutional layers with ReLU", after Geng et al. 2023:
    ttgeng233/UnAV ``libs/modeling/multimodal_backbones.py``, ``MaskedConv1D(bias=not with_ln)`` +
    ``LayerNorm`` + ReLU). Why it matters: I3D and VGGish features are non-negative with a large common
    offset, so Adam's first updates shift every pre-activation of a 2048 x 3 fan-in together; without
    the norm 91 % of the visual units were dead after two epochs at UnAV-100's structure (docs/recipes.md).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3, with_ln: bool = False) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"projection kernel_size must be odd, got {kernel_size}")
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_dim, out_dim, kernel_size, padding=pad, bias=not with_ln)
        self.conv2 = nn.Conv1d(out_dim, out_dim, kernel_size, padding=pad, bias=not with_ln)
        self.norm1 = nn.LayerNorm(out_dim) if with_ln else nn.Identity()
        self.norm2 = nn.LayerNorm(out_dim) if with_ln else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        h = x * m
        for conv, norm in ((self.conv1, self.norm1), (self.conv2, self.norm2)):
            h = F.relu(norm(conv(h.transpose(1, 2)).transpose(1, 2))) * m
        return h


def check_mask(mask: torch.Tensor) -> torch.Tensor:
    """Validate a ``(B, T)`` mask and return it as bool; every video needs >= 1 valid step."""
    if mask.dim() != 2:
        raise ValueError(f"mask must be (B, T), got shape {tuple(mask.shape)}")
    mask = mask.bool()
    empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"videos at batch positions {empty} have no valid step (empty mask)")
    return mask


def weak_bce(p: torch.Tensor, y: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean BCE between video-level probabilities and multi-hot labels, in float32."""
    with torch.autocast(device_type=p.device.type, enabled=False):
        # written out (not F.binary_cross_entropy, which raises on NaN inputs) so that a diverged
        # model yields a NaN loss that the training loop reports with its epoch and batch
        q = p.float().clamp(eps, 1.0 - eps)
        y = y.float()
        return -(y * torch.log(q) + (1.0 - y) * torch.log1p(-q)).mean()


def fp32_head(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``sigmoid(head(x))`` computed in float32 with autocast off (see the module docstring)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        return torch.sigmoid(head(x.float()))


def gate_probs(cfg: MILConfig, out: dict[str, Any], step_probs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """Video-level probabilities the inference class gate compares with ``threshold`` (``None``: no gate)."""
    if cfg.gate_pool == "train":  # the pooled score forward already computed for the loss
        return out["video_p"]
    return class_gate(step_probs, mask, cfg.gate_pool, cfg.pooling, cfg.topk_div)


def weak_outputs(cfg: MILConfig, out: dict[str, Any]) -> WeakOutputs:
    """CLASP's and MIL's decoder inputs: per-step ``p_av``, the MIL-pooled ``video_p`` the loss trained (the
    standard decoder ranks classes by it), the paper rule's gate (:func:`gate_probs`) and threshold."""
    p, mask = out["p_av"], out["mask"]
    return WeakOutputs(p, mask, out["video_p"], gate_probs(cfg, out, p, mask), cfg.threshold, by_score=True)


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
    proj_ln: bool = True  # LayerNorm in the projection, as UnAV's embedding (Projection's docstring)
    dropout: float = 0.1
    pooling: str = "topk"  # training MIL pool: "topk" | "max" (Tian et al. 2018, the paper's) | "mean"
    # top-k ratio, a recipe field: k = ceil(L / topk_div) valid steps per class. W-TALC / BaS-Net / ASM-Loc
    # use T//8 on THUMOS; ASM-Loc uses T//2 on ActivityNet, whose events (like UnAV-100's: a present class
    # covers ~58 % of its video) cover about half the video. Choose it on validation (bench/unav_structure_bench.py
    # --topk-div 2 4 8, docs/recipes.md "Weak models at UnAV-100's structure").
    topk_div: int = 8
    threshold: float = 0.5
    gate_pool: str = "max"  # inference class gate: "max" | "topk" | "mean" | "train" (= pooling) | "none"
    # "auto" (chosen on validation after training, models.run.decoder_selection) | "paper" | "standard" | a dict
    # of models.localizers.decoding.WeakDecodeConfig fields; threshold and gate_pool are the paper rule's
    decoder: Any = "auto"
    lr: float = 1e-4
    epochs: int = 40
    batch_size: int = 16
    # "video": the weak baseline (BCE of the pooled score against the video label); "step": the cheap
    # full-supervision ceiling of issue #31, the same network and decoder trained with per-step BCE against
    # the steps each annotated segment covers (MIL only; CLASP rejects it)
    targets: str = "video"


@register_localizer("mil", config=MILConfig, supervision=("weak",))
class MILBaseline(nn.Module):
    """Projection -> ``[a; v]`` -> linear classifier + sigmoid per step -> MIL pooling -> BCE (``targets:
    step``: per-step BCE, ``supervision`` then reads ``"step"`` so that the label-shuffled control shuffles
    the segments too and the class heads stay at 0.5)."""

    supervision = "weak"
    #: outputs on valid steps do not depend on how much padding follows (Projection is masked, the classifier
    #: per step): models.run.train trims each batch to its longest video (models.data.dataset.trim_padding)
    pad_free = True

    def __init__(self, cfg: MILConfig) -> None:
        super().__init__()
        if cfg.targets not in ("video", "step"):
            raise ValueError(f"targets must be 'video' or 'step', got {cfg.targets!r}")
        self.cfg = cfg
        self.supervision = "step" if cfg.targets == "step" else "weak"
        d = cfg.hidden_dim
        self.proj_a = Projection(cfg.audio_dim, d, cfg.proj_kernel, cfg.proj_ln)
        self.proj_v = Projection(cfg.visual_dim, d, cfg.proj_kernel, cfg.proj_ln)
        self.drop = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(2 * d, cfg.num_classes)

    def class_prior_heads(self) -> list[tuple[torch.Tensor, float]]:
        """The step classifier's bias (models.localizers.class_prior)."""
        return [(self.classifier.bias, 1.0)]

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = check_mask(batch["mask"])
        a = self.proj_a(batch["audio"], mask)
        v = self.proj_v(batch["visual"], mask)
        p = fp32_head(self.classifier, self.drop(torch.cat([a, v], dim=-1)))
        p = p.masked_fill(~mask.unsqueeze(-1), 0.0)
        return {"p_av": p, "video_p": mil_pool(p, mask, self.cfg.pooling, self.cfg.topk_div), "mask": mask}

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor:
        if self.cfg.targets == "step":
            p, m = out["p_av"], out["mask"]
            y = step_targets(batch["segments"], p.shape[1], p.shape[2], p.device)
            loss = weak_bce(p[m], y[m])
            out["loss_terms"] = {"step": float(loss.detach())}
            return loss
        loss = weak_bce(out["video_p"], batch["labels"])
        out["loss_terms"] = {"video": float(loss.detach())}
        return loss

    def weak_outputs(self, out: dict[str, Any], batch: dict[str, Any]) -> WeakOutputs:
        """The decoder's inputs: ``p_av``, the training pool ``video_p`` and the paper rule's gate."""
        return weak_outputs(self.cfg, out)

    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[Detection]]:
        return decode_weak(self.weak_outputs(out, batch), self.cfg.decoder)
