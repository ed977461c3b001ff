"""LAION-CLAP audio and text encoders (HTSAT + RoBERTa), re-implemented without the ``laion_clap`` package.

Why a port: ``laion_clap`` pins ``numpy==1.26.4`` and pulls wandb/librosa/torchlibrosa/transformers, and
``transformers`` 4.x would in turn downgrade this environment's ``huggingface_hub`` 2.x (open_clip's);
so the architecture is written here from the LAION-CLAP paper (Wu et al., ICASSP 2023) and the layout of
its reference code (``src/laion_clap/clap_module/{htsat,model,feature_fusion}.py``, ``hook.py``,
``training/data.py``). Module and parameter names follow that code exactly, so an official checkpoint
loads with ``load_state_dict(strict=True)`` after :func:`convert_laion_clap` (drop the DataParallel
``module.`` prefix and the ``text_branch.embeddings.position_ids`` buffer that transformers >= 4.31 no
longer stores, exactly what laion_clap's own ``load_state_dict`` does).

Checkpoint (default ``clap_630k_fusion`` = ``630k-fusion-best.pt``): VALOR's ``utils/clap_preprocess.py``
(the recipe whose CLIP/CLAP features UWAV and EAR reuse) builds ``laion_clap.CLAP_Module(enable_fusion=True)``
(HTSAT-tiny, RoBERTa, ``fusion_type='aff_2d'``) and calls ``load_ckpt(model_id=2)`` -> ``630k-fusion-best.pt``.
The non-fusion checkpoints (``630k-best.pt``, ``630k-audioset-best.pt``) are registered too and load into
the same module built with ``enable_fusion=False``.

Audio recipe (VALOR's ``get_audio_embedding``, per 1 s segment):

1. 48 kHz mono: decoded from the *source video* with ffmpeg (argument list), all channels, soxr resampler
   (librosa's default ``soxr_hq`` is soxr too), channel mean in numpy (= librosa's ``to_mono``). The
   pipeline's 16 kHz wav is not used: upsampling it would leave nothing above 8 kHz while CLAP's mel bank
   reaches 14 kHz.
2. Segments: VALOR splits the clip into ``S`` parts, ``start_i = round(linspace(0, N, S + 1))[i]``,
   length ``N // S`` (``S = 10`` for a 10 s LLP clip: exactly seconds ``[k, k+1)``). Here ``S`` defaults to
   the 8 fps visual count (``min(10, round(8 * N / sr) // 8)``) and ``N`` to the first ``S`` seconds, so
   audio and visual features have the same ``T``; for a (nearly) 10 s clip this is VALOR's split.
3. Each segment on its own, as laion_clap's ``get_audio_embedding_from_data``: int16 round trip
   (``clip(-1, 1) * 32767 -> int16 -> / 32767``), ``repeatpad`` to 480,000 samples (tile ``480000 // n``
   times, then zero-pad), log-mel, HTSAT ``embedding`` (mean of the last stage's tokens),
   ``audio_projection``, L2 normalisation -> ``(S, 512)``.
4. Log-mel front end: the fusion model receives ``mel_fusion`` from ``training/data.py:get_mel``
   (torchaudio ``MelSpectrogram``: HTK mel scale, ``norm=None``, power 2, then ``AmplitudeToDB``); the
   non-fusion models use their in-network torchlibrosa front end (``spectrogram_extractor``, slaney
   ``logmel_extractor.melW``). Both: 1024-point periodic-Hann STFT, hop 480, centre reflect padding,
   64 bins 50-14,000 Hz, ``10 log10(max(x, 1e-10))``. For clips <= 10 s the fusion model's local branch
   (``mel_conv2d``/``fusion_model``) is never used (``longer`` is False), as in VALOR.

Inputs longer than 10 s (laion_clap ``training/data.py:get_audio_features`` with ``data_truncating='fusion'``,
as ``hook.py:get_audio_embedding_from_data`` calls it; :meth:`HTSAT.prepare`, :meth:`CLAP.audio_embedding_from_data`):
a fusion checkpoint gets ``mel_fusion`` = [whole mel shrunk to 1001 frames, three random 1001-frame crops, one
from each third] and ``longer=True``, and its patch embedding fuses the crops into the global patches
(``aff_2d``: ``mel_conv2d`` + :class:`AFF`, laion_clap ``htsat.py:PatchEmbed``); a non-fusion checkpoint reads a
random 10 s crop of the waveform. The random draws come from a caller-seeded ``numpy`` generator (laion_clap
uses numpy's global state). The LLP recipes never feed CLAP more than 10 s (1 s segments; 10 s windows).

Frame-level feature maps (VALOR ``utils/clap_preprocess.py:get_audio_feature_maps`` + ``utils/clap_utils.py``,
the audio features of VALOR++/UWAV's AVVP model): the whole 10 s clip in one pass, index-resampled to
exactly 480,000 samples, ``feat_maps`` ``(64, 768)`` = the last Swin stage's normed tokens as
``(768, 2 frequency bins, 32 time steps)`` (token ``f * 32 + t``; ``t`` covers ``[t, t + 1) * 0.3125`` s), not
projected, not normalised; their mean is the pooled ``embedding`` that ``audio_projection`` maps to the joint
space. :func:`clap_feature_maps` stores them per second, ``(S, 768)``, by VALOR's own model-side resampling
(:func:`maps_to_seconds`), which is exact for any linear input layer.

Checked (random weights, tests/test_clap.py; the last test needs ``transformers`` and is skipped here):
against Hugging Face's independent ports in transformers 4.57.6, audio embeddings of ``ClapModel``
(fused HTSAT-tiny, weights renamed) agree to ~1e-7, ``ClapFeatureExtractor`` log-mels (fusion/HTK and
slaney, ``frequency_min=50`` as laion_clap; HF's default is 0) to ~5e-4 dB, ``RobertaModel``'s
``pooler_output`` to ~1e-6, and the slow ``RobertaTokenizer`` ids are identical. Not checked here: the
real checkpoint files (no network), so numbers against laion_clap's released embeddings are unverified.
The fusion branch is checked against a hand computation of the ``aff_2d`` patch embedding (patches as matrix
products, AFF in eval mode) and the chunk choice against the whole mel; the optional test also compares it
with HF's ``is_longer`` path, which has not been run here (no ``transformers``).

Text (VALOR ``get_text_embedding``): RoBERTa byte-level BPE (``vocab.json`` + ``merges.txt`` of
``roberta-base``), ``<s> ... </s>`` padded to 77 tokens with ``<pad>`` (id 1) and an attention mask;
``pooler_output`` (tanh dense on ``<s>``) -> ``text_projection`` -> L2 normalisation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.llp.prompts import AUDIO_PROMPT, format_prompts
from extractors.weights import DEFAULT_ROOT, build_model_weights, get_spec, verify, weights_path

SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000
MAX_TEXT_LEN = 77
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 1, 0, 2, 3
BYTE_FALLBACK_OFFSET = 4  # byte b -> id 4 + b (after <s>, <pad>, </s>, <unk>)
DEFAULT_CHECKPOINT = "clap_630k_fusion"
TOKENIZER_FILES = ("roberta_base_vocab", "roberta_base_merges")
WeightsMode = Literal["pretrained", "random"]


@dataclass(frozen=True)
class HTSATConfig:
    """HTSAT hyper-parameters (laion_clap ``create_htsat_model`` + ``model_configs/HTSAT-*.json``)."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (4, 8, 16, 32)
    window_size: int = 8
    spec_size: int = 256
    patch_size: int = 4
    mel_bins: int = 64
    n_fft: int = 1024
    hop: int = 480
    sample_rate: int = SAMPLE_RATE
    fmin: float = 50.0
    fmax: float = 14000.0
    class_num: int = 527
    mlp_ratio: float = 4.0

    @property
    def num_features(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)


