"""Planted-event benchmark at feature level (docs/recipes.md, "Synthetic benchmarks"): known audio-visual events in noise.

Each class has a unit-norm prototype in the audio space and one in the visual space (orthonormal
across classes when the dimension allows). A video is
background noise ``noise * N(0, I)`` plus a per-video "scene" offset (constant over time, a
nuisance a model must ignore); an **audio-visual event** of class c on steps ``a..b`` adds
``signal * proto_a[c]`` to the audio and ``signal * proto_v[c]`` to the visual features there (with
a short linear ramp at both ends so boundaries are not trivially sharp). **Distractors** add a
class's prototype to one modality only; they are *not* labelled (an AV event needs both), and
their classes are chosen among those absent from the video so video-level labels stay honest.
Events of different classes may overlap; same-class events never touch (they would be one).

Because prototypes are unit-norm, the per-step SNR along a prototype is ``signal / noise`` whatever
the feature dimension. The background noise is temporally correlated like features of
overlapping windows (see ``_noise``). Defaults (signal 2.5, noise 1.0, scene 0.5) were tuned so
that, on the test split of the small config of tests/test_synthetic.py (4 classes, 32/48-d, 160
videos): a per-step oracle that projects on the true prototypes and thresholds without temporal
smoothing reaches Avg mAP 0.21 (mAP@0.1 0.74; 0.30 / 0.72 with the full default config), a linear
weakly-supervised MIL baseline 0.11 (mAP@0.1 0.47), and the same baseline trained on shuffled
labels 0.001 (mAP@0.1 0.005): clearly learnable, far from solved, with room for models that use
temporal context.

Ground truth uses the cell convention of ``models.localizers.postprocess``: an event on steps ``a..b`` is the
segment ``[c + (a - 0.5) step, c + (b + 0.5) step]`` seconds, with the first cell reaching back to
0 and the last to the duration, so a perfect step-level detector scores mAP 1.0 at every θ.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from extractors.recipes import Recipe
from models.data.annotations import Segment, VideoAnnotation
from models.data.features import load_video_features
from models.data.store import FeatureStore
from models.data.unav import write_unav
from models.localizers.postprocess import step_events_to_seconds


@dataclass
class PlantedConfig:
    num_classes: int = 6
    n_videos: int = 240
    t_len: tuple[int, int] = (40, 64)
    audio_dim: int = 128
    visual_dim: int = 2048
    events_per_video: tuple[int, int] = (1, 3)
    event_len: tuple[int, int] = (4, 16)
    audio_only_distractors: int = 1
    visual_only_distractors: int = 1
    noise: float = 1.0
    signal: float = 2.5
    scene: float = 0.5
    ramp: int = 1
    noise_window: int = 3  # noise is a moving average over this many sub-steps (overlapping windows)
    splits: tuple[float, float, float] = (0.6, 0.2, 0.2)  # train / validation / test
    seed: int = 0
    avvp_t: int = 10
    class_names: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        if self.class_names:
            if len(self.class_names) != self.num_classes:
                raise ValueError("class_names must have num_classes entries")
            return list(self.class_names)
        return [f"event_{i:02d}" for i in range(self.num_classes)]


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _protos(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Class prototypes: orthonormal rows when n <= d (no crosstalk between classes), else unit."""
    x = rng.standard_normal((n, d))
    if n <= d:
        q, r = np.linalg.qr(x.T)
        return (q * np.sign(np.diag(r))).T
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _noise(rng: np.random.Generator, t_len: int, dim: int, cfg: PlantedConfig) -> np.ndarray:
    """Temporally correlated background: real features come from overlapping windows (0.96 s every
    0.32 s), so neighbouring steps share most of their input; a moving average of ``noise_window``
    i.i.d. sub-steps, rescaled to per-step std ``noise``, gives the same 2/3, 1/3 correlation."""
    w = max(1, int(cfg.noise_window))
    raw = rng.standard_normal((t_len + w - 1, dim))
    c = np.cumsum(np.concatenate([np.zeros((1, dim)), raw]), axis=0)
    return cfg.noise * (c[w:] - c[:-w]) / np.sqrt(w)


def _profile(t_len: int, a: int, b: int, ramp: int) -> np.ndarray:
    """Event envelope over steps: 1 on a..b, linearly half-strength on ``ramp`` steps inside."""
    w = np.zeros(t_len)
    w[a:b + 1] = 1.0
    for k in range(ramp):
        frac = (k + 1) / (ramp + 1)
        if a + k <= b:
            w[a + k] = min(w[a + k], 0.5 + 0.5 * frac)
        if b - k >= a:
            w[b - k] = min(w[b - k], 0.5 + 0.5 * frac)
    return w


