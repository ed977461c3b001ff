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
        # The expanded tensor is (B, T, C, h): at 100 classes and h = 128, 12.5x the level's channels at UnAV's
        # width 512, 200x at width 32; it and the padded steps of a batch padded to t_max (~40 % of it) were most of a
        # pyramid epoch (issue #27). So the convolutions stop one step after the longest video (that step
        # keeps the kernel's right neighbour of the last valid step) and both transformers run per video
        # on its valid steps only. Padded keys are masked and padded outputs zeroed in the padded form
        # too, so the values are the same (tests/test_dave_avel.py checks outputs and gradients).
        B, T_in, _ = x.shape
        last = int((mask * torch.arange(1, T_in + 1, device=mask.device)).amax()) if mask.numel() else 0
        T = min(T_in, last + 1)  # one step past the last valid one
        x, mask = x[:, :T], mask[:, :T]
        e = F.relu(self.expand(x, mask)).view(B, T, self.c, self.h)
        outs = []
        for e_b, m_b in zip(e.unbind(0), mask, strict=True):  # unbind: one gradient buffer, not one per video
            idx = m_b.nonzero().squeeze(1)
            n = int(idx.numel())
            if n == 0:
                outs.append(e.new_zeros(T, self.c, self.h))
                continue
            eb = e_b.index_select(0, idx)  # (n, C, h)
            # temporal branch: one sequence over the valid steps per class
            t_out = self.temporal(eb.transpose(0, 1), mask.new_ones(self.c, n)).transpose(0, 1)
            # co-occurrence branch: one sequence over the classes per valid step
            c_out = self.cooccur(eb, mask.new_ones(n, self.c))
            outs.append(e.new_zeros(T, self.c, self.h).index_copy(0, idx, t_out + c_out))
        out = torch.stack(outs) if outs else e
        return F.pad(self.squeeze(out.reshape(B, T, self.c * self.h), mask), (0, 0, 0, T_in - T))