HTSAT_CONFIGS = {
    "HTSAT-tiny": HTSATConfig(),
    "HTSAT-base": HTSATConfig(embed_dim=128, depths=(2, 2, 12, 2)),
}
# registry name -> (audio model, enable_fusion); laion_clap hook.py download_names / model_id 0..3
CLAP_CHECKPOINTS: dict[str, tuple[str, bool]] = {
    "clap_630k": ("HTSAT-tiny", False),
    "clap_630k_audioset": ("HTSAT-tiny", False),
    "clap_630k_fusion": ("HTSAT-tiny", True),
    "clap_630k_audioset_fusion": ("HTSAT-tiny", True),
}


# ============================================================================ DSP (fixed weights)
def hann_periodic(n: int) -> np.ndarray:
    """``scipy.signal.get_window('hann', n, fftbins=True)`` = ``torch.hann_window(n)``."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed one-sided DFT rows ``(n_fft // 2 + 1, n_fft)``: real = w cos, imag = -w sin (torchlibrosa)."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    ang = 2.0 * np.pi * ((k * n) % n_fft) / n_fft
    w = hann_periodic(n_fft)[None, :]
    return w * np.cos(ang), -w * np.sin(ang)


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _triangles(edges_hz: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """``(n_freqs, n_mels)`` triangular weights with feet/peaks at ``edges_hz`` (n_mels + 2 points)."""
    lo, mid, hi = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T


def slaney_mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa ``filters.mel`` defaults (Slaney scale, area normalised), transposed: ``(n_fft//2+1, n_mels)``."""
    freqs = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz_slaney(np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    return _triangles(edges, freqs) * (2.0 / (edges[2:] - edges[:-2]))[None, :]


def htk_mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """torchaudio ``melscale_fbanks(mel_scale='htk', norm=None)``: ``(n_fft//2+1, n_mels)``."""
    freqs = np.linspace(0.0, sr // 2, n_fft // 2 + 1)
    mels = np.linspace(2595.0 * np.log10(1 + fmin / 700.0), 2595.0 * np.log10(1 + fmax / 700.0), n_mels + 2)
    return _triangles(700.0 * (10.0 ** (mels / 2595.0) - 1.0), freqs)


class _FixedConv(nn.Module):
    """A frozen STFT kernel stored as ``weight`` (the name of torchlibrosa's Conv1d parameter)."""

    def __init__(self, n_fft: int, part: int) -> None:
        super().__init__()
        self.n_fft, self.part = n_fft, part
        self.weight = nn.Parameter(torch.empty(n_fft // 2 + 1, 1, n_fft), requires_grad=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:  # random-weights mode restores the DFT, it is not learned
        with torch.no_grad():
            self.weight.copy_(torch.from_numpy(dft_kernels(self.n_fft)[self.part]).float()[:, None, :])


class _STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.conv_real = _FixedConv(n_fft, 0)
        self.conv_imag = _FixedConv(n_fft, 1)


class _Spectrogram(nn.Module):
    """torchlibrosa ``Spectrogram``: centre reflect pad, conv-DFT, power 2 -> ``(B, 1, T, n_fft//2+1)``."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.stft.n_fft // 2
        x = F.pad(x[:, None, :], (pad, pad), mode="reflect")
        re = F.conv1d(x, self.stft.conv_real.weight, stride=self.stft.hop)
        im = F.conv1d(x, self.stft.conv_imag.weight, stride=self.stft.hop)
        return (re**2 + im**2).transpose(1, 2)[:, None]


class _LogmelFilterBank(nn.Module):
    """torchlibrosa ``LogmelFilterBank`` (slaney ``melW``, ref 1, amin 1e-10, no top_db)."""

    def __init__(self, cfg: HTSATConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.melW = nn.Parameter(torch.empty(cfg.n_fft // 2 + 1, cfg.mel_bins), requires_grad=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        c = self.cfg
        with torch.no_grad():
            self.melW.copy_(torch.from_numpy(slaney_mel_filterbank(c.sample_rate, c.n_fft, c.mel_bins,
                                                                   c.fmin, c.fmax)).float())


def power_to_db(x: torch.Tensor, amin: float = 1e-10) -> torch.Tensor:
    """``10 log10(max(x, amin))`` (ref 1.0, no top_db: torchlibrosa and torchaudio ``AmplitudeToDB``)."""
    return 10.0 * torch.log10(torch.clamp(x, min=amin))


# ============================================================================ HTSAT (Swin on log-mel)
def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * H/w * W/w, w, w, C)``, windows in row-major order."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w, w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`."""
    b = windows.shape[0] // ((h // w) * (wd // w))
    x = windows.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, wd, -1)


def relative_position_index(w: int) -> torch.Tensor:
    """``(w*w, w*w)`` index into the ``(2w-1)^2`` bias table: ``(dy + w - 1) * (2w - 1) + (dx + w - 1)``."""
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + (w - 1)
    dx = xs[:, None] - xs[None, :] + (w - 1)
    return dy * (2 * w - 1) + dx


def shifted_window_mask(h: int, wd: int, w: int, shift: int) -> torch.Tensor:
    """``(nW, w*w, w*w)`` additive mask (0 / -100) keeping SW-MSA inside the regions the cyclic shift joined."""
    label = torch.zeros(h, wd)
    cuts_h = ((0, h - w), (h - w, h - shift), (h - shift, h))
    cuts_w = ((0, wd - w), (wd - w, wd - shift), (wd - shift, wd))
    n = 0
    for a, b in cuts_h:
        for c, d in cuts_w:
            label[a:b, c:d] = n
            n += 1
    lw = window_partition(label[None, :, :, None], w).reshape(-1, w * w)
    diff = lw[:, None, :] - lw[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class WindowAttention(nn.Module):
    """W-MSA with a learned relative position bias (Swin)."""

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.dim, self.window, self.heads = dim, window, heads
        self.scale = (dim // heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.reshape(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        x = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(x)


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (S)W-MSA + MLP; no shift when the map is not larger than the window (HTSAT's last stage)."""

    def __init__(self, dim: int, res: tuple[int, int], heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.res = res
        if min(res) <= window:
            window, shift = min(res), 0
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", shifted_window_mask(*res, window, shift) if shift > 0 else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.res, x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window).view(-1, self.window**2, c), self.attn_mask)
        y = window_reverse(y.view(-1, self.window, self.window, c), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y.reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood concat ``[x00, x10, x01, x11]`` -> LayerNorm -> Linear(4C, 2C)."""

    def __init__(self, res: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.res = res
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (b, _, c) = self.res, x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class BasicLayer(nn.Module):
    def __init__(self, dim: int, res: tuple[int, int], depth: int, heads: int, window: int, mlp_ratio: float,
                 downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([SwinBlock(dim, res, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
                                     for i in range(depth)])
        self.downsample = PatchMerging(res, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class AFF(nn.Module):
    """Attentional feature fusion (2-D), present in fusion checkpoints; only used for inputs > 10 s."""

    def __init__(self, channels: int, r: int = 4) -> None:
        super().__init__()
        mid = channels // r

        def branch(pool: bool) -> list[nn.Module]:
            return [*([nn.AdaptiveAvgPool2d(1)] if pool else []), nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid),
                    nn.ReLU(inplace=True), nn.Conv2d(mid, channels, 1), nn.BatchNorm2d(channels)]

        self.local_att = nn.Sequential(*branch(False))
        self.global_att = nn.Sequential(*branch(True))

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        xa = x + residual
        w = torch.sigmoid(self.local_att(xa) + self.global_att(xa))
        return 2 * x * w + 2 * residual * (1 - w)


class PatchEmbed(nn.Module):
    """4x4 patches of the (B, C, 256, 256) HTSAT image; fusion models also fuse the 3 local chunks.

    laion_clap ``htsat.py:PatchEmbed`` with ``fusion_type='aff_2d'``: the global patches come from channel 0
    (the whole clip's mel, shrunk to 10 s when longer); for the ``longer_idx`` rows, channels 1-3 (three 10 s
    chunks) each go through ``mel_conv2d`` (kernel/stride 4x12, i.e. a third of the time resolution), are laid
    side by side along time (3 x 21 = 63 columns), zero-padded to the 64 global columns and fused with the
    global patches by :class:`AFF`. Rows not in ``longer_idx`` use channel 0 only.
    """

    def __init__(self, cfg: HTSATConfig, enable_fusion: bool) -> None:
        super().__init__()
        p = cfg.patch_size
        self.enable_fusion = enable_fusion
        self.proj = nn.Conv2d(1, cfg.embed_dim, p, stride=p)
        self.norm = nn.LayerNorm(cfg.embed_dim)
        if enable_fusion:  # 'aff_2d' (laion_clap hook.py): local branch over 3 chunk mels
            self.mel_conv2d = nn.Conv2d(1, cfg.embed_dim, (p, 3 * p), stride=(p, 3 * p))
            self.fusion_model = AFF(cfg.embed_dim)

    def forward(self, x: torch.Tensor, longer_idx: torch.Tensor | None = None) -> torch.Tensor:
        g = self.proj(x[:, :1])  # (B, E, 64, 64)
        if longer_idx is not None and len(longer_idx) > 0:
            if not self.enable_fusion or x.shape[1] != 4:
                raise ValueError("inputs longer than 10 s need a fusion model and 4-channel mel_fusion")
            local = x[longer_idx, 1:]
            b, c, h, w = local.shape
            local = self.mel_conv2d(local.reshape(b * c, 1, h, w))  # (B' * 3, E, 64, 21)
            local = local.view(b, c, *local.shape[1:]).permute(0, 2, 3, 1, 4).flatten(3)  # (B', E, 64, 63)
            tw = g.shape[-1]
            local = F.pad(local, (0, tw - local.shape[-1])) if local.shape[-1] < tw else local[..., :tw]
            g = g.clone()
            g[longer_idx] = self.fusion_model(g[longer_idx], local)
        return self.norm(g.flatten(2).transpose(1, 2))


class HTSAT(nn.Module):
    """HTSAT (Chen et al., ICASSP 2022) as laion_clap's ``HTSAT_Swin_Transformer``, inference only."""

    def __init__(self, cfg: HTSATConfig, enable_fusion: bool = False) -> None:
        super().__init__()
        self.cfg, self.enable_fusion = cfg, enable_fusion
        self.freq_ratio = cfg.spec_size // cfg.mel_bins
        self.spectrogram_extractor = _Spectrogram(cfg.n_fft, cfg.hop)
        self.logmel_extractor = _LogmelFilterBank(cfg)
        # what training/data.py:get_mel feeds fusion models (torchaudio, HTK scale, no norm); not stored
        htk = htk_mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.mel_bins, cfg.fmin, cfg.fmax)
        self.register_buffer("htk_melW", torch.from_numpy(htk).float(), persistent=False)
        self.bn0 = nn.BatchNorm2d(cfg.mel_bins)
        self.patch_embed = PatchEmbed(cfg, enable_fusion)
        grid = cfg.spec_size // cfg.patch_size
        n = len(cfg.depths)
        self.layers = nn.ModuleList([
            BasicLayer(cfg.embed_dim * 2**i, (grid // 2**i, grid // 2**i), cfg.depths[i], cfg.num_heads[i],
                       cfg.window_size, cfg.mlp_ratio, downsample=i < n - 1) for i in range(n)])
        self.norm = nn.LayerNorm(cfg.num_features)
        sf = cfg.spec_size // 2 ** (n - 1) // cfg.patch_size // self.freq_ratio
        self.tscam_conv = nn.Conv2d(cfg.num_features, cfg.class_num, (sf, 3), padding=(0, 1))
        self.head = nn.Linear(cfg.class_num, cfg.class_num)

    @property
    def frontend(self) -> str:
        """``htk`` (fusion models: torchaudio mel of ``get_mel``) or ``slaney`` (in-network torchlibrosa)."""
        return "htk" if self.enable_fusion else "slaney"

    def logmel(self, waveform: torch.Tensor, frontend: str | None = None) -> torch.Tensor:
        """``(B, L)`` -> ``(B, 1, T, mel_bins)`` dB log-mel, ``T = 1 + L // hop``."""
        spec = self.spectrogram_extractor(waveform)
        fb = self.htk_melW if (frontend or self.frontend) == "htk" else self.logmel_extractor.melW
        return power_to_db(spec @ fb)

    def reshape_wav2img(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, F)`` -> ``(B, C, S, S)``: bicubic stretch to ``S * r`` frames, then the ``r`` time
        chunks stacked along the frequency axis (``r = spec_size // mel_bins = 4``)."""
        s, r = self.cfg.spec_size, self.freq_ratio
        b, c, t, f = x.shape
        if t > s * r or f > s // r:
            raise ValueError(f"log-mel {t}x{f} larger than the HTSAT input {s * r}x{s // r}")
        if t < s * r or f < s // r:
            x = F.interpolate(x, (s * r, s // r), mode="bicubic", align_corners=True)
        x = x.permute(0, 1, 3, 2).reshape(b, c, s // r, r, s).permute(0, 1, 3, 2, 4)
        return x.reshape(b, c, s, s)

    def forward_features(self, x: torch.Tensor, longer_idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, C, 256, 256)`` image -> ``embedding (B, 768)``, ``clipwise_output (B, 527)`` and the frame-level
        ``feat_maps (B, 64, 768)`` (VALOR ``utils/clap_utils.py``: the last stage's normed tokens regrouped as
        ``(768, 2 freq bins, 32 time steps)`` and flattened, token ``f * 32 + t``; time step ``t`` covers
        ``[t, t + 1) * 10 / 32`` s of a 10 s input). ``embedding`` is the mean of the 64 tokens."""
        x = self.patch_embed(x, longer_idx)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # (B, N, C), N = (S / 32)^2
        b, n, c = x.shape
        side = int(math.isqrt(n))
        g = x.transpose(1, 2).reshape(b, c, side, side)
        fb = side // self.freq_ratio
        g = g.reshape(b, c, side // fb, fb, side).permute(0, 1, 3, 2, 4).reshape(b, c, fb, -1)
        cls = self.tscam_conv(g).flatten(2).mean(-1)
        return {"embedding": g.flatten(2).mean(-1), "clipwise_output": torch.sigmoid(cls),
                "feat_maps": g.flatten(2).transpose(1, 2)}

    def _from_mel(self, mel: torch.Tensor, longer_idx: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``(B, C, T, mel_bins)`` log-mel (C = 1, or 4 for ``mel_fusion``) -> outputs: ``bn0`` per mel bin,
        the image reshape, the Swin stages (laion_clap ``HTSAT_Swin_Transformer.forward``)."""
        x = self.bn0(mel.transpose(1, 3)).transpose(1, 3)
        return self.forward_features(self.reshape_wav2img(x), longer_idx)

    def forward(self, waveform: torch.Tensor, frontend: str | None = None) -> dict[str, torch.Tensor]:
        """``(B, L <= 480000)`` waveform (repeat-padded by the caller) -> outputs. Equal to
        :meth:`forward_inputs` on :meth:`prepare` d inputs that are not ``longer`` (the fusion model then
        uses channel 0 of ``mel_fusion``, the clip's own mel); longer inputs must go through :meth:`prepare`."""
        if waveform.shape[-1] > CLIP_SAMPLES:
            raise ValueError(f"{waveform.shape[-1]} samples > {CLIP_SAMPLES}: inputs longer than 10 s go "
                             "through HTSAT.prepare / forward_inputs (laion_clap's fusion or rand_trunc path)")
        return self._from_mel(self.logmel(waveform, frontend))

    @torch.no_grad()
    def prepare(self, x: torch.Tensor, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One mono 48 kHz clip ``(L,)`` -> ``{"waveform" (480000,), "longer" (), "mel_fusion" (4, 1001, 64)}``
        (the last for fusion models only): laion_clap ``training/data.py:get_audio_features`` with
        ``data_truncating='fusion'``, ``data_filling='repeatpad'``, as ``hook.py`` calls it.

        ``L <= 480000``: repeat-pad; ``mel_fusion`` = the mel four times; ``longer`` False. ``L > 480000``
        (``longer`` True): the mel of the whole clip (``T`` frames, ``chunk = 480000 // hop + 1 = 1001``);
        ``mel_fusion`` = [whole mel shrunk to ``chunk`` frames (``torchvision`` ``Resize``, bilinear,
        antialiased: torchvision >= 0.17's default, laion_clap leaves it to the installed version), and three
        ``chunk``-frame crops starting at one random index from each third of ``range(T - chunk + 1)``
        (``np.array_split``; an empty third uses 0)]; if ``T == chunk`` the clip counts as not longer. The
        waveform is cropped to 480,000 samples at a random offset (what non-fusion models read). laion_clap
        draws from numpy's global state; here ``rng`` (seeded by the caller) makes it reproducible.
        """
        x = x.reshape(-1).float()
        n = x.shape[0]
        if n == 0:
            raise ValueError("empty audio")
        out: dict[str, torch.Tensor] = {}
        longer = False
        if n > CLIP_SAMPLES:
            if self.enable_fusion:
                mel = self.logmel(x[None], "htk")[0, 0]  # (T, 64)
                chunk = CLIP_SAMPLES // self.cfg.hop + 1
                total = mel.shape[0]
                if total == chunk:
                    out["mel_fusion"] = mel.expand(4, -1, -1).clone()
                else:
                    thirds = np.array_split(np.arange(total - chunk + 1), 3)
                    starts = [int(rng.choice(t)) if len(t) else 0 for t in thirds]
                    from torchvision.transforms import InterpolationMode
                    from torchvision.transforms.functional import resize

                    shrunk = resize(mel[None], [chunk, mel.shape[1]], InterpolationMode.BILINEAR, antialias=True)[0]
                    out["mel_fusion"] = torch.stack([shrunk, *(mel[s:s + chunk] for s in starts)])
                    longer = True
            else:
                longer = True
            off = int(rng.integers(0, n - CLIP_SAMPLES + 1))
            x = x[off:off + CLIP_SAMPLES]
        else:
            x = torch.from_numpy(repeatpad(x.cpu().numpy())).to(x.device)
            if self.enable_fusion:
                out["mel_fusion"] = self.logmel(x[None], "htk")[0, 0].expand(4, -1, -1).clone()
        out["waveform"] = x
        out["longer"] = torch.tensor(longer)
        return out

    def forward_inputs(self, inputs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """A batch of :meth:`prepare` d clips -> outputs (laion_clap ``HTSAT_Swin_Transformer.forward``, eval):
        fusion models read ``mel_fusion`` and fuse the local chunks of the ``longer`` rows; non-fusion models
        read the (cropped) waveform through their in-network front end."""
        if self.enable_fusion:
            mel = torch.stack([d["mel_fusion"] for d in inputs])
            longer_idx = torch.where(torch.stack([d["longer"] for d in inputs]))[0].to(mel.device)
            # without longer rows only channel 0 is read: skip resampling the three copies
            return self._from_mel(mel if len(longer_idx) else mel[:, :1], longer_idx)
        return self._from_mel(self.logmel(torch.stack([d["waveform"] for d in inputs]), "slaney"))


# ============================================================================ RoBERTa text branch
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


# ============================================================================ CLAP
class MLPLayers(nn.Module):
    """laion_clap ``MLPLayers([512, 512, 512])`` (``audio_transform``/``text_transform``; training only)."""

    def __init__(self, units: Sequence[int] = (512, 512, 512), dropout: float = 0.1) -> None:
        super().__init__()
        seq: list[nn.Module] = []
        for a, b in zip(units[:-1], units[1:], strict=True):
            seq += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        self.sequential = nn.Sequential(*seq[:-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sequential(x)


def _projection(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU(), nn.Linear(d_out, d_out))


class CLAP(nn.Module):
    """laion_clap ``CLAP`` (HTSAT audio branch, RoBERTa text branch, 512-D joint space)."""

    def __init__(self, amodel: str = "HTSAT-tiny", enable_fusion: bool = False, joint_dim: int = 512) -> None:
        super().__init__()
        cfg = HTSAT_CONFIGS[amodel]
        self.amodel, self.enable_fusion = amodel, enable_fusion
        self.audio_branch = HTSAT(cfg, enable_fusion)
        self.text_branch = RobertaEncoder()
        self.text_transform = MLPLayers((joint_dim,) * 3)
        self.text_projection = _projection(RobertaConfig.hidden, joint_dim)
        self.audio_transform = MLPLayers((joint_dim,) * 3)
        self.audio_projection = _projection(cfg.num_features, joint_dim)
        self.logit_scale_a = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.logit_scale_t = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def encode_audio(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, 480000)`` prepared waveforms -> ``(B, 512)`` L2-normalised (``get_audio_embedding``)."""
        return F.normalize(self.audio_projection(self.audio_branch(waveform)["embedding"]), dim=-1)

    def audio_embedding_from_data(self, clips: Sequence[np.ndarray], rng: np.random.Generator,
                                  device: str | torch.device = "cpu") -> torch.Tensor:
        """laion_clap ``hook.py:get_audio_embedding_from_data``: mono 48 kHz clips of any length -> ``(B, 512)``
        L2-normalised. Each clip: int16 round trip, :meth:`HTSAT.prepare` (clips > 10 s take the fusion
        branch of a fusion checkpoint, a random 10 s crop otherwise), one batched forward pass."""
        inputs = [self.audio_branch.prepare(torch.from_numpy(quantize_int16(np.asarray(c, np.float32))).to(device),
                                            rng) for c in clips]
        return F.normalize(self.audio_projection(self.audio_branch.forward_inputs(inputs)["embedding"]), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids + mask ``(B, 77)`` -> ``(B, 512)`` L2-normalised (``get_text_embedding``)."""
        return F.normalize(self.text_projection(self.text_branch(input_ids, attention_mask)), dim=-1)


def convert_laion_clap(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official checkpoint -> :class:`CLAP` keys: strip ``module.``, drop the stale ``position_ids`` buffer."""
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    drop = {"text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids"}
    return {k: v for k, v in sd.items() if k not in drop}


# ============================================================================ tokenizers
@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode map (byte-level BPE alphabet)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


_GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class RobertaBPETokenizer:
    """roberta-base byte-level BPE (``vocab.json`` + ``merges.txt``), laion_clap's call convention:
    ``padding="max_length", truncation=True, max_length=77``."""

    name = "roberta-base byte-level BPE"

    def __init__(self, vocab_file: Path | str, merges_file: Path | str, max_length: int = MAX_TEXT_LEN) -> None:
        import regex

        self.encoder: dict[str, int] = json.loads(Path(vocab_file).read_text(encoding="utf-8"))
        lines = Path(merges_file).read_text(encoding="utf-8").splitlines()
        merges = [tuple(ln.split()) for ln in lines if ln and not ln.startswith("#version")]
        self.ranks = {m: i for i, m in enumerate(merges) if len(m) == 2}
        self.pattern = regex.compile(_GPT2_SPLIT)
        self.max_length = max_length
        self.bos, self.eos = self.encoder.get("<s>", BOS_ID), self.encoder.get("</s>", EOS_ID)
        self.pad, self.unk = self.encoder.get("<pad>", PAD_ID), self.encoder.get("<unk>", UNK_ID)
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, word: str) -> list[str]:
        if word in self._cache:
            return self._cache[word]
        parts = list(word)
        while len(parts) > 1:
            best = min(zip(parts, parts[1:], strict=False), key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        """Token ids without ``<s>``/``</s>``."""
        b2u = _bytes_to_unicode()
        ids: list[int] = []
        for piece in self.pattern.findall(text):
            word = "".join(b2u[b] for b in piece.encode("utf-8"))
            ids += [self.encoder.get(t, self.unk) for t in self._bpe(word)]
        return ids

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return _pad_batch([self.encode(t) for t in texts], self.max_length, self.bos, self.eos, self.pad)


class ByteFallbackTokenizer:
    """Offline stand-in for random-weights runs: UTF-8 byte ``b`` -> id ``4 + b``, with RoBERTa's
    ``<s>``=0, ``<pad>``=1, ``</s>``=2. Never used with pretrained weights (it is not RoBERTa's BPE)."""

    name = "byte-fallback (random weights)"

    def __init__(self, max_length: int = MAX_TEXT_LEN) -> None:
        self.max_length = max_length

    def encode(self, text: str) -> list[int]:
        return [BYTE_FALLBACK_OFFSET + b for b in text.encode("utf-8")]

    def __call__(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return _pad_batch([self.encode(t) for t in texts], self.max_length, BOS_ID, EOS_ID, PAD_ID)


def _pad_batch(seqs: list[list[int]], max_length: int, bos: int, eos: int, pad: int) -> dict[str, torch.Tensor]:
    """``<s> ids[:max_length-2] </s>`` then ``<pad>`` up to ``max_length``; mask 1 on real tokens."""
    ids = torch.full((len(seqs), max_length), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), max_length), dtype=torch.long)
    for i, s in enumerate(seqs):
        row = [bos, *s[: max_length - 2], eos]
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


# ============================================================================ public API
def build_clap(mode: WeightsMode = "pretrained", root: Path | str = DEFAULT_ROOT, seed: int = 0,
               checkpoint: str = DEFAULT_CHECKPOINT) -> tuple[CLAP, Any, dict[str, Any]]:
    """CLAP model (eval mode), its tokenizer and provenance.

    ``pretrained``: the registered checkpoint and roberta-base tokenizer files must be present (else
    :class:`~extractors.weights.WeightsError` with URL and path; never a fallback). ``random``: seeded,
    labelled weights and the labelled byte-fallback tokenizer (the BPE files are not needed offline).
    """
    if checkpoint not in CLAP_CHECKPOINTS:
        raise KeyError(f"unknown CLAP checkpoint {checkpoint!r}; known: {sorted(CLAP_CHECKPOINTS)}")
    amodel, fusion = CLAP_CHECKPOINTS[checkpoint]
    tokenizer: Any
    if mode == "pretrained":
        if not weights_path(checkpoint, root).is_file():
            verify(checkpoint, root)  # raises the registry's WeightsError (URL, path, fetch command)
        tok_digests = {n: verify(n, root) for n in TOKENIZER_FILES}
        tokenizer = RobertaBPETokenizer(weights_path(TOKENIZER_FILES[0], root), weights_path(TOKENIZER_FILES[1], root))
    elif mode == "random":
        tokenizer = ByteFallbackTokenizer()
    else:
        raise ValueError(f"weights mode must be 'pretrained' or 'random', got {mode!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLAP(amodel, enable_fusion=fusion)
    prov = build_model_weights(model, checkpoint, mode, root, seed)
    prov.update({"clap_model": amodel, "enable_fusion": fusion, "frontend": model.audio_branch.frontend,
                 "tokenizer": tokenizer.name})
    if mode == "pretrained":
        prov["tokenizer_files"] = {get_spec(n).filename: d for n, d in tok_digests.items()}
    return model.eval(), tokenizer, prov


def quantize_int16(x: np.ndarray) -> np.ndarray:
    """laion_clap's ``int16_to_float32(float32_to_int16(x))``: clip, scale by 32767, truncate, rescale."""
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / np.float32(32767.0)


def repeatpad(x: np.ndarray, max_len: int = CLIP_SAMPLES) -> np.ndarray:
    """laion_clap ``data_filling='repeatpad'``: tile ``max_len // len`` times, zero-pad to ``max_len``."""
    n = len(x)
    if n == 0:
        raise ValueError("empty audio segment")
    if n > max_len:
        raise ValueError(f"segment of {n} samples is longer than {max_len}")
    if n < max_len:
        x = np.tile(x, max_len // n)
        x = np.pad(x, (0, max_len - len(x)))
    return x


def default_n_segments(n_samples: int, sr: int = SAMPLE_RATE, fps: int = 8, max_segments: int = 10) -> int:
    """Whole seconds as the 8 fps visual segmentation counts them: ``min(10, round(8 N / sr) // 8)``."""
    return min(max_segments, int(round(fps * n_samples / sr)) // fps)


def segment_bounds(n_samples: int, n_segments: int) -> list[tuple[int, int]]:
    """VALOR's split: ``start_i = round(linspace(0, N, S + 1))[i]``, length ``N // S``."""
    starts = np.round(np.linspace(0, n_samples, n_segments + 1)).astype(np.int64)[:-1]
    step = n_samples // n_segments
    return [(int(s), int(s) + step) for s in starts]


@torch.no_grad()
def clap_audio_features(model: CLAP, waveform_48k: np.ndarray, n_segments: int | None = None, batch: int = 10,
                        device: str = "cpu", seed: int = 0) -> np.ndarray:
    """``(S, 512)`` float32 L2-normalised CLAP embeddings, one per segment (VALOR's per-second recipe:
    ``get_audio_embedding_from_data`` on the list of segments, :meth:`CLAP.audio_embedding_from_data`).

    ``waveform_48k``: mono float audio at 48 kHz. ``S`` defaults to :func:`default_n_segments`; the
    first ``S`` seconds (or the whole clip when shorter) are split by :func:`segment_bounds`. ``seed``: the
    random chunk choice of segments longer than 10 s (fusion branch), none for LLP's 1 s segments.
    """
    x = np.asarray(waveform_48k, dtype=np.float32).reshape(-1)
    s = default_n_segments(len(x)) if n_segments is None else int(n_segments)
    if s < 1:
        raise ValueError(f"audio of {len(x)} samples is shorter than one segment")
    x = x[: s * SAMPLE_RATE]
    segs = [x[a:b] for a, b in segment_bounds(len(x), s)]
    rng = np.random.default_rng(seed)
    out = [model.audio_embedding_from_data(segs[i:i + batch], rng, device).float().cpu() for i in range(0, s, batch)]
    return torch.cat(out).numpy().astype(np.float32)


WINDOW_SEGMENTS = 10  # one HTSAT input = 10 s = 10 one-second segments


def valor_window(x: np.ndarray, n_seconds: int) -> np.ndarray:
    """One <= 10 s window -> the 480,000-sample HTSAT input of VALOR's ``get_audio_feature_maps``: the audio
    is index-resampled to exactly ``n_seconds`` s (``x[round(linspace(0, n - 1, n_seconds * 48000))]``; VALOR
    does this to every 10 s LLP clip, a no-op for a complete window), int16 round trip, then repeat-padded
    (laion_clap ``data_filling='repeatpad'``; a no-op for 10 s), so second ``k < n_seconds`` of the input is
    second ``k`` of the window."""
    if not 1 <= n_seconds <= WINDOW_SEGMENTS:
        raise ValueError(f"a window holds 1..{WINDOW_SEGMENTS} seconds, got {n_seconds}")
    x = np.asarray(x, np.float32).reshape(-1)
    if len(x) == 0:
        raise ValueError("empty audio window")
    target = n_seconds * SAMPLE_RATE
    if len(x) != target:
        x = x[np.round(np.linspace(0, len(x) - 1, target)).astype(np.int64)]
    return repeatpad(quantize_int16(x))


def maps_to_seconds(maps: torch.Tensor, n_freq: int = 2, n_frames: int = 1024,
                    n_seconds: int = WINDOW_SEGMENTS) -> torch.Tensor:
    """``(B, 64, C)`` HTSAT ``feat_maps`` of 10 s inputs -> ``(B, n_seconds, C)``, one vector per second.

    VALOR's ``main_network.py:MMIL_Net.forward`` reads the maps as ``(C, 2 freq, 32 time)``, bicubic-upsamples
    them to ``(2, 1024)`` (HTSAT's frame count), applies its input layer ``fc_a``, averages the 2 frequency
    bins and ``adaptive_avg_pool1d``-s the 1024 frames to 10 segments. Every step but ``fc_a`` is a linear
    resampling whose weights sum to 1, so it commutes with ``fc_a`` (an affine map): pooling here and applying
    any linear input layer afterwards (EAR's, HAN's) gives exactly what VALOR's model computes from the maps.
    """
    b, n, c = maps.shape
    x = maps.transpose(1, 2).reshape(b, c, n_freq, n // n_freq)
    x = F.interpolate(x, size=(n_freq, n_frames), mode="bicubic", align_corners=False).mean(2)
    return F.adaptive_avg_pool1d(x, n_seconds).transpose(1, 2)


def window_bounds(n_samples: int, n_segments: int, window: int = WINDOW_SEGMENTS) -> list[tuple[int, int, int]]:
    """``(first sample, end sample, seconds)`` of consecutive windows of at most ``window`` segments; sample
    bounds split the ``n_samples`` in proportion (``round(k / S * N)``), VALOR's equal split of a clip."""
    out = []
    for a in range(0, n_segments, window):
        b = min(n_segments, a + window)
        out.append((int(round(a / n_segments * n_samples)), int(round(b / n_segments * n_samples)), b - a))
    return out


@torch.no_grad()
def clap_feature_maps(model: CLAP, waveform_48k: np.ndarray, n_segments: int | None = None, batch: int = 8,
                      device: str = "cpu") -> np.ndarray:
    """``(S, 768)`` float32 per-second CLAP HTSAT feature maps (VALOR's audio features for its AVVP model).

    VALOR ``utils/clap_preprocess.py:get_audio_feature_maps`` runs the 630k-fusion HTSAT once on the whole
    10 s clip and saves its frame-level ``feat_maps`` ``(64, 768)`` (pre-projection tokens, 2 frequency bins
    x 32 time steps of 0.3125 s, not L2-normalised); :func:`maps_to_seconds` turns them into ``(10, 768)``.
    Clips longer than 10 s (whole UnAV videos) are cut into 10 s windows (:func:`window_bounds`), each run
    the same way, so every vector stays aligned with its second; the fusion branch is not used for them, as
    it maps a long clip onto one 10 s time axis. A window of ``n < 10`` seconds (a short clip, a video's
    tail) is repeat-padded (:func:`valor_window`) and its first ``n`` seconds are kept. ``S`` as in
    :func:`clap_audio_features`.
    """
    x = np.asarray(waveform_48k, dtype=np.float32).reshape(-1)
    s = default_n_segments(len(x)) if n_segments is None else int(n_segments)
    if s < 1:
        raise ValueError(f"audio of {len(x)} samples is shorter than one segment")
    x = x[: s * SAMPLE_RATE]
    wins = window_bounds(len(x), s)
    inputs = np.stack([valor_window(x[a:b], n) for a, b, n in wins])
    branch = model.audio_branch
    cfg = branch.cfg
    n_freq = cfg.spec_size // 2 ** (len(cfg.depths) - 1) // cfg.patch_size // branch.freq_ratio
    out = []
    for i in range(0, len(wins), batch):
        maps = branch(torch.from_numpy(inputs[i:i + batch]).to(device))["feat_maps"]
        sec = maps_to_seconds(maps.float(), n_freq, cfg.spec_size * branch.freq_ratio).cpu()
        out += [sec[j, :n] for j, (_, _, n) in enumerate(wins[i:i + batch])]
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def clap_text_embeddings(model: CLAP, tokenizer: Any, class_names: Sequence[str], template: str | None = None,
                         lowercase: bool = True, device: str = "cpu") -> tuple[np.ndarray, list[str]]:
    """``(C, 512)`` float32 L2-normalised text embeddings of the class prompts, and the prompts.

    ``template`` defaults to EAR's ``"This is the sound of {}"``; names are lower-cased by default as
    VALOR does for its CLAP captions.
    """
    prompts = format_prompts(class_names, AUDIO_PROMPT if template is None else template, lowercase)
    tok = tokenizer(prompts)
    emb = model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))
    return emb.float().cpu().numpy().astype(np.float32), prompts


__all__ = [
    "CLAP", "CLAP_CHECKPOINTS", "DEFAULT_CHECKPOINT", "HTSAT", "ByteFallbackTokenizer", "RobertaBPETokenizer",
    "build_clap", "clap_audio_features", "clap_feature_maps", "clap_text_embeddings", "convert_laion_clap",
    "default_n_segments", "maps_to_seconds", "quantize_int16", "repeatpad", "segment_bounds",
    "valor_window", "window_bounds",
]
