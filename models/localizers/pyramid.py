"""The base of the point-based pyramid localizers (CCNet and DAVE): their shared config (architecture
widths, target assignment, decoding, weak MIL and the training recipe) and ``loss`` / ``detect`` /
optimizer. One implementation serves both models so that their comparison measures the backbones, not
differences in target assignment or decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from models.localizers.base import ModelConfig
from models.localizers.decoding import DecodeConfig, WeakOutputs, decode_config, decode_dense, decode_weak
from models.localizers.losses import dense_loss, pyramid_weak_loss
from models.localizers.optim import make_optimizer
from models.localizers.pooling import class_gate, mil_pool
from models.localizers.targets import DEFAULT_REG_RANGES

# What a pyramid model builds on beyond its own module: its declaration's `uses` (the code fingerprint's files)
PYRAMID_MODULES = tuple(f"models.localizers.{m}" for m in ("decoding", "heads", "layers", "losses", "optim",
                                                           "pyramid", "targets", "tdm"))


def fuse_level_probs(level_probs: list[torch.Tensor], length: int) -> torch.Tensor:
    """Per-step probabilities ``(B, T, C)`` = mean over pyramid levels of each level's probabilities
    repeated back to stride 1 (point ``i`` of level ``l`` covers steps ``[i 2^l, (i+1) 2^l)``)."""
    ups = [p.repeat_interleave(2**lvl, dim=1)[:, :length] for lvl, p in enumerate(level_probs)]
    return torch.stack(ups, 0).mean(0)


@dataclass
class PyramidConfig(DecodeConfig, ModelConfig):
    """Fields shared by the point-based pyramid localizers (CCNet, DAVE): width, TDM, heads, target
    assignment, weak-supervision MIL and optimisation, and (inherited, flat, so a config still survives
    ``dataclasses.asdict`` -> checkpoint -> ``cfg_cls(**d)``) the UnAV-100 decoding of :class:`DecodeConfig`."""

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
    mil_pool: str = "topk"  # as this project's CLASP; Tian's weak AVEL code max-pools ("max")
    mil_topk_ratio: int = 8
    weak_threshold: float = 0.5
    gate_pool: str = "max"  # weak inference class gate, decoupled from mil_pool (models.localizers.pooling.class_gate)
    weak_inference: str = "finest"  # "finest" (stride-1 level) | "fuse" (mean of all levels, repeated)
    decoder: Any = "auto"  # weak only: models.localizers.mil.MILConfig.decoder (full: decode_dense)
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
    (:func:`pyramid_weak_loss`), then the weak ``decoder`` on the per-step probabilities
    (:func:`decode_weak`: the paper's thresholded runs of the classes whose gate passes, or the standard
    weak decoder, chosen on validation). Subclasses have ``cfg`` (a
    :class:`PyramidConfig`, whose recipe fields choose the optimizer) and ``supervision``; ``forward`` must put ``step_probs`` in its output when weak.
    """

    def init_pyramid(self, cfg: PyramidConfig, n_levels: int) -> None:
        """What every pyramid model sets first: its supervision (checked), ``reg_ranges`` as tuples (lists
        after a JSON round trip), and the padded length ``t_pad`` (``t_max`` rounded up to the coarsest
        level's stride ``2 ** (n_levels - 1)``, so every level's length divides evenly)."""
        if cfg.supervision not in ("full", "weak"):
            raise ValueError(f"supervision must be 'full' or 'weak', got {cfg.supervision!r}")
        cfg.reg_ranges = tuple((float(lo), float(hi)) for lo, hi in cfg.reg_ranges)
        self.cfg = cfg
        self.supervision = cfg.supervision
        self.max_stride = 2 ** (n_levels - 1)
        self.t_pad = -(-cfg.t_max // self.max_stride) * self.max_stride

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

    def weak_outputs(self, out: dict[str, Any], batch: dict[str, Any]) -> WeakOutputs | None:
        """Weak mode's decoder inputs: the stride-1 (or fused) step probabilities, their MIL pool (the
        video score), the paper rule's gate; ``None`` under full supervision (regression decoding)."""
        if self.supervision != "weak":
            return None
        m, p, c = batch["mask"].bool(), out["step_probs"], self.cfg
        return WeakOutputs(p, m, mil_pool(p, m, c.mil_pool, c.mil_topk_ratio),
                           class_gate(p, m, c.gate_pool, c.mil_pool, c.mil_topk_ratio), c.weak_threshold)

    @torch.no_grad()
    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[tuple[float, float, int, float]]]:
        if self.supervision == "weak":
            return decode_weak(self.weak_outputs(out, batch), self.cfg.decoder)
        return decode_dense(out, decode_config(self.cfg))
