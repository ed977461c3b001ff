"""Optimiser and learning-rate schedule of the pyramid recipe (ActionFormer/UnAV)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn


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
