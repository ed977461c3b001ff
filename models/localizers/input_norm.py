"""Optional per-dimension standardisation of the input features, fitted on the training split.

Why: the reference localizers read the released features as they are (``input_norm: none``). Two
measurements made the weak models' default ``auto`` (= ``standardize`` for weak supervision, ``none`` for
full supervision, which keeps the references' recipe):

* Features from *random-initialised* extractors (the offline demo) have a large common offset and tiny
  per-dimension spread — e.g. He-initialised VGGish gives mean 1.75 / std 0.45 per dimension — so the
  informative differences drown and a small model trained on ten clips barely moves.
* At UnAV-100's structure (100 classes, about three present per video; #27, docs/recipes.md "Weak models
  at UnAV-100's structure"), the released I3D/VGGish features are post-ReLU averages: non-negative, with a
  common offset. The weak models' first layer is a ReLU projection of a 2048-D input; Adam's coherent
  updates over that fan-in drove most of its units dead within three epochs (19.5 % of MIL's visual units
  alive; 8.6 % once the heads start at the label prior), and every loss term then sat at the label prior
  for epochs (CLASP's audio-visual term for 17 of 40 epochs at the paper's lr). Standardised inputs keep
  every unit alive (100 %) and the same models leave the prior from the first epochs.

``input_norm: standardize`` subtracts each dimension's training mean and divides by its training
standard deviation (valid steps only, padding stays zero). The statistics are buffers of an
:class:`InputStandardizer` attached to the model, so they travel in every checkpoint and evaluation /
prediction apply exactly the training transform with no extra file.

It is applied by a forward pre-hook on the model (``batch["audio"]``, ``batch["visual"]``), so no model
class has to know about it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

INPUT_NORMS = ("auto", "none", "standardize")
_STREAMS = ("audio", "visual")


class InputStandardizer(nn.Module):
    """Buffers ``mean_<stream>``, ``std_<stream>`` and ``fitted``; see the module docstring."""

    def __init__(self, audio_dim: int, visual_dim: int) -> None:
        super().__init__()
        for name, d in (("audio", audio_dim), ("visual", visual_dim)):
            self.register_buffer(f"mean_{name}", torch.zeros(d))
            self.register_buffer(f"std_{name}", torch.ones(d))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, items: Iterable[dict[str, Any]], eps: float = 1e-5) -> None:
        """Mean/std per dimension over the valid steps of ``items`` (float64 running sums)."""
        sums: dict[str, list[torch.Tensor | int]] = {}
        for it in items:
            m = it["mask"].bool()
            for s in _STREAMS:
                x = it[s][m].double()
                acc = sums.setdefault(s, [torch.zeros(x.shape[-1], dtype=torch.float64),
                                          torch.zeros(x.shape[-1], dtype=torch.float64), 0])
                acc[0] += x.sum(0)
                acc[1] += (x * x).sum(0)
                acc[2] += x.shape[0]
        if not sums or sums["audio"][2] == 0:
            raise ValueError("input_norm='standardize' needs at least one valid training step to fit on")
        for s, (tot, sq, n) in sums.items():
            mean = tot / n
            var = (sq / n - mean * mean).clamp_min(0.0)
            getattr(self, f"mean_{s}").copy_(mean.float())
            getattr(self, f"std_{s}").copy_(var.sqrt().float() + eps)
        self.fitted.fill_(True)

    def apply(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not bool(self.fitted):
            raise RuntimeError("input_norm='standardize' but the statistics were never fitted "
                               "(models.run.train fits them on the training split)")
        out = dict(batch)
        keep = batch["mask"].unsqueeze(-1).to(batch["audio"].dtype)
        for s in _STREAMS:
            x = batch[s]
            out[s] = (x - getattr(self, f"mean_{s}")) / getattr(self, f"std_{s}") * keep
        return out


def _pre_hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    if args and isinstance(args[0], dict) and all(s in args[0] for s in _STREAMS):
        return (module.input_standardizer.apply(args[0]), *args[1:])
    return None


def resolve_input_norm(kind: str, supervision: str) -> str:
    """``auto`` is ``standardize`` for a weakly supervised model (and MIL's per-step ceiling, ``step``, so that
    it is the same network) and ``none`` for a fully supervised one."""
    if kind not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {kind!r}")
    if kind == "auto":
        return "standardize" if supervision in ("weak", "step") else "none"
    return kind


def attach_input_norm(model: nn.Module, cfg: Any) -> nn.Module:
    """Attach the standardiser named by ``cfg.input_norm`` (no-op for ``'none'``); returns ``model``."""
    kind = resolve_input_norm(getattr(cfg, "input_norm", "none"), getattr(model, "supervision", "full"))
    if kind == "standardize":
        model.input_standardizer = InputStandardizer(cfg.audio_dim, cfg.visual_dim)
        model.register_forward_pre_hook(_pre_hook)
    return model


def fit_input_norm(model: nn.Module, dataset: Any) -> bool:
    """Fit the model's standardiser (if any) on every item of ``dataset``; True when it did."""
    std = getattr(model, "input_standardizer", None)
    if std is None:
        return False
    std.fit(dataset[i] for i in range(len(dataset)))
    return True


__all__ = ["INPUT_NORMS", "InputStandardizer", "attach_input_norm", "fit_input_norm", "resolve_input_norm"]
