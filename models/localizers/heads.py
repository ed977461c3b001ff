"""ActionFormer-style point heads shared over the pyramid levels of CCNet and DAVE."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.localizers.layers import MaskedConv1d


class Scale(nn.Module):
    """A learnable scalar per pyramid level (ActionFormer) so one shared head can regress distances of
    different magnitude on every level."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class PointHeads(nn.Module):
    """Classification and (class-aware) regression heads shared over pyramid levels.

    Each is ``num_layers`` masked 1-D convolutions (ReLU between, CCNet: three each).  The class head
    ends in logits (sigmoid at use) with the RetinaNet prior-probability bias; the regression head ends
    in ``2*C`` channels (start/end distance per class, class-aware as UnAV/CCNet), a per-level
    :class:`Scale` and a ReLU.  ``with_reg=False`` builds the class head only (weak supervision).
    The two output convolutions run in float32 even under AMP, so scores are not bf16-quantised.
    """

    def __init__(
        self, d_in: int, d_head: int, num_classes: int, num_levels: int, num_layers: int = 3,
        kernel: int = 3, prior_prob: float = 0.01, with_reg: bool = True, with_ln: bool = False,
    ) -> None:
        super().__init__()
        self.c = num_classes
        n_hidden = num_layers - 1
        self.cls_convs = nn.ModuleList(
            [MaskedConv1d(d_in if i == 0 else d_head, d_head, kernel, bias=not with_ln) for i in range(n_hidden)]
        )
        # UnAV/ActionFormer ``head_with_ln: True``: a LayerNorm after each hidden head conv
        self.cls_norms = nn.ModuleList([nn.LayerNorm(d_head) if with_ln else nn.Identity() for _ in range(n_hidden)])
        self.cls_out = MaskedConv1d(d_head if num_layers > 1 else d_in, num_classes, kernel)
        nn.init.constant_(self.cls_out.conv.bias, -math.log((1 - prior_prob) / prior_prob))
        self.with_reg = with_reg
        if with_reg:
            self.reg_convs = nn.ModuleList(
                [MaskedConv1d(d_in if i == 0 else d_head, d_head, kernel, bias=not with_ln) for i in range(n_hidden)]
            )
            self.reg_norms = nn.ModuleList(
                [nn.LayerNorm(d_head) if with_ln else nn.Identity() for _ in range(n_hidden)])
            self.reg_out = MaskedConv1d(d_head if num_layers > 1 else d_in, 2 * num_classes, kernel)
            self.scales = nn.ModuleList([Scale() for _ in range(num_levels)])

    def forward(self, feats: list[torch.Tensor], masks: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        cls_logits, offsets = [], []
        for lvl, (x, m) in enumerate(zip(feats, masks, strict=True)):
            mf = m[..., None].to(x.dtype)
            h = x
            for conv, norm in zip(self.cls_convs, self.cls_norms, strict=True):
                h = F.relu(norm(conv(h, m))) * mf
            with torch.autocast(device_type=h.device.type, enabled=False):  # output layers in fp32 under AMP
                cls_logits.append(self.cls_out(h.float(), m))
            if self.with_reg:
                h = x
                for conv, norm in zip(self.reg_convs, self.reg_norms, strict=True):
                    h = F.relu(norm(conv(h, m))) * mf
                with torch.autocast(device_type=h.device.type, enabled=False):
                    o = F.relu(self.scales[lvl](self.reg_out(h.float(), m)))
                offsets.append(o.view(o.shape[0], o.shape[1], self.c, 2))
        out: dict[str, list[torch.Tensor]] = {"cls_logits": cls_logits}
        if self.with_reg:
            out["offsets"] = offsets
        return out
