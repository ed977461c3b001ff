"""Weak class heads start at the training label prior (``class_prior: label``, every weak model's default).

Why: a weak localizer's class head ends in a sigmoid per step and class, and the video-level score is a
pool of those. With the default zero bias every class starts at 0.5. On a benchmark with a handful of
frequent classes that is close to the labels' frequency, but on UnAV-100 a class is present in 1.6 % of
the videos on average (1.6 of 100 classes per video), so the first thousands of updates only push all
100 classes from 0.5 down to the prior: Adam moves a bias by about ``lr`` per step, and at the papers'
``lr = 1e-4`` the logit needs ~4 to fall, far more steps than 40 epochs on a quarter of UnAV-100 give
(measured in docs/recipes.md, "Weak models at UnAV-100's structure"). The network finds the faster
way down instead: shifting the projection's pre-activations together, which kills its ReLUs.

Starting each class head at the frequency of its class in the training videos (Karpathy's "init well"
rule; RetinaNet's prior bias, Lin et al. 2017 §4.1, with the prior taken from the labels instead of
fixed at 0.01) makes the first loss the label prior's BCE, so every update goes to telling classes
apart. With few, frequent classes the frequencies are near 0.5 and nothing changes much. A class
absent from the training videos starts at ``1 / (2 N)``; no class starts above 0.5.

A model opts in by defining ``class_prior_heads() -> [(bias, gain)]``: the bias of each output layer whose
sigmoid is a class probability and the factor by which the model multiplies that probability before
pooling (CLASP multiplies its classifier's output by the foreground weight ``w_bar``, 0.5 at the start,
so its classifier starts at twice the frequency). ``class_prior: none`` keeps each layer's own init.
Full supervision keeps its own prior (the dense focal loss's 0.01), and so does a weak pyramid model
given an explicit ``cls_prior_prob``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

CLASS_PRIORS = ("label", "none")


def prior_logits(labels: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    """``(C,)`` logits of ``gain`` times each class's frequency in ``labels (N, C)`` (module docstring)."""
    n = max(int(labels.shape[0]), 1)
    p = (labels.float().mean(dim=0) * gain).clamp(min=1.0 / (2 * n), max=0.5)
    return torch.log(p) - torch.log1p(-p)


@torch.no_grad()
def fit_class_prior(model: nn.Module, labels: torch.Tensor) -> bool:
    """Set the model's class-head biases to the label prior of ``labels (N, C)``; True when it did."""
    cfg = getattr(model, "cfg", None)
    kind = getattr(cfg, "class_prior", "none")
    if kind not in CLASS_PRIORS:
        raise ValueError(f"class_prior must be one of {CLASS_PRIORS}, got {kind!r}")
    heads = getattr(model, "class_prior_heads", None)
    # MIL's per-step ceiling ("step") too: its step classifier at 0.5 spent 10 epochs climbing down to the
    # prior at fraction 0.1 (validation Avg mAP 0.00 in every epoch; docs/recipes.md)
    if kind == "none" or heads is None or getattr(model, "supervision", "weak") not in ("weak", "step"):
        return False
    if getattr(cfg, "cls_prior_prob", None) is not None:  # an explicit prior wins
        return False
    pairs = heads()
    for bias, gain in pairs:
        if bias.shape[-1] != labels.shape[1]:
            raise ValueError(f"class head has {bias.shape[-1]} outputs but the labels have {labels.shape[1]} classes")
        bias.copy_(prior_logits(labels, gain).to(bias))
    return bool(pairs)


def mean_prior(labels: torch.Tensor) -> float:
    """Mean class frequency (for the training log line)."""
    return float(labels.float().mean()) if labels.numel() else math.nan


__all__ = ["CLASS_PRIORS", "fit_class_prior", "mean_prior", "prior_logits"]
