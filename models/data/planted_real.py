"""Planted features on the real structure of UnAV-100: does a weak localizer learn at 100 classes?

The small planted benchmark (:mod:`models.data.synthetic`) has a handful of classes and short videos.
The papers' tables are on UnAV-100: 100 classes with long-tailed frequencies, videos of 10-60 s (up to
185 feature steps), 1.6 classes and 2.8 segments per video, most classes absent from any one video.
This generator keeps all of that from a real annotation file (videos, durations, subsets, classes,
``label_id`` order and every segment) and replaces only the pixels:

- **Background** as the real features look: non-negative (I3D and VGGish end in a ReLU), a common
  offset ``background``, a per-video "scene" vector (constant over time, a nuisance), and temporally
  correlated noise (overlapping windows; :func:`models.data.synthetic._noise`), clipped at 0.
- **Events**: each class has a fixed sparse non-negative unit pattern per stream (``nnz_audio`` of the
  128 audio dims, ``nnz_visual`` of the 2048 visual dims). Every annotated segment adds ``signal *
  pattern`` to both streams on the steps whose window centre lies inside it (the rule the targets use,
  :func:`models.data.steps.covered_steps`), so overlapping segments of different classes add up.
- **Lengths** as the extractor would give them: ``1 + floor((duration - window - 1/fps) / step)`` steps
  (the flow stream needs ``stack + 1`` frames), 185 for a 60 s UnAV-100 video.

- **Single-modality distractors** (``distractors_per_video`` > 0; issue #31): what real videos hold
  besides their annotated events, a sound without its source on screen or a sight without its sound.
  Each is one class's pattern added to ONE stream (audio with probability ``distractor_audio_share``,
  else visual), NOT annotated, of a class with no annotated segment in the video (so video labels stay
  honest; each class at most once per video, so an audio-only and a visual-only distractor never
  combine into an unlabelled audio-visual event), with a length drawn from the real segments' lengths
  (seconds, of the kept annotations) and a uniform start. Their seconds, class and stream are written to
  ``distractors.json`` beside ``annotations.json`` (the layout of the synthetic videos' sidecar), which
  :func:`models.run.metrics.distractors_reported` counts against a model's predictions. They use their
  own random stream, so the features of a release without distractors are unchanged.

The upper bound printed beside a model is :class:`MatchedFilter`: it knows the patterns, scores each
step by its projection on every class pattern minus the background's, scaled by ``signal``, and goes
through the same gate, thresholds, event merging and evaluation as the models. It combines the two
streams' evidence by their **geometric mean** (each clipped to [0, 1]), so it stays an oracle of
audio-visual events: one stream alone (a distractor) scores ~0. Measured on fraction 0.1, 512-D visual,
signal 3, one distractor per video (test Avg mAP / distractors reported of 215): the arithmetic mean
65.8 / 37, the geometric mean 52.1 / 10, the minimum 23.2 / 2 (the per-step noise of the weaker stream
splits every event into fragments).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from extractors.recipes import Recipe
from models.data.annotations import Segment, VideoAnnotation, class_list
from models.data.steps import covered_steps, seconds_to_steps
from models.data.store import FeatureStore
from models.data.synthetic import PlantedConfig, _noise, write_planted
from models.localizers.base import Detection
from models.localizers.decoding import WeakOutputs, decode_weak


@dataclass
class RealPlantedConfig:
    """How the features are planted; the structure comes from the annotation file."""

    fraction: float = 1.0  # share of each subset kept (seeded), e.g. 0.25 for a quarter of UnAV-100
    audio_dim: int = 128
    visual_dim: int = 2048
    nnz_audio: int = 8
    nnz_visual: int = 64
    signal: float = 2.5  # event amplitude along its unit pattern, in background-noise stds
    noise: float = 1.0
    background: float = 1.0  # common offset of the non-negative background
    scene: float = 0.5
    noise_window: int = 3
    distractors_per_video: float = 0.0  # mean (Poisson) single-modality distractors per video; 0: none
    distractor_audio_share: float = 0.5  # share of distractors that are audio-only (the rest visual-only)
    seed: int = 0


def select_fraction(annotations: dict[str, VideoAnnotation], fraction: float, seed: int) -> dict[str, VideoAnnotation]:
    """A seeded ``fraction`` of every subset (at least one video each), in the file's order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return dict(annotations)
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for subset in sorted({a.subset for a in annotations.values()}):
        ids = sorted(v for v, a in annotations.items() if a.subset == subset)
        n = max(1, round(fraction * len(ids)))
        keep.update(rng.choice(ids, size=n, replace=False).tolist())
    return {v: a for v, a in annotations.items() if v in keep}


