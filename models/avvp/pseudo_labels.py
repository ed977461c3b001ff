"""EAR's temporal-aware pseudo-label generator (EAR paper §III-B, Eq. 3-9).

Stage 1 pre-trains it on dense audio-visual data (UnAV-100, CLAP audio + CLIP visual features) with
the AV ground truth plus the uni-modal labels from :mod:`models.avvp.label_migration`; stage 2 freezes
it and produces segment-level, modality-specific soft pseudo-labels on LLP.

Architecture (asymmetric temporal modelling):

- ``F~_a = TB_a(F_a)``, ``F~_v = TB_v(F_v)`` (Eq. 3): one Transformer block (MSA + FFN) per modality,
  working *in the frozen encoder's space* so that its output can still be compared with the frozen
  text embeddings of any class set (that is what lets a generator trained on UnAV-100's 100 classes
  label LLP's 25).
- Dynamic probability ``P^d_m = sigmoid(s^d_m cos(F~_m, T_m) + b^d_m)`` (Eq. 4) and static
  probability ``P^s_m = sigmoid(s^s_m cos(F_m, T_m) + b^s_m)`` (Eq. 5, single-segment inference on
  the raw features), with ``T_a`` the CLAP text embeddings of "This is the sound of <event>" and
  ``T_v`` the CLIP text embeddings of "A photo of <event>". ``s`` and ``b`` are learned scalars
  (the paper's Eq. 4-5 were lost; a sigmoid of a scaled cosine is how CLIP-style zero-shot scores
  become per-class probabilities, and scalars keep the generator class-agnostic).
- Audio-visual probabilities, asymmetric (Eq. 6-7): ``P^av_1 = P^d_v * P^s_a`` and
  ``P^av_2 = P^d_a * P^s_v``: each AV estimate is driven by one modality's *dynamic* probability
  and gated by the other's *static* one, so no cross-modal attention can leak one modality's
  semantics into the other's temporal features.

Loss (Eq. 8): ``BCE(P^av_1, Y_av) + BCE(P^av_2, Y_av) + lambda_a BCE(P^d_a, Y~_a) +
lambda_v BCE(P^d_v, Y~_v)`` with the migrated soft labels ``Y~``; ``lambda_a = 0.05``,
``lambda_v = 0.15`` (Table S-XIX's best row; its columns follow the audio-then-visual order of the
threshold table S-XVIII). Masked mean over valid steps and classes.

Stage 2 (Eq. 9): ``Y^_m = P^d_m * 1[P^d_m >= theta] * y_video`` (soft pseudo-labels: the
probability itself is the confidence, as in UWAV; ``theta = 0.5``). The uni-modal output of the
generator is its dynamic probability (the one trained with temporal context).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.avvp.ear import fit_minibatches
from models.avvp.label_migration import DEFAULT_TAU_AUDIO, DEFAULT_TAU_VISUAL, migrate_dataset


@dataclass
class GeneratorConfig:
    """CLAP (512) audio and CLIP ViT-L/14 (768) visual by default, as the UWAV/VALOR features."""

    audio_dim: int = 512
    visual_dim: int = 768
    n_heads: int = 4
    ffn_mult: int = 2
    dropout: float = 0.1
    lambda_a: float = 0.05
    lambda_v: float = 0.15
    tau_audio: float = DEFAULT_TAU_AUDIO
    tau_visual: float = DEFAULT_TAU_VISUAL
    threshold: float = 0.5  # Eq. 9 theta: value lost in the paper; source in models.avvp.ear.LOST_VALUES
    init_scale: float = 10.0
    lr: float = 1e-4
    min_lr: float = 1e-5
    weight_decay: float = 1e-2
    epochs: int = 80
    warmup_epochs: int = 10
    batch_size: int = 64


def _heads_for(dim: int, wanted: int) -> int:
    h = max(1, min(wanted, dim))
    while dim % h:
        h -= 1
    return h


class PseudoLabelGenerator(nn.Module):
    """Asymmetric temporal pseudo-label generator (see module docstring)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tb_a = nn.TransformerEncoderLayer(cfg.audio_dim, _heads_for(cfg.audio_dim, cfg.n_heads),
                                               cfg.ffn_mult * cfg.audio_dim, cfg.dropout, batch_first=True)
        self.tb_v = nn.TransformerEncoderLayer(cfg.visual_dim, _heads_for(cfg.visual_dim, cfg.n_heads),
                                               cfg.ffn_mult * cfg.visual_dim, cfg.dropout, batch_first=True)
        s = cfg.init_scale
        # order: dynamic audio, dynamic visual, static audio, static visual
        self.scale = nn.Parameter(torch.full((4,), float(s)))
        self.bias = nn.Parameter(torch.full((4,), -0.5 * float(s)))

    @staticmethod
    def _cos(x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) @ F.normalize(text, dim=-1).T

    def forward(self, audio: torch.Tensor, visual: torch.Tensor, text_a: torch.Tensor, text_v: torch.Tensor,
                mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """audio ``(B, T, Da)``, visual ``(B, T, Dv)``, text ``(C, D*)`` -> probabilities ``(B, T, C)``."""
        pad = None if mask is None else ~mask.bool()
        da = self.tb_a(audio.float(), src_key_padding_mask=pad)
        dv = self.tb_v(visual.float(), src_key_padding_mask=pad)
        cos = [self._cos(da, text_a), self._cos(dv, text_v), self._cos(audio.float(), text_a),
               self._cos(visual.float(), text_v)]
        pd_a, pd_v, ps_a, ps_v = (torch.sigmoid(self.scale[i] * cos[i] + self.bias[i]) for i in range(4))
        return {"dyn_a": pd_a, "dyn_v": pd_v, "stat_a": ps_a, "stat_v": ps_v,
                "av_1": pd_v * ps_a, "av_2": pd_a * ps_v}

    def loss(self, out: dict[str, torch.Tensor], y_av: torch.Tensor, y_a: torch.Tensor, y_v: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 8, masked mean over valid steps."""
        def bce(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            e = F.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), y.float(), reduction="none").mean(-1)
            if mask is None:
                return e.mean()
            m = mask.float()
            return (e * m).sum() / m.sum().clamp_min(1.0)

        cfg = self.cfg
        return (bce(out["av_1"], y_av) + bce(out["av_2"], y_av)
                + cfg.lambda_a * bce(out["dyn_a"], y_a) + cfg.lambda_v * bce(out["dyn_v"], y_v))


def pretrain_generator(
    gen: PseudoLabelGenerator,
    audio: np.ndarray,
    visual: np.ndarray,
    av_labels: np.ndarray,
    text_a: np.ndarray,
    text_v: np.ndarray,
    mask: np.ndarray | None = None,
    migrate: bool = True,
    seed: int = 0,
    log: list[dict[str, float]] | None = None,
    device: str | torch.device = "cpu",
) -> PseudoLabelGenerator:
    """Stage 1: label migration on the dense data, then AdamW + warm-up/cosine training (Eq. 8).

    audio ``(N, T, Da)``, visual ``(N, T, Dv)``, av_labels ``(N, T, C)`` dense AV ground truth,
    text ``(C, D*)``. ``migrate=False`` trains with AV labels only (the "w/o LM" ablation).
    """
    cfg = gen.cfg
    torch.manual_seed(seed)
    n, t, _ = av_labels.shape
    if mask is None:
        mask = np.ones((n, t), dtype=bool)
    if migrate:
        y_a, y_v = migrate_dataset(audio, visual, av_labels, mask, cfg.tau_audio, cfg.tau_visual,
                                   batch_videos=cfg.batch_size)
    else:
        y_a = y_v = av_labels.astype(np.float32)
    tens = [torch.as_tensor(np.asarray(x), dtype=torch.float32) for x in (audio, visual, av_labels, y_a, y_v)]
    mask_t = torch.as_tensor(mask, dtype=torch.bool)
    ta, tv = (torch.as_tensor(x, dtype=torch.float32).to(device) for x in (text_a, text_v))
    gen.to(device)

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        a, v, yav, ya, yv = (x[idx].to(device) for x in tens)
        m = mask_t[idx].to(device)
        return gen.loss(gen(a, v, ta, tv, m), yav, ya, yv, m)

    fit_minibatches(gen, n, cfg, batch_loss, seed=seed, log=log)
    return gen


@torch.no_grad()
def generate_pseudo_labels(
    gen: PseudoLabelGenerator,
    audio: np.ndarray,
    visual: np.ndarray,
    video_labels: np.ndarray,
    text_a: np.ndarray,
    text_v: np.ndarray,
    mask: np.ndarray | None = None,
    threshold: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: frozen generator -> soft pseudo-labels ``(N, T, C)`` for audio and visual (Eq. 9)."""
    thr = gen.cfg.threshold if threshold is None else threshold
    gen.eval()
    gen.to(device)
    ta, tv = (torch.as_tensor(x, dtype=torch.float32).to(device) for x in (text_a, text_v))
    n = audio.shape[0]
    outs_a, outs_v = [], []
    for s in range(0, n, batch_size):
        a = torch.as_tensor(audio[s:s + batch_size], dtype=torch.float32).to(device)
        v = torch.as_tensor(visual[s:s + batch_size], dtype=torch.float32).to(device)
        m = None if mask is None else torch.as_tensor(mask[s:s + batch_size], dtype=torch.bool).to(device)
        y = torch.as_tensor(video_labels[s:s + batch_size], dtype=torch.float32).to(device)[:, None, :]
        out = gen(a, v, ta, tv, m)
        for key, acc in (("dyn_a", outs_a), ("dyn_v", outs_v)):
            p = out[key]
            pl = p * (p >= thr).float() * y
            if m is not None:
                pl = pl * m[:, :, None].float()
            acc.append(pl.cpu().numpy())
    return np.concatenate(outs_a).astype(np.float32), np.concatenate(outs_v).astype(np.float32)
