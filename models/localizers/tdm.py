"""The temporal dependency module (TDM) of UnAV-100, shared by CCNet and DAVE."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.localizers.layers import MaskedConv1d, TransformerBlock


class TemporalDependency(nn.Module):
    """Temporal Dependency Modelling (TDM) of UnAV-100 (Geng et al. 2023), applied to one level.

    The fused feature is expanded into one ``h``-dim feature per class ``(B, C, T, h)``; a temporal
    transformer relates the steps of each class (consecutive-segment dependency) and a co-occurrence
    transformer relates the classes at each step (concurrent events); their sum is squeezed back to
    ``d`` channels.  As in the reference, the output replaces the input (no outer residual).
    """

    def __init__(self, d: int, h: int, num_classes: int, heads: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.c, self.h = num_classes, h
        self.expand = MaskedConv1d(d, num_classes * h, 3, bias=False)
        self.temporal = TransformerBlock(h, heads, dropout, ffn_mult=1)
        self.cooccur = TransformerBlock(h, heads, dropout, ffn_mult=1)
        self.squeeze = MaskedConv1d(num_classes * h, d, 3, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        e = F.relu(self.expand(x, mask)).view(B, T, self.c, self.h)
        # temporal branch: sequences over T for each (video, class)
        et = e.permute(0, 2, 1, 3).reshape(B * self.c, T, self.h)
        mt = mask.repeat_interleave(self.c, dim=0)
        t_out = self.temporal(et, mt).view(B, self.c, T, self.h).permute(0, 2, 1, 3)
        # co-occurrence branch: sequences over classes for each (video, step)
        ec = e.reshape(B * T, self.c, self.h)
        mc = torch.ones(B * T, self.c, dtype=torch.bool, device=x.device)
        c_out = self.cooccur(ec, mc).view(B, T, self.c, self.h)
        out = (t_out + c_out) * mask[..., None, None].to(x.dtype)
        return self.squeeze(out.reshape(B, T, self.c * self.h), mask)
