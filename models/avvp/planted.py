"""The planted three-stage AVVP benchmark EAR's stages are tested and demonstrated on (CPU, seconds):
dense audio-visual data for stage 1 and LLP-like splits for stages 2-3, with small configs (:data:`PRESETS`)."""

from __future__ import annotations

from typing import Any

import numpy as np

# Small configs for the planted benchmark (CPU, seconds). The planted encoder space is isotropic,
# unlike CLIP/CLAP whose features all share a large common direction, so the paper's 0.98 / 0.95
# migration thresholds are replaced by 0.85 there (same-event segments have cos ~0.92, different
# single events ~0).
DEMO_GEN: dict[str, Any] = {"audio_dim": 32, "visual_dim": 32, "epochs": 15, "warmup_epochs": 2, "lr": 3e-3,
                            "min_lr": 1e-4, "batch_size": 40, "tau_audio": 0.85, "tau_visual": 0.85}
DEMO_EAR: dict[str, Any] = {"num_classes": 6, "audio_dim": 16, "visual_dim": 24, "d_model": 32, "n_heads": 2,
                            "d_event": 8, "epochs": 20, "warmup_epochs": 2, "lr": 5e-3, "min_lr": 5e-5,
                            "batch_size": 24}

PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {"planted": (DEMO_GEN, DEMO_EAR)}


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _plant_events(rng: np.random.Generator, n: int, c: int, t: int, max_events: int, p_av: float,
                  min_len: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random events per video: AV (both), audio-only or visual-only, contiguous spans.

    Returns labels ``(N, C)`` and ``gt_a``, ``gt_v`` ``(N, C, T)``.
    """
    labels = np.zeros((n, c), np.float32)
    gt_a = np.zeros((n, c, t), np.uint8)
    gt_v = np.zeros((n, c, t), np.uint8)
    for i in range(n):
        k = rng.integers(1, max_events + 1)
        for cls in rng.choice(c, size=k, replace=False):
            labels[i, cls] = 1
            kind = rng.choice(3, p=[p_av, (1 - p_av) / 2, (1 - p_av) / 2])
            for arr, on in ((gt_a, kind in (0, 1)), (gt_v, kind in (0, 2))):
                if on:
                    ln = rng.integers(min_len, t + 1)
                    s = rng.integers(0, t - ln + 1)
                    arr[i, cls, s:s + ln] = 1
            if kind == 0 and not (gt_a[i, cls] & gt_v[i, cls]).any():  # an AV event must overlap
                s = int(np.flatnonzero(gt_a[i, cls])[0])
                gt_v[i, cls, s] = 1
    return labels, gt_a, gt_v


def embed_segments(gt: np.ndarray, protos: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """Encoder-space segment features ``(N, T, D)`` = sum of active class prototypes + noise."""
    feats = np.einsum("nct,cd->ntd", gt.astype(np.float32), protos)
    return (feats + noise * rng.standard_normal(feats.shape)).astype(np.float32)


def make_demo_data(seed: int = 0, n_dense: int = 160, c_dense: int = 12, t_dense: int = 20,
                   n_train: int = 240, n_test: int = 160, n_val: int = 80, c: int = 6, t: int = 10,
                   gen_dim: int = 32, da: int = 16, dv: int = 24, dense_noise: float = 0.05,
                   gen_noise: float = 0.05, feat_noise: float = 1.0,
                   target: tuple[np.ndarray, ...] | None = None) -> dict[str, Any]:
    """Planted three-stage benchmark.

    - dense (stage 1): ``c_dense`` classes in a 'CLAP/CLIP' space of ``gen_dim`` dims; only the AV
      events are labelled, audio-only / visual-only events are present in the features but
      unlabelled (label migration has to recover them);
    - target (stages 2-3): ``c`` *other* classes; stage-3 features (``da``/``dv`` dims, prototypes
      plus heavy noise) and generator-space features (the target classes' text embeddings plus
      noise ``gen_noise``, which only temporal context averages away).

    ``target`` may pass ``(audio, visual, labels, gt_a, gt_v)`` from another planted generator
    (``models.data.synthetic.make_planted_avvp``); its train/val/test split is then the first
    ``n_train`` videos / the next ``n_val`` / the rest. The validation split (``n_val`` videos, with
    segment ground truth like LLP's) chooses stage 3's epoch.
    """
    rng = np.random.default_rng(seed)
    # ---- dense pre-training data
    ta_d, tv_d = _unit(rng, c_dense, gen_dim), _unit(rng, c_dense, gen_dim)
    _, da_gt, dv_gt = _plant_events(rng, n_dense, c_dense, t_dense, max_events=3, p_av=0.5)
    dense = {"audio": embed_segments(da_gt, ta_d, dense_noise, rng),
             "visual": embed_segments(dv_gt, tv_d, dense_noise, rng),
             "av_labels": (da_gt & dv_gt).transpose(0, 2, 1).astype(np.float32),
             "gt_a": da_gt, "gt_v": dv_gt, "text_a": ta_d.astype(np.float32), "text_v": tv_d.astype(np.float32)}
    # ---- target (LLP-like) data
    if target is None:
        n = n_train + n_val + n_test
        labels, gt_a, gt_v = _plant_events(rng, n, c, t, max_events=2, p_av=0.4)
        pa, pv = rng.standard_normal((c, da)), rng.standard_normal((c, dv))
        audio = embed_segments(gt_a, pa, feat_noise, rng)
        visual = embed_segments(gt_v, pv, feat_noise, rng)
    else:
        audio, visual, labels, gt_a, gt_v = (np.asarray(x) for x in target)
        n, c, t = gt_a.shape
    ta, tv = _unit(rng, c, gen_dim), _unit(rng, c, gen_dim)
    gen_a = embed_segments(gt_a, ta, gen_noise, rng)
    gen_v = embed_segments(gt_v, tv, gen_noise, rng)
    if n <= n_train + n_val:
        raise ValueError(f"{n} target videos leave no test video after {n_train} train + {n_val} validation")
    split = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val), "test": slice(n_train + n_val, n)}
    out: dict[str, Any] = {"dense": dense}
    for name, sl in split.items():
        out[name] = {"audio": audio[sl].astype(np.float32), "visual": visual[sl].astype(np.float32),
                     "gen_audio": gen_a[sl], "gen_visual": gen_v[sl], "labels": labels[sl].astype(np.float32),
                     "gt_a": gt_a[sl], "gt_v": gt_v[sl], "text_a": ta.astype(np.float32),
                     "text_v": tv.astype(np.float32),
                     "video_ids": np.array([f"{name}_{i:05d}" for i in range(sl.stop - sl.start)])}
    return out
