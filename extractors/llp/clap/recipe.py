"""VALOR's per-second CLAP recipe (``utils/clap_preprocess.py``), on the port in this package.

Audio (``get_audio_embedding``, per 1 s segment):

1. 48 kHz mono: decoded from the *source video* by :func:`extractors.audio.load_audio` (``resampler="soxr"``:
   librosa's default ``soxr_hq`` is soxr too; channel mean = librosa's ``to_mono``). The pipeline's 16 kHz wav
   is not used: upsampling it would leave nothing above 8 kHz while CLAP's mel bank reaches 14 kHz.
2. Segments: VALOR splits the clip into ``S`` parts, ``start_i = round(linspace(0, N, S + 1))[i]``,
   length ``N // S`` (``S = 10`` for a 10 s LLP clip: exactly seconds ``[k, k+1)``). Here ``S`` defaults to
   the 8 fps visual count (``min(10, round(8 * N / sr) // 8)``) and ``N`` to the first ``S`` seconds, so
   audio and visual features have the same ``T``; for a (nearly) 10 s clip this is VALOR's split.
3. Each segment on its own, as laion_clap's ``get_audio_embedding_from_data``: int16 round trip,
   ``repeatpad`` to 480,000 samples, log-mel (:mod:`.frontend`), HTSAT ``embedding`` (mean of the last stage's
   tokens), ``audio_projection``, L2 normalisation -> ``(S, 512)``.

Frame-level feature maps (``get_audio_feature_maps`` + ``utils/clap_utils.py``, the audio features of
VALOR++/UWAV's AVVP model): the whole 10 s clip in one pass, index-resampled to exactly 480,000 samples,
``feat_maps`` ``(64, 768)`` = the last Swin stage's normed tokens as ``(768, 2 frequency bins, 32 time steps)``
(token ``f * 32 + t``; ``t`` covers ``[t, t + 1) * 0.3125`` s), not projected, not normalised; their mean is the
pooled ``embedding`` that ``audio_projection`` maps to the joint space. :func:`clap_feature_maps` stores them per
second, ``(S, 768)``, by VALOR's own model-side resampling (:func:`maps_to_seconds`), which is exact for any
linear input layer. The LLP recipes never feed CLAP more than 10 s (1 s segments; 10 s windows).

Text (``get_text_embedding``): the class prompts through the tokenizer and RoBERTa, ``text_projection``,
L2 normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from extractors.llp.clap.frontend import SAMPLE_RATE, quantize_int16, repeatpad
from extractors.llp.clap.model import CLAP
from extractors.llp.prompts import AUDIO_PROMPT, format_prompts


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
