"""Masked building blocks of the pyramid localizers (CCNet, DAVE): position tables, convolutions,
attention, feed-forward and downsampling over ``(B, T, D)`` features and a ``(B, T)`` mask.

Features are ``(B, T, D)``; convolutions transpose internally. Every layer zeroes the padded steps of
its output, so padded input values never reach valid outputs.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def sinusoid_encoding(length: int, dim: int) -> torch.Tensor:
    """Fixed sinusoidal position table ``(length, dim)`` (Vaswani et al.)."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    i = torch.arange(dim, dtype=torch.float32)[None, :]
    angle = pos / torch.pow(10000.0, 2 * torch.div(i, 2, rounding_mode="floor") / dim)
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(angle[:, 0::2])
    pe[:, 1::2] = torch.cos(angle[:, 1::2])
    return pe


def add_position(x: torch.Tensor, mask: torch.Tensor, pe: torch.Tensor) -> torch.Tensor:
    """Add a position table ``(L, D)`` to ``x (B, T, D)``, linearly re-sampled when ``T > L`` (as the
    UnAV reference does for over-length test videos); padded steps stay zero."""
    T = x.shape[1]
    if T > pe.shape[0]:
        pe = F.interpolate(pe.t()[None], size=T, mode="linear", align_corners=False)[0].t()
    return (x + pe[:T][None].to(x.dtype)) * mask[..., None].to(x.dtype)


class MaskedConv1d(nn.Module):
    """Conv1d over ``(B, T, D)`` whose padded outputs are zeroed (inputs must be zero there too)."""

    def __init__(self, d_in: int, d_out: int, kernel: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_in, d_out, kernel, padding=kernel // 2, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)
        return y * mask[..., None].to(y.dtype)


class ConvEmbedding(nn.Module):
    """``n`` masked conv (+ LayerNorm) + ReLU layers projecting one modality to ``d`` (UnAV/CCNet 'two
    conv layers'). ``with_ln``: a LayerNorm after each conv, as UnAV's ``embd_with_ln: True`` default
    (ttgeng233/UnAV ``libs/core/config.py``, ``libs/modeling/multimodal_backbones.py``)."""

    def __init__(self, d_in: int, d: int, n: int = 2, kernel: int = 3, with_ln: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList([MaskedConv1d(d_in if i == 0 else d, d, kernel, bias=not with_ln)
                                     for i in range(n)])
        self.norms = nn.ModuleList([nn.LayerNorm(d) if with_ln else nn.Identity() for _ in range(n)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mf = mask[..., None].to(x.dtype)
        x = x * mf
        for layer, norm in zip(self.layers, self.norms, strict=True):
            x = F.relu(norm(layer(x, mask))) * mf
        return x


class MaskedMHA(nn.Module):
    """Multi-head attention ``MHA(Q, K, V)`` ignoring padded keys; padded queries give zeros."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0, kdim: int | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True, kdim=kdim, vdim=kdim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, q_mask: torch.Tensor, kv_mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(q, kv, kv, key_padding_mask=~kv_mask, need_weights=False)
        return out * q_mask[..., None].to(out.dtype)


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d), nn.Linear(d, mult * d), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * d, d),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (x + self.net(x)) * mask[..., None].to(x.dtype)


class TransformerBlock(nn.Module):
    """Pre-LN transformer block: ``x + MHA(LN x, LN ctx)`` then ``+ FFN``.  ``ctx`` defaults to ``x``
    (self-attention); with another modality as ``ctx`` it is the cross-attention block of UnAV's CMPT."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0, ffn_mult: int = 4) -> None:
        super().__init__()
        self.ln_q = nn.LayerNorm(d)
        self.ln_kv = nn.LayerNorm(d)
        self.mha = MaskedMHA(d, heads, dropout)
        self.ffn = FeedForward(d, ffn_mult, dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, ctx: torch.Tensor | None = None,
        ctx_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        ctx = x if ctx is None else ctx
        ctx_mask = mask if ctx_mask is None else ctx_mask
        x = x + self.mha(self.ln_q(x), self.ln_kv(ctx), mask, ctx_mask)
        return self.ffn(x, mask)


def downsample_mask(mask: torch.Tensor, stride: int = 2) -> torch.Tensor:
    """Mask of a stride-``stride`` level: point ``i`` is valid when step ``i * stride`` is."""
    return mask[:, ::stride]


def maxpool_downsample(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal max-pool (kernel 3, stride 2, padding 1) of masked features; returns the new mask."""
    x = x * mask[..., None].to(x.dtype)
    y = F.max_pool1d(x.transpose(1, 2), kernel_size=3, stride=2, padding=1).transpose(1, 2)
    m = downsample_mask(mask)
    return y * m[..., None].to(y.dtype), m


class StridedConvDownsample(nn.Module):
    """Learned stride-2 downsampling (depthwise conv + LayerNorm), the query/key projection that
    ActionFormer/UnAV use inside their strided transformer blocks."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d, d, 3, stride=2, padding=1, groups=d, bias=False)
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x * mask[..., None].to(x.dtype)
        y = self.ln(self.conv(x.transpose(1, 2)).transpose(1, 2))
        m = downsample_mask(mask)
        return y * m[..., None].to(y.dtype), m
