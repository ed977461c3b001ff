"""Similarity-based uni-modal label migration (EAR paper §III-B, Eq. 1-2, S-17..S-21).

Dense audio-visual data (UnAV-100) only annotates *audio-visual* events. EAR turns it into AVVP-style
data (audio, visual and audio-visual labels) by copying the AV label of a segment to every segment
whose uni-modal feature (CLAP for audio, CLIP for visual) is nearly identical to it, with the
similarity as a soft confidence.

For a set of segments with features ``F`` (N, D) and AV labels ``Y`` (N, C):

1. ``S = cos(F, F)``                         cosine similarity between all pairs (N, N)
2. ``M = 1[S >= tau]``, ``S_h = S * M``      keep only highly similar pairs (Eq. 1)
3. ``Y_raw = S_h @ Y``                       migrated label, may exceed 1 (Eq. 2, S-17/S-18)
4. ``K = M @ Y``                             how many similar segments voted for each label (S-19)
5. ``Y_avg = Y_raw / K`` where ``K > 0``     averaged duplicates (S-20)
6. ``Y_mig = max(Y_avg, Y)``                 original AV labels (1) are kept unchanged (S-21)

So a segment whose feature equals that of a labelled one receives the label with confidence
``cos = 1``; a segment similar to several labelled ones receives the mean similarity; no value
exceeds 1 (each term of the mean is a cosine <= 1).

Choices where the paper is silent:

- The diagonal (a segment with itself, ``S_ii = 1``) is part of ``M`` as written in Eq. 1; it only
  re-adds a segment's own label, which step 6 keeps at 1 anyway.
- Similarities are computed "for segments in a batch" (the paper's wording); :func:`migrate_dataset`
  therefore processes videos in batches (64 videos by default = the paper's batch size) with padded
  steps excluded. Migration across batches is not done (its cost is quadratic in the number of
  segments and the paper does not do it).
- Negative cosines can never pass a threshold in (0, 1]; thresholds must lie in (0, 1].
- Defaults: tau_audio = 0.98, tau_visual = 0.95 (paper §IV-A and Table S-XVIII).
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_TAU_AUDIO = 0.98
DEFAULT_TAU_VISUAL = 0.95


def migrate_labels(
    feats: torch.Tensor, av_labels: torch.Tensor, threshold: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Migrate AV labels to uni-modal soft labels among one set of segments.

    feats ``(N, D)``, av_labels ``(N, C)`` in {0, 1}, valid ``(N,)`` bool (padded steps neither give
    nor receive labels). Returns ``(N, C)`` float labels in [0, 1] with the original ones kept.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"similarity threshold must be in (0, 1], got {threshold}")
    if feats.ndim != 2 or av_labels.ndim != 2 or feats.shape[0] != av_labels.shape[0]:
        raise ValueError(f"expected feats (N, D) and labels (N, C), got {tuple(feats.shape)}, "
                         f"{tuple(av_labels.shape)}")
    f = feats.double()
    y = av_labels.double()
    f = f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = f @ f.T
    mask = sim >= threshold
    if valid is not None:
        v = valid.bool()
        mask &= v[:, None] & v[None, :]
        y = y * v[:, None].double()
    sim_h = sim * mask.double()
    raw = sim_h @ y
    count = mask.double() @ y
    avg = torch.where(count > 0, raw / count.clamp_min(1.0), torch.zeros_like(raw))
    out = torch.maximum(avg, y)
    if valid is not None:
        out = out * valid[:, None].double()
    # fp rounding of a cosine of identical vectors can give 1 + 1e-16: labels are probabilities.
    return out.clamp_(0.0, 1.0).to(av_labels.dtype if av_labels.is_floating_point() else torch.float32)


def migrate_dataset(
    audio: np.ndarray,
    visual: np.ndarray,
    av_labels: np.ndarray,
    mask: np.ndarray | None = None,
    tau_audio: float = DEFAULT_TAU_AUDIO,
    tau_visual: float = DEFAULT_TAU_VISUAL,
    batch_videos: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Migrate segment-level AV labels of a dense dataset to audio and visual soft labels.

    audio ``(N, T, Da)``, visual ``(N, T, Dv)`` (frozen CLAP / CLIP features), av_labels
    ``(N, T, C)``, mask ``(N, T)`` (True = valid). Videos are grouped in consecutive batches of
    ``batch_videos``; within a batch all valid segments are compared. Returns (labels_a, labels_v),
    both ``(N, T, C)`` float32.
    """
    n, t, c = av_labels.shape
    if mask is None:
        mask = np.ones((n, t), dtype=bool)
    out_a = np.zeros((n, t, c), dtype=np.float32)
    out_v = np.zeros((n, t, c), dtype=np.float32)
    for s in range(0, n, batch_videos):
        e = min(n, s + batch_videos)
        valid = torch.from_numpy(mask[s:e].reshape(-1).astype(bool))
        y = torch.from_numpy(av_labels[s:e].reshape(-1, c).astype(np.float32))
        fa = torch.from_numpy(audio[s:e].reshape(-1, audio.shape[-1]).astype(np.float32))
        fv = torch.from_numpy(visual[s:e].reshape(-1, visual.shape[-1]).astype(np.float32))
        out_a[s:e] = migrate_labels(fa, y, tau_audio, valid).numpy().reshape(e - s, t, c)
        out_v[s:e] = migrate_labels(fv, y, tau_visual, valid).numpy().reshape(e - s, t, c)
    return out_a, out_v
