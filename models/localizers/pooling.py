"""The one home of the weak-supervision rule every weak localizer shares: MIL pooling over time and
per-step probabilities -> events (CLASP, MIL, CCNet, DAVE and AVEL all call these two functions).

- :func:`mil_pool` -- masked pooling of per-step probabilities ``(B, T, C)`` over the valid steps to
  video-level probabilities ``(B, C)``: ``"topk"`` (mean of the ``ceil(T_valid / topk_div)`` highest
  valid steps per class, W-TALC-style k-max MIL; why it is the default is measured and explained in
  :mod:`models.localizers.clasp`), ``"max"`` (Tian et al. 2018's weak AVEL: max over time, the pooling
  CLASP's W-DAVEL comparison cites) and ``"mean"``. Padded steps never contribute.
- :func:`class_gate` -- the video-level scores the inference class gate compares with the threshold,
  pooled by the model's ``gate_pool`` and decoupled from its training pool: ``"max"`` (the default of
  every weak model) keeps a class when its highest step probability reaches the threshold, so a short
  event the model predicts well is not dropped because a top-k mean over ``ceil(L / 8)`` steps dilutes
  it; ``"train"`` gates on the training pool, ``"none"`` keeps every class.
- :func:`detect_from_probs` -- the paper's inference (docs/recipes.md "Evaluation"): keep only classes
  whose video-level score is ``>= threshold`` (when video-level probabilities are given); within those,
  threshold the per-step probability at ``threshold`` and merge runs of consecutive positive valid steps
  into one event, score = mean per-step probability inside the run
  (:func:`models.localizers.postprocess.probs_to_step_events`). A run of whole steps ``a..b`` is
  returned as ``(a - 0.5, b + 0.5)`` in the continuous step coordinate of :mod:`models.data.steps`
  (integer ``x`` = centre of feature ``x``, each feature owning the cell ``[x - 0.5, x + 0.5)``), which
  :mod:`models.run.evaluate` converts to seconds with
  :func:`models.localizers.postprocess.step_events_to_seconds` (``center_offset_s + x * step_s``).

Valid steps are the prefix ``[0, mask.sum())`` of each row (the ``models.data.dataset`` padding
convention).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from models.localizers.base import Detection
from models.localizers.postprocess import probs_to_step_events

PoolMode = Literal["mean", "max", "topk"]


def mil_pool(probs: torch.Tensor, mask: torch.Tensor, mode: PoolMode | str = "mean", topk_div: int = 8) -> torch.Tensor:
    """Video-level probabilities ``(B, C)`` from per-step probabilities ``(B, T, C)`` in ``[0, 1]``
    over the valid steps of ``mask (B, T)``; see the module docstring for the modes."""
    m = mask[..., None].to(probs.dtype)
    if mode == "mean":
        return (probs * m).sum(1) / m.sum(1).clamp(min=1.0)
    if mode == "max":
        return probs.masked_fill(~mask[..., None], -1.0).amax(1).clamp(min=0.0)
    if mode == "topk":
        n_valid = mask.sum(1)  # (B,)
        k = torch.clamp(torch.ceil(n_valid.float() / topk_div), min=1).long()
        srt = probs.masked_fill(~mask[..., None], -1.0).sort(dim=1, descending=True).values  # (B, T, C)
        ranks = torch.arange(probs.shape[1], device=probs.device)[None, :, None]
        sel = (ranks < k[:, None, None]).to(probs.dtype)
        return (srt.clamp(min=0.0) * sel).sum(1) / k[:, None].to(probs.dtype)
    raise ValueError(f"unknown MIL pooling {mode!r}; expected 'mean', 'max' or 'topk'")


def class_gate(step_probs: torch.Tensor, mask: torch.Tensor, gate_pool: str, train_pool: str,
               topk_div: int = 8) -> torch.Tensor | None:
    """Video-level probabilities ``(B, C)`` for the inference class gate (``None``: no gate); see the
    module docstring for ``gate_pool`` (``"max" | "topk" | "mean" | "train" | "none"``)."""
    if gate_pool == "none":
        return None
    return mil_pool(step_probs, mask, train_pool if gate_pool == "train" else gate_pool, topk_div)


def detect_from_probs(step_probs: torch.Tensor, mask: torch.Tensor, threshold: float = 0.5,
                      video_probs: torch.Tensor | None = None, by_score: bool = False) -> list[list[Detection]]:
    """Per video, events ``(start_step, end_step, class, score)`` from step probabilities ``(B, T, C)``.

    ``video_probs (B, C)``: keep only the classes whose video-level probability reaches ``threshold``
    (CLASP, MIL and the weak pyramid/AVEL models pass their MIL-pooled scores; ``None`` keeps every
    class). Events come per class in time order; ``by_score`` sorts each video's events by descending
    score instead (stable, as CLASP and MIL have always returned them).
    """
    p_step = step_probs.detach().float().cpu().numpy()
    p_video = None if video_probs is None else video_probs.detach().float().cpu().numpy()
    lengths = mask.detach().bool().sum(dim=1).cpu().tolist()
    return [paper_video_events(p_step[b, :n], None if p_video is None else p_video[b], threshold, by_score)
            for b, n in enumerate(lengths)]


def paper_video_events(p_step: np.ndarray, p_video: np.ndarray | None, threshold: float = 0.5,
                       by_score: bool = False) -> list[Detection]:
    """:func:`detect_from_probs` for one video's valid steps ``(n, C)`` and its gate scores ``(C,)``
    (``None``: no gate), on NumPy arrays: what decoder selection (:mod:`models.run.decoder_selection`)
    calls on step scores it computed once."""
    n = p_step.shape[0]
    keep = np.arange(p_step.shape[1]) if p_video is None else np.nonzero(p_video >= threshold)[0]
    dets: list[Detection] = []
    if len(keep):
        for s, e, c, sc in probs_to_step_events(p_step[:, keep], threshold, n):
            dets.append((float(s), float(e), int(keep[c]), float(sc)))
    if by_score:
        dets.sort(key=lambda d: -d[3])
    return dets