def steps_for_duration(duration: float, recipe: Recipe) -> int:
    """Feature steps the extractor gives a video of ``duration`` seconds (module docstring)."""
    return max(1, 1 + math.floor((duration - recipe.window_s - 1.0 / recipe.fps) / recipe.step_s + 1e-9))


def class_patterns(num_classes: int, dim: int, nnz: int, rng: np.random.Generator) -> np.ndarray:
    """``(C, dim)`` sparse non-negative unit patterns (``nnz`` random dims each, weights in [0.5, 1])."""
    out = np.zeros((num_classes, dim))
    for c in range(num_classes):
        idx = rng.choice(dim, size=min(nnz, dim), replace=False)
        out[c, idx] = rng.uniform(0.5, 1.0, size=len(idx))
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def planted_patterns(cfg: RealPlantedConfig, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(C, Da)`` audio and ``(C, Dv)`` visual patterns of ``cfg`` (the same draws as the generator)."""
    rng = np.random.default_rng(cfg.seed)
    return (class_patterns(num_classes, cfg.audio_dim, cfg.nnz_audio, rng),
            class_patterns(num_classes, cfg.visual_dim, cfg.nnz_visual, rng))


def event_steps(ann: VideoAnnotation, cidx: dict[str, int], t_len: int, recipe: Recipe) -> np.ndarray:
    """``(T, C)`` 0/1: class ``c`` is on at step ``t`` when a segment of ``c`` covers its window centre."""
    on = np.zeros((t_len, len(cidx)), np.float32)
    for s in ann.segments:
        a, b = covered_steps(*seconds_to_steps(s.start, s.end, recipe), t_len)
        on[a:b, cidx[s.label]] = 1.0
    return on


def _background(rng: np.random.Generator, t_len: int, dim: int, cfg: RealPlantedConfig) -> np.ndarray:
    noise_cfg = PlantedConfig(noise=cfg.noise, noise_window=cfg.noise_window)
    scene = cfg.scene * np.abs(rng.standard_normal(dim))
    return np.maximum(0.0, cfg.background + scene + _noise(rng, t_len, dim, noise_cfg))


def plan_distractors(ann: VideoAnnotation, classes: list[str], lengths_s: np.ndarray, cfg: RealPlantedConfig,
                     rng: np.random.Generator) -> list[tuple[Segment, str]]:
    """``[(segment in seconds, stream 'audio' | 'visual')]`` of one video's distractors (module docstring)."""
    if cfg.distractors_per_video <= 0 or not len(lengths_s):
        return []
    present = {s.label for s in ann.segments}
    absent = [c for c in classes if c not in present]
    out = []
    for _ in range(min(int(rng.poisson(cfg.distractors_per_video)), len(absent))):
        label = absent.pop(int(rng.integers(len(absent))))
        length = min(float(rng.choice(lengths_s)), ann.duration)
        start = float(rng.uniform(0.0, ann.duration - length))
        stream = "audio" if rng.random() < cfg.distractor_audio_share else "visual"
        out.append((Segment(round(start, 6), round(start + length, 6), label), stream))
    return out


def iter_real_planted(annotations: dict[str, VideoAnnotation], cfg: RealPlantedConfig, recipe: Recipe,
                      distractors: dict[str, list[dict[str, Any]]] | None = None,
                      ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(vid, audio (T, Da), visual (T, Dv))`` float64, one video at a time, for the kept videos in the file's
    order. A generator so that a full-size release (10,790 videos, ~20 GB as float32) is written video by
    video (bench/fullsize_bench.py) instead of being held in memory. ``distractors``: filled with each
    video's single-modality distractors (the ``distractors.json`` records) when given."""
    classes = class_list(annotations)  # label_id order of the full file, also for a fraction
    cidx = {c: i for i, c in enumerate(classes)}
    anns = select_fraction(annotations, cfg.fraction, cfg.seed)
    lengths_s = np.asarray([s.end - s.start for a in anns.values() for s in a.segments])
    pa, pv = planted_patterns(cfg, len(classes))
    for i, (vid, ann) in enumerate(anns.items()):
        rng = np.random.default_rng([cfg.seed, i])  # per video: a fraction is a subset of the full release
        t_len = steps_for_duration(ann.duration, recipe)
        on = cfg.signal * event_steps(ann, cidx, t_len, recipe)
        audio = _background(rng, t_len, cfg.audio_dim, cfg) + on @ pa
        visual = _background(rng, t_len, cfg.visual_dim, cfg) + on @ pv
        dis = plan_distractors(ann, classes, lengths_s, cfg, np.random.default_rng([cfg.seed, i, 1]))
        for seg, stream in dis:
            one = cfg.signal * event_steps(VideoAnnotation(vid, ann.subset, ann.duration, [seg]), cidx, t_len, recipe)
            if stream == "audio":
                audio += one @ pa
            else:
                visual += one @ pv
        if distractors is not None and dis:
            distractors[vid] = [{"segment": [seg.start, seg.end], "label": seg.label, "label_id": cidx[seg.label],
                                 "kind": f"{stream}_only"} for seg, stream in dis]
        yield vid, audio, visual


def make_real_planted_arrays(annotations: dict[str, VideoAnnotation], cfg: RealPlantedConfig, recipe: Recipe,
                             distractors: dict[str, list[dict[str, Any]]] | None = None,
                             ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, VideoAnnotation], list[str]]:
    """``({vid: (audio (T, Da), visual (T, Dv))}, annotations kept, classes in label_id order)``."""
    feats = {vid: (a.astype(np.float32), v.astype(np.float32))
             for vid, a, v in iter_real_planted(annotations, cfg, recipe, distractors)}
    return feats, select_fraction(annotations, cfg.fraction, cfg.seed), class_list(annotations)


def make_real_planted(annotations: dict[str, VideoAnnotation], cfg: RealPlantedConfig, out_dir: str | os.PathLike[str],
                      recipe: Recipe) -> tuple[FeatureStore, dict[str, VideoAnnotation], list[str]]:
    """Write the benchmark under ``out_dir`` (layout of :func:`models.data.synthetic.write_planted`, plus
    ``distractors.json`` when the config plants distractors)."""
    distractors: dict[str, list[dict[str, Any]]] = {}
    feats, anns, classes = make_real_planted_arrays(annotations, cfg, recipe, distractors)
    meta = {"source": "planted_real", "recipe": recipe.name, **asdict(cfg)}
    store = write_planted(feats, anns, classes, out_dir, meta)
    if cfg.distractors_per_video > 0:
        (Path(out_dir) / "distractors.json").write_text(json.dumps(distractors, indent=1))
    return store, anns, classes


def read_distractors(path: str | os.PathLike[str], subset: dict[str, VideoAnnotation] | None = None,
                     ) -> list[tuple[str, dict[str, Any]]]:
    """``[(vid, record)]`` of a ``distractors.json`` (empty when the file is missing), only the videos of
    ``subset`` when given (e.g. a test dataset's annotations)."""
    p = Path(path)
    if not p.exists():
        return []
    return [(vid, e) for vid, evs in sorted(json.loads(p.read_text()).items())
            if subset is None or vid in subset for e in evs]


@dataclass
class OracleConfig:
    """The oracle's decoding: the paper rule's threshold and the weak ``decoder`` every weak model has
    (:class:`models.localizers.mil.MILConfig`), so the oracle row goes through the same decoder."""

    threshold: float = 0.5
    decoder: Any = "auto"


class MatchedFilter(nn.Module):
    """The oracle: per step and class, ``(<x_t, pattern_c> - background_c) / signal`` of each stream clipped
    to [0, 1], the geometric mean of the two streams (an audio-visual event needs both; one stream alone, a
    single-modality distractor, scores ~0; the module docstring has the measurement), then the weak models'
    decoder (:func:`models.localizers.decoding.decode_weak`, video score and paper gate = the step scores' max
    over time). ``background_c`` is the projection's median over the training steps (events are rare, so the
    median is the background's)."""

    supervision = "weak"

    def __init__(self, pa: np.ndarray, pv: np.ndarray, signal: float, threshold: float = 0.5,
                 decoder: Any = "auto") -> None:
        super().__init__()
        self.register_buffer("pa", torch.as_tensor(pa, dtype=torch.float32))
        self.register_buffer("pv", torch.as_tensor(pv, dtype=torch.float32))
        self.register_buffer("bg_a", torch.zeros(len(pa)))
        self.register_buffer("bg_v", torch.zeros(len(pv)))
        self.signal = float(signal)
        self.cfg = OracleConfig(float(threshold), decoder)

    @property
    def threshold(self) -> float:
        return self.cfg.threshold

    def fit_background(self, ds: Any, max_videos: int = 500) -> MatchedFilter:
        proj_a, proj_v = [], []
        for i in range(min(len(ds), max_videos)):
            item = ds[i]
            n = int(item["mask"].sum())
            proj_a.append(item["audio"][:n] @ self.pa.T)
            proj_v.append(item["visual"][:n] @ self.pv.T)
        self.bg_a = torch.cat(proj_a).median(dim=0).values
        self.bg_v = torch.cat(proj_v).median(dim=0).values
        return self

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        mask = batch["mask"].bool()
        za = (batch["audio"].float() @ self.pa.T - self.bg_a) / self.signal
        zv = (batch["visual"].float() @ self.pv.T - self.bg_v) / self.signal
        p = (za.clamp(0.0, 1.0) * zv.clamp(0.0, 1.0)).sqrt().masked_fill(~mask.unsqueeze(-1), 0.0)
        return {"p_av": p, "mask": mask}

    def weak_outputs(self, out: dict[str, Any], batch: dict[str, Any]) -> WeakOutputs:
        top = out["p_av"].amax(dim=1)
        return WeakOutputs(out["p_av"], out["mask"], top, top, self.cfg.threshold, by_score=True)

    def detect(self, out: dict[str, Any], batch: dict[str, Any]) -> list[list[Detection]]:
        return decode_weak(self.weak_outputs(out, batch), self.cfg.decoder)


def label_prior_bce(labels: np.ndarray) -> float:
    """The BCE of predicting each class's frequency in ``labels (N, C)`` for every video: the loss a weak
    model sits at when it has learned the label prior and nothing else (the entropy of the multi-hot labels)."""
    y = np.asarray(labels, dtype=np.float64)
    q = np.clip(y.mean(axis=0), 1e-6, 1 - 1e-6)
    return float(-(y * np.log(q) + (1 - y) * np.log1p(-q)).mean())


def video_labels(annotations: dict[str, VideoAnnotation], classes: list[str], subset: str) -> np.ndarray:
    """``(N, C)`` multi-hot video-level labels of one subset, in the file's order."""
    cidx = {c: i for i, c in enumerate(classes)}
    rows = [a for a in annotations.values() if a.subset == subset]
    y = np.zeros((len(rows), len(classes)), np.float32)
    for i, a in enumerate(rows):
        y[i, [cidx[s.label] for s in a.segments]] = 1.0
    return y
