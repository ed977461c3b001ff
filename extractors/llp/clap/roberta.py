"""RoBERTa, CLAP's text tower (roberta-base, as Hugging Face's ``RobertaModel``; ``pooler_output`` = tanh dense on
``<s>``). Parameter names follow the checkpoint's ``text_branch.*`` keys."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from extractors.llp.clap.tokenizer import PAD_ID


@dataclass(frozen=True)
class RobertaConfig:
    """roberta-base (the ``text_branch`` of every laion_clap 630k checkpoint)."""

    vocab_size: int = 50265
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    max_positions: int = 514
    type_vocab: int = 1
    eps: float = 1e-5


class _Embeddings(nn.Module):
    def __init__(self, c: RobertaConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden, padding_idx=PAD_ID)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden, padding_idx=PAD_ID)
        self.token_type_embeddings = nn.Embedding(c.type_vocab, c.hidden)
        self.LayerNorm = nn.LayerNorm(c.hidden, eps=c.eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != PAD_ID).long()
        pos = torch.cumsum(keep, 1) * keep + PAD_ID  # RoBERTa positions start after the padding index
        x = self.word_embeddings(ids) + self.position_embeddings(pos) + self.token_type_embeddings(torch.zeros_like(ids))
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, c: RobertaConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.value = nn.Linear(c.hidden, c.hidden)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        attn = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads) + bias
        return (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d)


class _DenseNorm(nn.Module):
    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, c: RobertaConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden, c.hidden, c.eps)


class _Dense(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)


class _Layer(nn.Module):
    def __init__(self, c: RobertaConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Dense(c.hidden, c.intermediate)
        self.output = _DenseNorm(c.intermediate, c.hidden, c.eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention.output(self.attention.self(x, bias), x)
        return self.output(F.gelu(self.intermediate.dense(x)), x)


class _Encoder(nn.Module):
    def __init__(self, c: RobertaConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList([_Layer(c) for _ in range(c.layers)])


class RobertaEncoder(nn.Module):
    """Post-LN BERT encoder with RoBERTa embeddings and the tanh pooler (``pooler_output``)."""

    def __init__(self, c: RobertaConfig | None = None) -> None:
        super().__init__()
        c = c or RobertaConfig()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        self.pooler = _Dense(c.hidden, c.hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embeddings(input_ids)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return torch.tanh(self.pooler.dense(x[:, 0]))
