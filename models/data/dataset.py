"""The training/evaluation dataset over a feature store: fixed-length padded items, batches and loaders
(the batch dict of ``models/localizers/base.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from extractors.recipes import Recipe
from models.data.annotations import VideoAnnotation
from models.data.steps import seconds_to_steps
from models.data.store import FeatureStore


class FeatureDataset(Dataset):
    """Fixed-length items for training/evaluation, padded or clipped to ``t_max``.

    Long videos are clipped to their first ``t_max`` steps (CLASP: "clipping or zero-padding"),
    short ones zero-padded with ``mask`` False on the padding. Segments are given in continuous
    step units (:mod:`models.data.steps`); after clipping, segments whose covered steps all fall beyond
    ``t_max`` are dropped (those not overlapping the kept cells ``[-0.5, t_max - 0.5)``) and ends are clamped to ``t_max - 0.5`` (the last kept cell's edge).
    ``labels`` is the video-level multi-hot of the full annotation, unless ``clip_labels`` is
    True, in which case it counts only classes with a segment inside the clipped window.
    Videos of the subset that are missing from the store raise, rather than silently vanish; annotated
    videos known to have no features are passed as ``without_features`` instead (kept, not loaded):
    evaluation counts their ground truth as missed, as the reference evaluator does.

    ``crop_ratio=(lo, hi)`` (training only; :func:`models.run.train.with_crop` sets it): each read takes a
    random window, UnAV/ActionFormer's ``truncate_feats`` (ttgeng233/UnAV ``libs/datasets/data_utils.py``):
    a video of ``n <= t_max`` steps keeps a random ``randint(round(lo n), round(hi n))``-step window, a
    longer one a random ``t_max``-step window; a segment survives when more than ``trunc_thresh`` of
    its length is inside (clipped to the window's cells), the draw is repeated (up to 20 times) until
    one survives when the video has any, and ``labels`` are then the surviving segments' classes.
    Draws use NumPy's global RNG, which :mod:`models.run.train` seeds and checkpoints.
    """

    def __init__(
        self, store: FeatureStore, annotations: dict[str, VideoAnnotation], classes: list[str],
        recipe: Recipe, subset: str | None = None, t_max: int | None = None, clip_labels: bool = False,
        without_features: dict[str, VideoAnnotation] | None = None,
    ):
        self.without_features = {v: a for v, a in (without_features or {}).items()
                                 if subset is None or a.subset == subset}
        self.store = store
        self.classes = list(classes)
        self.cidx = {c: i for i, c in enumerate(self.classes)}
        self.recipe = recipe
        self.t_max = int(t_max if t_max is not None else recipe.t_max)
        self.clip_labels = clip_labels
        self.crop_ratio: tuple[float, float] | None = None
        self.trunc_thresh = 0.5
        ids = [v for v, a in annotations.items() if subset is None or a.subset == subset]
        missing = [v for v in ids if v not in store]
        if missing:
            raise KeyError(f"{len(missing)} video(s) of subset {subset!r} are missing from the feature "
                           f"store {store.root}: {missing[:5]}")
        self.video_ids = ids
        self.annotations = {v: annotations[v] for v in ids}

    def __len__(self) -> int:
        return len(self.video_ids)

    def segments_in_steps(self, vid: str) -> np.ndarray:
        """(N, 3) float32 ``[start_step, end_step, class]`` of the full (unclipped) video."""
        rows = []
        for s in self.annotations[vid].segments:
            a, b = seconds_to_steps(s.start, s.end, self.recipe)
            rows.append((a, b, self.cidx[s.label]))
        return np.asarray(rows, dtype=np.float32).reshape(-1, 3)

    def _random_window(self, n: int, segs: np.ndarray) -> tuple[int, int, np.ndarray]:
        """(start, length, surviving segments shifted to the window) of a random crop (class docstring)."""
        lo, hi = self.crop_ratio  # type: ignore[misc]
        for _ in range(20):
            if n <= self.t_max:
                length = int(np.random.randint(max(1, round(lo * n)), max(1, min(round(hi * n), n)) + 1))
            else:
                length = self.t_max
            st = int(np.random.randint(0, n - length + 1))
            if not len(segs):
                return st, length, segs
            s = segs.copy()
            s[:, :2] -= st
            a, b = np.maximum(s[:, 0], -0.5), np.minimum(s[:, 1], length - 0.5)
            keep = (b - a) > self.trunc_thresh * (s[:, 1] - s[:, 0])
            if keep.any():
                s[:, 0], s[:, 1] = a, b
                return st, length, s[keep]
        return st, length, s[keep]

    def __getitem__(self, i: int) -> dict[str, Any]:
        vid = self.video_ids[i]
        a16, v16 = self.store.read(vid)
        segs = self.segments_in_steps(vid)
        cropped = self.crop_ratio is not None
        if cropped:
            st, t, segs = self._random_window(len(a16), segs)
        else:
            st, t = 0, min(len(a16), self.t_max)
        audio = np.zeros((self.t_max, self.store.audio_dim), np.float32)
        visual = np.zeros((self.t_max, self.store.visual_dim), np.float32)
        audio[:t] = a16[st:st + t]
        visual[:t] = v16[st:st + t]
        mask = np.zeros(self.t_max, dtype=bool)
        mask[:t] = True
        if len(segs) and not cropped:
            # keep segments overlapping the kept cells [-0.5, t_max - 0.5)
            segs = segs[(segs[:, 0] < self.t_max - 0.5) & (segs[:, 1] > -0.5)]
            segs[:, 1] = np.minimum(segs[:, 1], self.t_max - 0.5)
        labels = np.zeros(len(self.classes), np.float32)
        if self.clip_labels or cropped:
            labels[segs[:, 2].astype(np.int64)] = 1.0
        else:
            for s in self.annotations[vid].segments:
                labels[self.cidx[s.label]] = 1.0
        return {
            "audio": torch.from_numpy(audio), "visual": torch.from_numpy(visual),
            "mask": torch.from_numpy(mask), "labels": torch.from_numpy(labels),
            "segments": torch.from_numpy(segs), "video_id": vid,
            "duration": float(self.annotations[vid].duration), "length": int(len(a16)),
        }


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dict of ``models/localizers/base.py`` (plus ``lengths``: true unclipped T per video).

    Stacks with NumPy: on this CPU build ``torch.stack`` of 16 x (224, 2048) float32 took ~0.6 s
    with 2 threads against a few ms for ``np.stack`` (bench/data_bench.py).
    """

    def stack(key: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(it[key]) for it in items]))

    return {
        "audio": stack("audio"),
        "visual": stack("visual"),
        "mask": stack("mask"),
        "labels": stack("labels"),
        "segments": [it["segments"] for it in items],
        "video_ids": [it["video_id"] for it in items],
        "durations": torch.tensor([it["duration"] for it in items], dtype=torch.float32),
        "lengths": torch.tensor([it["length"] for it in items], dtype=torch.int64),
    }


def trim_padding(batch: dict[str, Any], length: int | None = None) -> dict[str, Any]:
    """The batch cut to its first ``length`` steps (default: its longest valid video), dropping padding
    columns. Why: items are padded to ``t_max`` (224) while the first UnAV-100 batch holds 128 valid steps
    on average; a model whose valid-step outputs do not depend on the padding (``pad_free``: MIL, CLASP)
    trains on the trimmed batch at the cost of the valid steps only (bench/unav_structure_bench.py
    --time-batches measures it). Segments are in step units and need no change."""
    n = int(batch["mask"].sum(dim=1).max()) if length is None else int(length)
    out = dict(batch)
    for k in ("audio", "visual", "mask"):
        out[k] = batch[k][:, :n]
    return out


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """Deterministic DataLoader (seeded shuffling and worker seeds) with :func:`collate`."""
    g = torch.Generator()
    g.manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      collate_fn=collate, generator=g, worker_init_fn=_seed_worker,
                      drop_last=drop_last, persistent_workers=False)
