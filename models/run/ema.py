"""An exponential moving average of a model's weights: what the pyramid recipe validates, selects and
writes to ``best.pt`` (UnAV/ActionFormer's ``ModelEma``: ttgeng233/UnAV ``train.py`` +
``libs/utils/train_utils.py``)."""

from __future__ import annotations

import copy
from typing import Any

import torch


class ModelEma:
    """EMA of every floating-point entry of a model's ``state_dict`` (integer buffers are copied), updated
    after every optimizer step.

    The decay is capped by ``(1 + n) / (10 + n)`` after ``n`` updates (timm's EMA warm-up), so short runs
    do not evaluate near-initial weights; at UnAV's ~15k steps the cap is above 0.999 after 9k steps and
    the final averages coincide with the uncapped reference.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        src = model.state_dict()
        for k, v in self.module.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(src[k].detach(), alpha=1.0 - d)
            else:
                v.copy_(src[k])

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "model": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.module.load_state_dict(state["model"])
