"""CLAP's audio front end: a mono 48 kHz waveform -> the 10 s input and its log-mel (fixed weights, no learning).

laion_clap fills a short clip to 10 s by ``repeatpad`` (tile ``480000 // n`` times, then zero-pad) after an int16
round trip (``clip(-1, 1) * 32767 -> int16 -> / 32767``). The log-mel: the fusion model receives ``mel_fusion``
from ``training/data.py:get_mel`` (torchaudio ``MelSpectrogram``: HTK mel scale, ``norm=None``, power 2, then
``AmplitudeToDB``); the non-fusion models use their in-network torchlibrosa front end (``spectrogram_extractor``,
slaney ``logmel_extractor.melW``). Both: 1024-point periodic-Hann STFT, hop 480, centre reflect padding, 64 bins
50-14,000 Hz, ``10 log10(max(x, 1e-10))``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from extractors.vggish import periodic_hann

SAMPLE_RATE = 48000
CLIP_SAMPLES = 480000


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed one-sided DFT rows ``(n_fft // 2 + 1, n_fft)``: real = w cos, imag = -w sin (torchlibrosa)."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    ang = 2.0 * np.pi * ((k * n) % n_fft) / n_fft
    w = periodic_hann(n_fft)[None, :]
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


def power_to_db(x: torch.Tensor, amin: float = 1e-10) -> torch.Tensor:
    """``10 log10(max(x, amin))`` (ref 1.0, no top_db: torchlibrosa and torchaudio ``AmplitudeToDB``)."""
    return 10.0 * torch.log10(torch.clamp(x, min=amin))


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
