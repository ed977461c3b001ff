"""The label-shuffled control, one rule for every model (the localizers and EAR).

A control run trains on the same features with the training videos' labels permuted across videos;
validation and test are untouched. A model that localizes from the features must then fall to chance
level. The permutation of ``n`` training videos is ``torch.randperm(n)`` drawn from a generator seeded
with ``seed + SHUFFLE_SEED_OFFSET``: a draw of its own (not the global RNG, which seeds the weights), so
the control of seed ``s`` permutes the same way whether or not the run resumes, and the control and
its ordinary run share every other random draw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

SHUFFLE_SEED_OFFSET = 7919  # a prime, so the permutation's seed is never the run's own seed


def shuffle_permutation(n: int, seed: int) -> list[int]:
    """The control's permutation: training item ``i`` takes the labels of item ``perm[i]``."""
    g = torch.Generator().manual_seed(int(seed) + SHUFFLE_SEED_OFFSET)
    return torch.randperm(n, generator=g).tolist()


def shuffled_labels(labels: np.ndarray, seed: int) -> np.ndarray:
    """Rows of ``labels`` (one per training video) in the control's order (EAR's video-level labels)."""
    return labels[shuffle_permutation(labels.shape[0], seed)]


def video_labels(ds: Any) -> torch.Tensor:
    """``(N, C)`` video-level multi-hot labels of ``ds`` in item order, from its annotations when it exposes
    them (no feature I/O), else from its items."""
    if all(hasattr(ds, a) for a in ("annotations", "video_ids", "cidx")) and not getattr(ds, "clip_labels", False):
        y = torch.zeros(len(ds.video_ids), len(ds.cidx), dtype=torch.float32)
        for i, vid in enumerate(ds.video_ids):
            for s in ds.annotations[vid].segments:
                y[i, ds.cidx[s.label]] = 1.0
        return y
    return torch.stack([torch.as_tensor(ds[i]["labels"], dtype=torch.float32) for i in range(len(ds))])


class ShuffledLabels(Dataset):
    """A localizer's training set in the control: item ``i`` keeps its features but gets video
    ``perm[i]``'s labels (:func:`shuffle_permutation`).

    Labels are read from the dataset's annotations when it exposes them (no feature I/O); the
    segments are swapped too when ``with_segments`` (fully supervised models).
    """

    def __init__(self, ds: Any, seed: int, with_segments: bool = False) -> None:
        self.ds = ds
        self.perm = shuffle_permutation(len(ds), seed)
        self.with_segments = with_segments
        self.labels = list(video_labels(ds))

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.ds[i])
        j = self.perm[i]
        item["labels"] = self.labels[j].clone()
        if self.with_segments:
            item["segments"] = self.ds[j]["segments"]
        return item

    def __getattr__(self, name: str) -> Any:  # classes, store, t_max, recipe ... of the wrapped set
        if name in ("ds", "perm", "labels", "with_segments"):
            raise AttributeError(name)
        return getattr(self.ds, name)