def _place(rng: np.random.Generator, t_len: int, length: tuple[int, int]) -> tuple[int, int]:
    n = int(rng.integers(length[0], min(length[1], t_len) + 1))
    a = int(rng.integers(0, t_len - n + 1))
    return a, a + n - 1


def _merge_same_class(events: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Merge same-class events that overlap or touch (they would be indistinguishable)."""
    out: list[tuple[int, int, int]] = []
    for c in sorted({e[2] for e in events}):
        runs = sorted((a, b) for a, b, k in events if k == c)
        cur = list(runs[0])
        for a, b in runs[1:]:
            if a <= cur[1] + 1:
                cur[1] = max(cur[1], b)
            else:
                out.append((cur[0], cur[1], c))
                cur = [a, b]
        out.append((cur[0], cur[1], c))
    return sorted(out)


def _subsets(n: int, splits: tuple[float, float, float], rng: np.random.Generator) -> list[str]:
    fr = np.asarray(splits, dtype=np.float64)
    fr = fr / fr.sum()
    counts = np.floor(fr * n).astype(int)
    counts[0] += n - counts.sum()
    names = ["train"] * counts[0] + ["validation"] * counts[1] + ["test"] * counts[2]
    rng.shuffle(names)
    return names


def planted_prototypes(cfg: PlantedConfig, avvp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The (C, Da) audio and (C, Dv) visual unit prototypes the generators plant (for analysis and
    tests: e.g. an oracle detector projects features on them)."""
    rng = np.random.default_rng(cfg.seed + (7919 if avvp else 0))
    return _protos(rng, cfg.num_classes, cfg.audio_dim), _protos(rng, cfg.num_classes, cfg.visual_dim)


def make_planted_arrays(cfg: PlantedConfig, recipe: Recipe) -> tuple[
        dict[str, tuple[np.ndarray, np.ndarray]], dict[str, VideoAnnotation], list[str]]:
    """In-memory variant of :func:`make_planted`: {vid: (audio, visual)}, annotations, classes."""
    rng = np.random.default_rng(cfg.seed)
    classes = cfg.names()
    pa = _protos(rng, cfg.num_classes, cfg.audio_dim)  # same draws as planted_prototypes(cfg)
    pv = _protos(rng, cfg.num_classes, cfg.visual_dim)
    subsets = _subsets(cfg.n_videos, cfg.splits, rng)
    feats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    anns: dict[str, VideoAnnotation] = {}
    for i in range(cfg.n_videos):
        vid = f"planted_{i:05d}"
        t_len = int(rng.integers(cfg.t_len[0], cfg.t_len[1] + 1))
        audio = _noise(rng, t_len, cfg.audio_dim, cfg)
        visual = _noise(rng, t_len, cfg.visual_dim, cfg)
        audio += cfg.scene * _unit(rng, 1, cfg.audio_dim)
        visual += cfg.scene * _unit(rng, 1, cfg.visual_dim)
        k = int(rng.integers(cfg.events_per_video[0], cfg.events_per_video[1] + 1))
        evs = [(*_place(rng, t_len, cfg.event_len), int(rng.integers(cfg.num_classes))) for _ in range(k)]
        evs = _merge_same_class(evs)
        for a, b, c in evs:
            w = cfg.signal * _profile(t_len, a, b, cfg.ramp)[:, None]
            audio += w * pa[c]
            visual += w * pv[c]
        present = {c for _, _, c in evs}
        # distractor classes are absent from the video's AV events and used once, so an audio-only
        # and a visual-only distractor never combine into an unlabelled audio-visual event
        absent = [c for c in range(cfg.num_classes) if c not in present]
        for n_dis, proto, target in ((cfg.audio_only_distractors, pa, audio),
                                     (cfg.visual_only_distractors, pv, visual)):
            for _ in range(n_dis):
                if not absent:
                    break
                c = int(absent.pop(int(rng.integers(len(absent)))))
                a, b = _place(rng, t_len, cfg.event_len)
                target += (cfg.signal * _profile(t_len, a, b, cfg.ramp))[:, None] * proto[c]
        duration = (t_len - 1) * recipe.step_s + recipe.window_s
        secs = step_events_to_seconds([(a - 0.5, b + 0.5, c, 1.0) for a, b, c in evs], recipe,
                                      valid_len=t_len, duration=duration)
        segs = [Segment(round(s, 6), round(e, 6), classes[c]) for s, e, c, _ in secs]
        feats[vid] = (audio.astype(np.float32), visual.astype(np.float32))
        anns[vid] = VideoAnnotation(vid, subsets[i], round(duration, 6), segs)
    return feats, anns, classes


def make_planted(cfg: PlantedConfig, out_dir: str | os.PathLike[str], recipe: Recipe) -> tuple[
        FeatureStore, dict[str, VideoAnnotation], list[str]]:
    """Write the benchmark in our layout under ``out_dir``: ``features/i3d/<vid>.npy`` (T, Dv),
    ``features/vggish/<vid>.npy`` (T, Da) float32, ``annotations.json`` (UnAV-100 format), and a
    FeatureStore at ``store/`` built from those files (all splits; filter with ``subset``)."""
    feats, anns, classes = make_planted_arrays(cfg, recipe)
    store = write_planted(feats, anns, classes, out_dir, {"source": "planted", "seed": cfg.seed,
                                                          "recipe": recipe.name})
    return store, anns, classes


def write_planted(feats: dict[str, tuple[np.ndarray, np.ndarray]], anns: dict[str, VideoAnnotation],
                  classes: list[str], out_dir: str | os.PathLike[str], meta: dict) -> FeatureStore:
    """The one writer of every planted benchmark: per-video ``.npy`` files in our layout (atomic),
    ``annotations.json`` and the store built from the files (what a user's run reads)."""
    out = Path(out_dir)
    for kind in ("i3d", "vggish"):
        (out / "features" / kind).mkdir(parents=True, exist_ok=True)
    for vid, (a, v) in feats.items():
        for kind, arr in (("vggish", a), ("i3d", v)):
            dst = out / "features" / kind / f"{vid}.npy"
            tmp = dst.with_name(f".{vid}.tmp.npy")
            np.save(tmp, arr)
            os.replace(tmp, dst)
    write_unav(anns, out / "annotations.json", classes)
    return FeatureStore.build(out / "store", list(feats), lambda v: load_video_features(v, out, layout="ours"),
                              meta=meta)


def make_planted_avvp(cfg: PlantedConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """LLP-style 10-step clips with audio-only, visual-only and audio-visual events.

    Returns ``(audio (N, T, Da), visual (N, T, Dv), labels (N, C), gt_a (N, C, T), gt_v (N, C, T))``
    float32 with ``T = cfg.avvp_t`` (10), ``N = cfg.n_videos``. The video label is the union of
    the audio and visual events (LLP's weak label); an AV event marks the same span in both GTs.
    Event lengths are drawn in ``[1, T]``; the number of events per clip from
    ``cfg.events_per_video``; each event is audio-only, visual-only or AV with equal probability.
    """
    rng = np.random.default_rng(cfg.seed + 7919)
    t = cfg.avvp_t
    pa = _protos(rng, cfg.num_classes, cfg.audio_dim)  # same draws as planted_prototypes(cfg, True)
    pv = _protos(rng, cfg.num_classes, cfg.visual_dim)
    n = cfg.n_videos
    audio = np.stack([_noise(rng, t, cfg.audio_dim, cfg) for _ in range(n)]).astype(np.float32)
    visual = np.stack([_noise(rng, t, cfg.visual_dim, cfg) for _ in range(n)]).astype(np.float32)
    gt_a = np.zeros((n, cfg.num_classes, t), np.float32)
    gt_v = np.zeros((n, cfg.num_classes, t), np.float32)
    for i in range(n):
        audio[i] += cfg.scene * _unit(rng, 1, cfg.audio_dim)[0]
        visual[i] += cfg.scene * _unit(rng, 1, cfg.visual_dim)[0]
        k = int(rng.integers(cfg.events_per_video[0], cfg.events_per_video[1] + 1))
        for _ in range(k):
            c = int(rng.integers(cfg.num_classes))
            a, b = _place(rng, t, (1, t))
            kind = int(rng.integers(3))  # 0 audio, 1 visual, 2 both
            if kind in (0, 2):
                gt_a[i, c, a:b + 1] = 1
            if kind in (1, 2):
                gt_v[i, c, a:b + 1] = 1
        audio[i] += cfg.signal * gt_a[i].T @ pa.astype(np.float32)
        visual[i] += cfg.signal * gt_v[i].T @ pv.astype(np.float32)
    labels = ((gt_a.max(axis=2) + gt_v.max(axis=2)) > 0).astype(np.float32)
    return audio, visual, labels, gt_a, gt_v
