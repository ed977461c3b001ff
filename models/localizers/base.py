"""The contract every localizer in ``models`` follows, so one training loop, one evaluation
entry and one predict entry serve them all (docs/recipes.md, "Localizers").

Batch (a plain dict produced by ``models.data.dataset``):

- ``audio``  float32 ``(B, T, Da)``   (128 for VGGish)
- ``visual`` float32 ``(B, T, Dv)``   (2048 for I3D RGB|flow, 512 for R(2+1)D)
- ``mask``   bool    ``(B, T)``       True on valid (non-padded) steps
- ``labels`` float32 ``(B, C)``       video-level multi-hot labels (weak supervision)
- ``segments`` list of B float32 tensors ``(N_i, 3)``: ``[start_step, end_step, class]``
  in *feature-step* units (continuous; end exclusive), for fully supervised models
- ``video_ids`` list[str]; ``durations`` float32 ``(B,)`` seconds

A model returns a dict from ``forward(batch)``; ``loss(out, batch)`` returns a scalar tensor
(and may put components in ``out['loss_terms']``); ``detect(out, batch)`` returns, per video,
a list of ``(start_step, end_step, class_index, score)`` tuples in feature-step units, which
``models.localizers.postprocess`` converts to seconds with the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch

Detection = tuple[float, float, int, float]


class Localizer(Protocol):
    supervision: str  # "weak" or "full"

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]: ...

    def loss(self, out: dict[str, Any], batch: dict[str, Any]) -> torch.Tensor: ...

    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[Detection]]: ...


@dataclass
class ModelConfig:
    """Fields every model config shares; each model subclasses it with its own defaults."""

    num_classes: int = 100
    audio_dim: int = 128
    visual_dim: int = 2048
    t_max: int = 224
    # 'auto' (standardize when weakly supervised, none when fully) | 'none' (the references) |
    # 'standardize': per-dimension z-score fitted on the training split (models.localizers.input_norm says
    # why weak models need it)
    input_norm: str = "auto"
    # weak models: 'label' starts each class head at its class's training frequency, 'none' at the layer's
    # own init (models.localizers.class_prior; full supervision keeps its own prior)
    class_prior: str = "label"


def step_targets(segments: list[torch.Tensor], T: int, num_classes: int, device: torch.device | str = "cpu"
                 ) -> torch.Tensor:
    """Per-step multi-hot targets (AVEL's full supervision, MIL's ``targets: step``) ``(B, T, C)``: step ``t`` is positive for ``c`` if ``start <= t < end``."""
    out = torch.zeros(len(segments), T, num_classes, device=device)
    t = torch.arange(T, device=device, dtype=torch.float32)
    for b, seg in enumerate(segments):
        seg = torch.as_tensor(seg, dtype=torch.float32, device=device).reshape(-1, 3)
        for s, e, c in seg.tolist():
            out[b, (t >= s) & (t < e), int(c)] = 1.0
    return out
